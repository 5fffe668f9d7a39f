"""The student selector M_s (Eqs. 1–9): shapes, padding, gradients, the peft trap, save/load."""

from __future__ import annotations

import pytest
import torch

from hfs.pipeline.model.prompts import COT_PROMPT
from hfs.pipeline.model.student import (
    ADAPTERS,
    CONTEXT_AGGREGATOR,
    TASK_ANALYZER,
    Student,
    StudentConfig,
    StudentLoadError,
    build_student,
    load_student,
    save_student,
)

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.xdist_group("models")]  # one test process loads the model stack (--dist loadgroup)

N = 12  # frames per video in these tests (the paper uses 128)
QUESTIONS = ["What does the man do?", "Why did the boy pick up the red ball after the girl threw it?"]
OPTIONS = [["He runs", "He walks"], ["to play", "to sleep", "to eat"]]


def make_student(**overrides) -> Student:
    cfg = StudentConfig(name_or_path="tiny-student", lora_r=4, mlp_hidden=16, **overrides)
    torch.manual_seed(0)
    student = build_student(cfg, device="cpu")
    # LoRA starts with B = 0, which gives A exactly zero gradient; make both matrices live.
    with torch.no_grad():
        for name, p in student.lm.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.05)
    return student


@pytest.fixture(scope="module")
def student(one_thread) -> Student:
    return make_student()


def features(batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, N, 512, generator=torch.Generator().manual_seed(seed))


def grad_norms(student: Student) -> dict[str, float]:
    return {
        group: sum(float(p.grad.abs().sum()) for p in params if p.grad is not None)
        for group, params in student.trainable_named_parameters().items()
    }


@pytest.mark.parametrize("K", [0, 1, 3])
def test_eq9_scores_and_query_shapes(K):
    student = make_student(K=K).eval()
    out = student(features(), QUESTIONS, OPTIONS)
    d = student.hidden_size
    assert out.scores.shape == (2, N) and out.scores.dtype == torch.float32
    assert bool(((out.scores > 0) & (out.scores < 1)).all())
    assert out.task_queries.shape == (2, K, d)
    assert out.aggregated_query.shape == (2, d)


def test_rows_do_not_depend_on_batch_padding(student):
    """Right padding: a row's scores and queries are the same alone and in a padded batch."""
    student.eval()
    feats = features()
    together = student(feats, QUESTIONS, OPTIONS)
    for b in range(2):
        alone = student(feats[b : b + 1], QUESTIONS[b : b + 1], OPTIONS[b : b + 1])
        torch.testing.assert_close(together.scores[b : b + 1], alone.scores, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(together.task_queries[b : b + 1], alone.task_queries, atol=1e-5, rtol=1e-4)
    student.train()


def test_task_queries_sit_at_eq5_positions(student):
    """K = 3 on one row of length T: q_task = H[0], H[⌊(T−1)/2⌋], H[T−1] of pass A."""
    student.eval()
    text = student.text_inputs(QUESTIONS[:1], OPTIONS[:1])
    T = int(text.task_lengths[0])
    q = student.task_queries(text)
    student._use_adapter(TASK_ANALYZER)
    hidden = student._decoder()(inputs_embeds=student.lm.get_input_embeddings()(text.task_ids)).last_hidden_state
    torch.testing.assert_close(q[0], hidden[0, [0, (T - 1) // 2, T - 1]])
    student.train()


def test_query_positions_paper_vs_question():
    """Eq. 5 as written puts q_task^(1) at position 0 of E_input, inside the fixed CoT prompt: a
    causal LM gives it the same value for every question. Spread over E_qa, every query differs."""
    paper = make_student(K=3).eval()
    question = make_student(K=3, query_positions="question").eval()
    for student, same_first in ((paper, True), (question, False)):
        text = student.text_inputs(QUESTIONS, OPTIONS)
        with torch.no_grad():
            q = student.task_queries(text)
        assert torch.allclose(q[0, 0], q[1, 0], atol=1e-5) == same_first
        assert not torch.allclose(q[0, 2], q[1, 2], atol=1e-5)  # the last position reads the question
    with pytest.raises(ValueError, match="query_positions"):
        StudentConfig(query_positions="middle")


def test_cot_prompt_is_wrapped_in_the_chat_template():
    with_cot, without = make_student(use_cot=True), make_student(use_cot=False)
    head = with_cot._task_head
    assert head.startswith("<|im_start|>system") and COT_PROMPT in head
    assert with_cot._task_tail.endswith("<|im_start|>assistant\n")
    assert COT_PROMPT not in without._task_head
    a = with_cot.text_inputs(QUESTIONS, OPTIONS)
    b = without.text_inputs(QUESTIONS, OPTIONS)
    assert bool((a.task_lengths > b.task_lengths).all())  # Lp grows by the CoT prompt
    torch.testing.assert_close(a.qa_ids, b.qa_ids)  # E_qa itself is unchanged


def test_every_student_part_gets_gradient(student):
    student.train()
    student.zero_grad()
    out = student(features(), QUESTIONS, OPTIONS)
    out.scores.sum().backward()
    norms = grad_norms(student)
    assert set(norms) == {TASK_ANALYZER, CONTEXT_AGGREGATOR, "W_v", "q_agg", "MLP_s"}
    assert all(v > 0 for v in norms.values()), norms


def test_adapter_switches_keep_both_adapters_trainable(student, monkeypatch):
    """peft's set_adapter freezes the inactive adapter; every switch must undo that."""
    seen = []
    original = Student._use_adapter

    def spy(self, name):
        original(self, name)
        groups = self.trainable_named_parameters()
        seen.append(all(p.requires_grad for a in ADAPTERS for p in groups[a]))

    monkeypatch.setattr(Student, "_use_adapter", spy)
    student.zero_grad()
    student(features(), QUESTIONS, OPTIONS).scores.sum().backward()
    assert seen == [True, True]  # pass A, then pass B
    norms = grad_norms(student)
    assert norms[TASK_ANALYZER] > 0 and norms[CONTEXT_AGGREGATOR] > 0


def test_without_the_fix_peft_drops_theta1_gradients(monkeypatch):
    """The trap is real: with plain set_adapter θ1 silently gets no gradient."""
    student = make_student()
    monkeypatch.setattr(Student, "_use_adapter", lambda self, name: self.lm.set_adapter(name))
    student(features(), QUESTIONS, OPTIONS).scores.sum().backward()
    assert grad_norms(student)[TASK_ANALYZER] == 0.0


def test_static_query_ablation_skips_pass_a():
    student = make_student(static_query=True)
    out = student(features(), QUESTIONS, OPTIONS)
    assert out.task_queries.shape[1] == 0
    out.scores.sum().backward()
    norms = grad_norms(student)
    assert norms[TASK_ANALYZER] == 0.0  # θ1 unused
    assert norms[CONTEXT_AGGREGATOR] > 0 and norms["q_agg"] > 0


def test_open_ended_question_and_bad_inputs(student):
    out = student(features(1), ["What is the video about?"], [[]])
    assert out.scores.shape == (1, N)
    with pytest.raises(ValueError, match=r"\[B, N, 512\]"):
        student(torch.zeros(2, N, 256), QUESTIONS, OPTIONS)
    with pytest.raises(ValueError, match="option lists"):
        student.text_inputs(QUESTIONS, OPTIONS[:1])


def test_save_load_round_trip_gives_identical_scores(student, tmp_path):
    save_student(student, tmp_path / "st")
    assert {p.name for p in (tmp_path / "st" / "adapters").iterdir() if p.is_dir()} == set(ADAPTERS)
    loaded = load_student(tmp_path / "st", device="cpu")
    student.eval(), loaded.eval()
    feats = features()
    with torch.no_grad():
        torch.testing.assert_close(loaded(feats, QUESTIONS, OPTIONS).scores, student(feats, QUESTIONS, OPTIONS).scores,
                                   rtol=0, atol=0)
    groups = loaded.trainable_named_parameters()
    assert all(p.requires_grad for a in ADAPTERS for p in groups[a])
    student.train()


def _other_base(folder, seed: int, hidden: int = 64):
    from transformers import Qwen2ForCausalLM

    from hfs.pipeline.model.tiny import build_tiny_tokenizer, tiny_student_config

    config = tiny_student_config()
    config.hidden_size, config.head_dim = hidden, hidden // config.num_attention_heads
    torch.manual_seed(seed)
    Qwen2ForCausalLM(config).save_pretrained(folder)
    build_tiny_tokenizer().save_pretrained(folder)
    return str(folder)


def test_loading_onto_another_base_model_names_both(student, tmp_path):
    save_student(student, tmp_path / "st")
    other = _other_base(tmp_path / "other-lm", seed=1, hidden=32)
    with pytest.raises(StudentLoadError, match=r"tiny-student.*other-lm"):
        load_student(tmp_path / "st", name_or_path=other)
    # Same name, different weights: caught by the fingerprint.
    impostor = _other_base(tmp_path / "x" / "tiny-student", seed=2)
    with pytest.raises(StudentLoadError, match=r"tiny-student.*differs"):
        load_student(tmp_path / "st", name_or_path=impostor)
    with pytest.raises(StudentLoadError, match="student.json"):
        load_student(tmp_path / "nothing")


def test_logits_and_their_gradients_stay_float32_under_bf16_autocast(student):
    """MLP_s runs outside autocast: under bf16 autocast the LM runs in bf16, but the logits
    z and their gradients are float32 (bf16 σ(z) was exactly 1.0 with zero slope for z ≥ 6.5)."""
    student.zero_grad()
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = student(features(), QUESTIONS, OPTIONS)
    assert out.logits.dtype == torch.float32 and out.scores.dtype == torch.float32
    grads = {}
    out.logits.register_hook(lambda g: grads.setdefault("z", g))
    (out.logits * torch.linspace(-1, 1, N)).sum().backward()
    assert grads["z"].dtype == torch.float32
    assert all(p.grad is not None and p.grad.dtype == torch.float32 and p.grad.abs().sum() > 0
               for p in student.scorer.parameters())


def test_frame_scorer_returns_logits_float32_at_large_values():
    from hfs.pipeline.model.student import FrameScorer

    scorer = FrameScorer(8, 4)
    with torch.no_grad():
        scorer.net[-1].bias.fill_(20.0)
    frames = torch.randn(1, 5, 8)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        z = scorer(frames.bfloat16(), torch.randn(1, 8).bfloat16())
    assert z.dtype == torch.float32 and len(set(z[0].tolist())) == 5  # distinct logits near 20, no σ
    assert (z > 15).all()


def test_normalised_scorer_ignores_a_shared_frame_offset_and_scale_and_the_query_scale():
    """"normalised" reads the frames centred over the video at one scale per video and the query
    at unit RMS: a vector added to every frame, every frame scaled, or the query scaled leave the
    logits as they were; the paper's "concat" changes under them."""
    from hfs.pipeline.model.student import FrameScorer

    torch.manual_seed(0)
    frames, query, offset = torch.randn(2, 6, 8), torch.randn(2, 8), torch.randn(1, 1, 8) * 5
    scorer = FrameScorer(8, 16, "normalised")
    z = scorer(frames, query)
    torch.testing.assert_close(scorer(3.0 * frames + offset, 7.0 * query), z)
    assert not torch.allclose(scorer(frames, -query), z)  # still reads the query's direction
    concat = FrameScorer(8, 16)
    assert not torch.allclose(concat(3.0 * frames + offset, 7.0 * query), concat(frames, query))


def test_centre_frames_keeps_an_average_frame_near_zero():
    """One scale per video: the centred frames have RMS 1 over the video, and a frame equal to
    the video's mean maps to 0 (scaled per frame it would be noise at the scale of the rest)."""
    from hfs.pipeline.model.student import centre_frames

    torch.manual_seed(1)
    frames = torch.randn(1, 5, 8) * 4 + 2
    frames[0, 4] = frames[0, :4].mean(0)  # the video's average frame (mean over all five is unchanged)
    out = centre_frames(frames)
    assert abs(float(out.pow(2).mean()) - 1.0) < 1e-4
    assert float(out[0, 4].abs().max()) < 1e-5
    expected = (frames - frames.mean(1, keepdim=True)) / (frames - frames.mean(1, keepdim=True)).pow(2).mean().sqrt()
    torch.testing.assert_close(out, expected)


def test_student_config_refuses_unknown_scorer_inputs():
    with pytest.raises(ValueError, match="scorer_inputs"):
        StudentConfig(scorer_inputs="bilinear")


def test_question_blind_student_scores_every_question_alike():
    """The control reads no question: two questions on the same frames get the same scores."""
    blind = make_student(question_blind=True, clip_dim=512).eval()
    features = torch.randn(1, N, 512).expand(2, -1, -1)
    with torch.no_grad():
        out = blind(features, QUESTIONS, OPTIONS)
    torch.testing.assert_close(out.logits[0], out.logits[1])
    blind.cfg.question_blind = False
    with torch.no_grad():
        seeing = blind(features, QUESTIONS, OPTIONS)
    assert not torch.allclose(seeing.logits[0], seeing.logits[1])
