"""HFSModel end to end on tiny random models (Eqs. 1–21): gradients, ablations, paths."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
import torch
from PIL import Image

from hfs.pipeline.model.hfs_model import Batch, HFSConfig, HFSModel, LossConfig, TeacherConfig
from hfs.pipeline.model.selection import topk_select

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.xdist_group("models")]  # one test process loads the model stack (--dist loadgroup)

N = 12  # frames per video (paper: 128); the tiny preset selects k = 4
GROUPS = {"theta1", "theta2", "theta3", "W_v", "q_agg", "MLP_s", "MLP_t"}


def _live_lora(module: torch.nn.Module) -> None:
    """LoRA starts with B = 0 (A then gets exactly zero gradient): make every B non-zero."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.05)


def _build(kind: str) -> HFSModel:
    torch.manual_seed(0)
    cfg = HFSConfig.tiny(teacher=kind)
    cfg.selection.estimator = "straight_through"  # one sample: these tests pass [B, N] noise; the estimators have their own
    model = HFSModel.build(cfg, device="cpu")
    _live_lora(model)
    return model


@pytest.fixture(scope="module", params=["qwen2_5_vl", "internvl"])
def model(request, one_thread) -> HFSModel:
    return _build(request.param)


@pytest.fixture(scope="module")
def qwen_model(one_thread) -> HFSModel:
    return _build("qwen2_5_vl")


def frame(b: int, i: int) -> bytes:
    """A 64×48 JPEG whose colour encodes (sample, index), as the cache stores teacher frames."""
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (20 * i % 256, 80 * b % 256, 128)).save(out, format="JPEG")
    return out.getvalue()


class Untouchable(list):
    """N frames that fail the test when one is read."""

    def __getitem__(self, i):
        raise AssertionError("the teacher must not run here")


def make_batch(open_ended: bool = False, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    options = [["a man running", "a dog barking", "a cat sleeping"], ["red", "blue"]]
    answer_index = [1, 0]
    if open_ended:
        options[1], answer_index[1] = [], -1
    return Batch(
        features=torch.randn(2, N, 512, generator=g),
        timestamps=torch.linspace(0.5, 60.0, N).expand(2, N).clone(),
        questions=["What happens in the video?", "What colour is the car?"],
        options=options,
        answer_index=torch.tensor(answer_index),
        answers=["a dog barking", "It is red."],
        frames=[[frame(b, i) for i in range(N)] for b in range(2)],
    )


def grad_sums(model: HFSModel) -> dict[str, float]:
    return {
        name: sum(float(p.grad.abs().sum()) for p in params if p.grad is not None)
        for name, params in model.trainable_parameters().items()
    }


def with_losses(model: HFSModel, **changes) -> HFSModel:
    """Same modules, other loss switches."""
    cfg = replace(model.cfg, losses=replace(model.cfg.losses, **changes))
    return HFSModel(cfg, model.student, model.teacher, model.teacher_scorer)


def test_one_backward_reaches_every_trainable_part(model):
    model.train()
    model.zero_grad()
    terms, sel = model(make_batch(), step=0, steps_per_epoch=10, generator=torch.Generator().manual_seed(0))
    assert sel.indices.shape == (2, 4) and sel.scores.shape == (2, N) and sel.soft_mask.shape == (2, N)
    assert torch.isfinite(terms.total) and terms.kl is not None
    terms.total.backward()
    sums = grad_sums(model)
    assert set(sums) == GROUPS
    assert all(v > 0 for v in sums.values()), sums


def test_ce_alone_reaches_mlp_s_through_the_straight_through_gate(qwen_model):
    ce_only = with_losses(qwen_model, use_kl=False, use_set=False, use_sep=False)
    ce_only.zero_grad()
    terms, _ = ce_only(make_batch(), step=0, steps_per_epoch=10, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(terms.total, terms.ce.mean())
    assert (terms.lambda_kl, terms.lambda_set, terms.lambda_sep) == (0.0, 0.0, 0.0) and terms.kl is None
    terms.total.backward()
    sums = grad_sums(ce_only)
    assert sums["MLP_s"] > 0 and sums["theta1"] > 0
    assert "MLP_t" not in sums  # KL off: MLP_t is not trained...
    assert all(p.grad is None for p in ce_only.teacher_scorer.parameters())  # ...and gets no gradient

    # Without the straight-through estimator the gate is a constant and CE cannot reach s.
    cfg = replace(ce_only.cfg, selection=replace(ce_only.cfg.selection, straight_through=False))
    no_st = HFSModel(cfg, ce_only.student, ce_only.teacher, ce_only.teacher_scorer)
    no_st.zero_grad()
    terms, _ = no_st(make_batch(), step=0, steps_per_epoch=10, generator=torch.Generator().manual_seed(1))
    terms.total.backward()
    assert grad_sums(no_st)["MLP_s"] == 0.0


def test_eq21_weights_follow_the_schedules(qwen_model):
    batch, g = make_batch(), torch.Generator
    early, sel0 = qwen_model(batch, step=0, steps_per_epoch=4, generator=g().manual_seed(2))
    late, sel9 = qwen_model(batch, step=2000, steps_per_epoch=4, generator=g().manual_seed(2))
    assert early.lambda_kl == pytest.approx(0.1) and late.lambda_kl == pytest.approx(1.0)
    assert sel0.tau == pytest.approx(2.0) and sel9.tau == pytest.approx(0.5)
    assert (early.lambda_set, early.lambda_sep) == (1e-4, 0.01)
    expected = (early.ce.mean() + 0.1 * early.kl.mean() - 1e-4 * early.set_objective.mean()
                + 0.01 * early.sep.mean())
    torch.testing.assert_close(early.total, expected)


def test_open_ended_sample_uses_the_teachers_answer_loss(qwen_model):
    terms, _ = qwen_model(make_batch(open_ended=True), step=0, steps_per_epoch=10,
                          generator=torch.Generator().manual_seed(3))
    assert terms.ce.shape == (2,) and bool(torch.isfinite(terms.ce).all()) and float(terms.ce[1].detach()) > 0
    bad = make_batch(open_ended=True)
    bad.answers[1] = ""
    with pytest.raises(ValueError, match="reference answer"):
        qwen_model(bad, step=0, steps_per_epoch=10)


def test_evaluate_is_deterministic_plain_topk(model):
    model.train()
    batch = make_batch(open_ended=True)
    first, second = model.evaluate(batch), model.evaluate(batch)
    assert model.training  # mode restored
    torch.testing.assert_close(first.selection.indices, second.selection.indices)
    torch.testing.assert_close(first.option_logits, second.option_logits)
    torch.testing.assert_close(first.selection.indices, topk_select(first.selection.scores, 4))
    assert first.predicted[1] == -1 and 0 <= int(first.predicted[0]) < 3
    assert torch.isinf(first.option_logits[1]).all()  # open-ended: no option letters


def test_select_single_question_and_k(qwen_model):
    feats = make_batch().features
    one = qwen_model.select(feats[0], "What happens?", ["a", "b"], k=3)
    assert one.indices.shape == (1, 3) and one.soft_mask is None
    assert bool((one.indices.diff(dim=-1) > 0).all())
    many = qwen_model.select(feats, ["What happens?", "Why?"], [["a", "b"], []])
    assert many.indices.shape == (2, 4)


def test_pseudo_label_supervision_runs_without_teacher(qwen_model):
    with pytest.raises(ValueError, match="use_kl=False"):
        LossConfig(supervision="pseudo_label")
    pl = with_losses(qwen_model, supervision="pseudo_label", use_kl=False)
    batch = make_batch()

    batch.frames = [Untouchable([b""] * N) for _ in range(2)]
    batch.frame_labels = torch.zeros(2, N)
    batch.frame_labels[:, :3] = 1.0
    pl.zero_grad()
    terms, _ = pl(batch, step=0, steps_per_epoch=10)
    terms.total.backward()
    sums = grad_sums(pl)
    assert sums["MLP_s"] > 0 and "theta3" not in sums
    assert all(p.grad is None for p in pl.teacher.parameters())


def test_batch_validation_names_the_field():
    batch = make_batch()
    batch.answer_index = torch.tensor([5, 0])
    with pytest.raises(ValueError, match="answer_index 5 for 3 options"):
        batch.validate()
    batch = make_batch()
    batch.timestamps = batch.timestamps[:, :3]
    with pytest.raises(ValueError, match="timestamps"):
        batch.validate()


def test_config_dict_round_trip_and_ablation_switches():
    cfg = HFSConfig.tiny("internvl")
    cfg.student.K, cfg.set_objective.terms, cfg.selection.k = 0, ("rel", "red"), 8
    again = HFSConfig.from_dict(cfg.to_dict())
    assert again == cfg
    with pytest.raises(ValueError, match="unknown fields"):
        HFSConfig.from_dict({"losses": {"lambda_kl": 1.0}})
    assert HFSConfig().student.K == 3 and HFSConfig().selection.k == 16
    assert HFSConfig().teacher.lora_r == 8 and HFSConfig().losses.lambda_set == 1e-4


def test_model_save_load_round_trip(qwen_model, tmp_path):
    qwen_model.save(tmp_path / "run")
    loaded = HFSModel.load(tmp_path / "run", device="cpu")
    batch = make_batch()
    a, b = qwen_model.evaluate(batch), loaded.evaluate(batch)
    torch.testing.assert_close(a.selection.scores, b.selection.scores, rtol=0, atol=0)
    torch.testing.assert_close(a.option_logits, b.option_logits, rtol=0, atol=0)


def test_teacher_max_tiles_is_validated_and_reaches_the_internvl_teacher(one_thread):
    with pytest.raises(ValueError, match="max_tiles"):
        TeacherConfig(kind="internvl", max_tiles=0)
    cfg = HFSConfig.tiny("internvl")
    cfg.teacher.max_tiles = 4
    assert HFSModel.build(cfg, device="cpu").teacher.max_tiles == 4


def test_a_saved_model_keeps_every_field_that_shapes_it(one_thread, tmp_path):
    cfg = HFSConfig.tiny("internvl")
    cfg.teacher.max_tiles = 4
    cfg.student.query_positions = "question"
    HFSModel.build(cfg, device="cpu").save(tmp_path / "m")
    loaded = HFSModel.load(tmp_path / "m", device="cpu")
    assert loaded.teacher.max_tiles == 4 and loaded.cfg == cfg
    assert loaded.student.cfg.query_positions == "question"


# ---------------------------------------------------------------- every config value reaches its equation

TERM_KEYS = ("total", "ce", "kl", "set_objective", "relevance", "coverage", "redundancy", "sep",
             "lambda_kl", "lambda_set", "lambda_sep", "tau")


def _terms(model: HFSModel, batch: Batch, noise: torch.Tensor) -> dict:
    with torch.no_grad():
        terms, sel = model(batch, step=2, steps_per_epoch=4, noise=noise)
    return {**terms.as_dict(), "tau": sel.tau}


def _changed(a: dict, b: dict) -> set[str]:
    return {k for k in TERM_KEYS
            if (a[k] is None) != (b[k] is None) or (a[k] is not None and abs(a[k] - b[k]) > 1e-9 * max(1.0, abs(a[k])))}


@pytest.mark.parametrize("section, field, value, expected", [
    ("set_objective", "tau_c", 3.0, {"coverage", "set_objective", "total"}),
    ("set_objective", "gamma", 3.0, {"redundancy", "set_objective", "total"}),
    ("set_objective", "weights", (0.6, 0.3, 0.2), {"set_objective", "total"}),
    ("set_objective", "terms", ("cov", "red"), {"relevance", "set_objective", "total"}),
    ("set_objective", "terms", ("rel", "red"), {"coverage", "set_objective", "total"}),
    ("set_objective", "terms", ("rel", "cov"), {"redundancy", "set_objective", "total"}),
    ("losses", "tau_d", 0.25, {"kl", "total"}),
    ("losses", "lambda_kl_start", 0.3, {"lambda_kl", "total"}),
    ("losses", "lambda_kl_end", 0.5, {"lambda_kl", "total"}),
    ("losses", "lambda_set", 1e-2, {"lambda_set", "total"}),
    ("losses", "lambda_sep", 0.5, {"lambda_sep", "total"}),
    ("losses", "use_kl", False, {"kl", "lambda_kl", "total"}),
    ("losses", "use_set", False, {"lambda_set", "total"}),
    ("losses", "use_sep", False, {"lambda_sep", "total"}),
    ("losses", "kl_on", "keys", {"kl", "total"}),
    ("selection", "tau0", 1.0, {"tau", "relevance", "coverage", "redundancy", "set_objective", "total"}),
])
def test_each_config_value_changes_exactly_its_loss_terms(qwen_model, section, field, value, expected):
    """Eqs. 11–21: a value wired into the wrong equation (τc for γ, say) changes other terms."""
    batch = make_batch()
    noise = torch.distributions.Gumbel(0.0, 1.0).sample((2, N))
    qwen_model.eval()  # no dropout: the two passes differ only by the config
    base = _terms(qwen_model, batch, noise)
    cfg = replace(qwen_model.cfg, **{section: replace(getattr(qwen_model.cfg, section), **{field: value})})
    other = _terms(HFSModel(cfg, qwen_model.student, qwen_model.teacher, qwen_model.teacher_scorer), batch, noise)
    qwen_model.train()
    assert _changed(base, other) == expected


def test_the_same_noise_gives_the_same_selection(qwen_model):
    batch, noise = make_batch(), torch.randn(2, N)
    qwen_model.eval()
    with torch.no_grad():
        a = qwen_model(batch, step=0, steps_per_epoch=4, noise=noise)[1]
        b = qwen_model(batch, step=0, steps_per_epoch=4, noise=noise)[1]
    qwen_model.train()
    torch.testing.assert_close(a.soft_mask, b.soft_mask, rtol=0, atol=0)
    assert torch.equal(a.indices, b.indices)


# ---------------------------------------------------------------- the trainable set follows the config

ALL = {"theta1", "theta2", "theta3", "W_v", "q_agg", "MLP_s", "MLP_t"}


@pytest.mark.parametrize("changes, frozen", [
    ({}, set()),
    ({"student": {"K": 0}}, {"theta1"}),
    ({"student": {"static_query": True}}, {"theta1"}),
    ({"losses": {"use_kl": False}}, {"MLP_t"}),
    ({"losses": {"supervision": "pseudo_label", "use_kl": False}}, {"theta3", "MLP_t"}),
    ({"teacher": {"lora_r": 0}}, {"theta3"}),
])
def test_the_trainable_set_is_what_the_config_uses(one_thread, changes, frozen):
    """What trains is exactly what the forward pass uses, so DDP needs no find_unused_parameters."""
    cfg = HFSConfig.tiny("qwen2_5_vl")
    for section, values in changes.items():
        setattr(cfg, section, replace(getattr(cfg, section), **values))
    torch.manual_seed(0)
    model = HFSModel.build(cfg, device="cpu")
    _live_lora(model)
    trained = set(model.trainable_parameters())
    assert trained == ALL - frozen - ({"theta3"} if cfg.teacher.lora_r == 0 else set())
    batch = make_batch()
    batch.frame_labels = torch.rand(2, N)
    terms, _ = model(batch, step=0, steps_per_epoch=4)
    terms.total.backward()
    for group, params in model.parameter_groups().items():
        for p in params:
            assert (p.grad is not None) == (group in trained), (group, p.shape)
    model.check_trainable_fp32()


def test_the_training_step_runs_no_pil_and_no_processor_call(model, monkeypatch):
    """JPEG decoding and the teacher's image preprocessing are tensor ops inside the step."""
    import PIL.Image

    batch = make_batch()  # JPEGs made with PIL before the patches

    def forbidden(*args, **kwargs):
        raise AssertionError("PIL or the HF processor ran inside HFSModel.forward")

    for name in ("resize", "convert", "crop", "transpose", "tobytes", "load"):
        monkeypatch.setattr(PIL.Image.Image, name, forbidden)
    for name in ("fromarray", "frombuffer", "frombytes", "open", "new"):
        monkeypatch.setattr(PIL.Image, name, forbidden)
    monkeypatch.setattr(type(model.teacher.processor), "__call__", forbidden)
    for name in ("__call__", "preprocess", "_preprocess"):
        monkeypatch.setattr(type(model.teacher.processor.image_processor), name, forbidden)
    terms, _ = model(batch, step=0, steps_per_epoch=4, noise=torch.zeros(2, N))
    terms.total.backward()
    model.zero_grad()


# ---------------------------------------------------------------- the score path and the estimators


def with_selection(model: HFSModel, **changes) -> HFSModel:
    """Same modules, other selection settings."""
    cfg = replace(model.cfg, selection=replace(model.cfg.selection, **changes))
    return HFSModel(cfg, model.student, model.teacher, model.teacher_scorer)


@pytest.mark.parametrize("path", ["logit", "sigmoid"])
def test_selection_f_and_kl_stay_float32_under_bf16_autocast(qwen_model, path):
    m = with_selection(qwen_model, score_path=path)
    m.zero_grad()
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        terms, sel = m(make_batch(), step=0, steps_per_epoch=10, generator=torch.Generator().manual_seed(0))
    for x in (sel.scores, sel.keys, sel.soft_mask, terms.set_objective, terms.relevance, terms.coverage,
              terms.redundancy, terms.kl):
        assert x.dtype == torch.float32
    terms.total.backward()
    assert grad_sums(m)["MLP_s"] > 0


@pytest.mark.parametrize("path", ["logit", "sigmoid"])
def test_inference_ranks_by_the_quantity_training_selected_by(qwen_model, path):
    """With zero Gumbel noise the training selection is the top-k of its keys; select and
    evaluate return those frames and those keys."""
    m = with_selection(qwen_model, score_path=path)
    batch = make_batch()
    m.eval()  # LoRA dropout off, as in select
    try:
        with torch.no_grad():
            _, trained = m(batch, step=0, steps_per_epoch=10, noise=torch.zeros(2, N))
            z = m.student(batch.features, batch.questions, batch.options).logits
    finally:
        m.train()
    picked = m.select(batch.features, batch.questions, batch.options)
    torch.testing.assert_close(picked.keys, trained.keys, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(picked.scores, trained.scores, rtol=1e-5, atol=1e-5)
    assert torch.equal(picked.indices, trained.indices)
    assert torch.equal(m.evaluate(batch).selection.indices, trained.indices)
    if path == "sigmoid":  # the paper's s_i = σ(z_i), keys log s_i
        torch.testing.assert_close(picked.scores, torch.sigmoid(z))
        torch.testing.assert_close(picked.keys, torch.nn.functional.logsigmoid(z))
    else:  # keys c·ẑ: mean 0, std c over the frames
        c = m.cfg.selection.logit_scale
        torch.testing.assert_close(picked.keys.mean(-1), torch.zeros(2), atol=1e-5, rtol=0)
        torch.testing.assert_close(picked.keys.std(-1, unbiased=False), torch.full((2,), c), atol=2e-3, rtol=0)  # eps 1e-6 in the variance


def test_the_paper_sigmoid_path_trains_and_selects(qwen_model):
    m = with_selection(qwen_model, score_path="sigmoid")
    m.zero_grad()
    terms, sel = m(make_batch(), step=0, steps_per_epoch=10, generator=torch.Generator().manual_seed(2))
    assert torch.isfinite(terms.total) and ((sel.scores > 0) & (sel.scores < 1)).all()
    terms.total.backward()
    assert all(v > 0 for k, v in grad_sums(m).items() if k != "theta3")
    assert m.select(make_batch().features[0], "What?", ["a", "b"]).indices.shape == (1, 4)


def test_score_function_estimator_runs_the_teacher_once_per_sample(qwen_model, monkeypatch):
    m = with_selection(with_losses(qwen_model, use_kl=False, use_set=False, use_sep=False),
                       estimator="score_function", samples=3)
    rows = []
    real = m.teacher.forward

    def spy(images, gates, questions, *args, **kwargs):
        rows.append((len(questions), gates.detach().clone()))
        return real(images, gates, questions, *args, **kwargs)

    monkeypatch.setattr(m.teacher, "forward", spy)
    noise = torch.randn(2, 3, N, generator=torch.Generator().manual_seed(0))
    m.zero_grad()
    terms, sel = m(make_batch(), step=0, steps_per_epoch=10, noise=noise)
    assert [r[0] for r in rows] == [6] and bool((rows[0][1] == 1.0).all())  # B·R rows, gates 1.0
    assert sel.indices.shape == (2, 4)
    terms.total.backward()
    sums = grad_sums(m)
    assert sums["MLP_s"] > 0 and sums["theta1"] > 0  # through log P(order) only
    with pytest.raises(ValueError, match="samples"):
        m(make_batch(), step=0, steps_per_epoch=10, noise=torch.zeros(2, N))  # one sample's noise for three


def test_score_function_ce_value_is_the_mean_over_samples(qwen_model):
    """The surrogate adds 0 to the value: ce = mean of the R samples' CEs, each the CE the
    teacher gives on that sample's frames."""
    m = with_selection(with_losses(qwen_model, use_kl=False), estimator="score_function", samples=2)
    batch = make_batch()
    noise = torch.randn(2, 2, N, generator=torch.Generator().manual_seed(5))
    m.eval()  # no dropout: the same frames give the same CE
    try:
        with torch.no_grad():
            terms, _ = m(batch, step=0, steps_per_epoch=10, noise=noise)
            st = with_selection(m, estimator="straight_through")
            one = [st(batch, step=0, steps_per_epoch=10, noise=noise[:, r])[0].ce for r in range(2)]
    finally:
        m.train()
    torch.testing.assert_close(terms.ce, (one[0] + one[1]) / 2, rtol=1e-4, atol=1e-4)


def test_a_run_saved_before_the_score_path_option_loads_with_the_paper_path(qwen_model, tmp_path, caplog):
    import json

    from hfs.pipeline.model.hfs_model import read_saved_config

    with_selection(qwen_model, score_path="logit").save(tmp_path / "old")
    config_file = tmp_path / "old" / "hfs_config.json"
    data = json.loads(config_file.read_text())
    assert data["selection"]["score_path"] == "logit"
    for key in ("score_path", "logit_scale", "estimator", "samples"):
        del data["selection"][key]
    config_file.write_text(json.dumps(data))
    with caplog.at_level("WARNING"):
        old = read_saved_config(tmp_path / "old").selection
    assert (old.score_path, old.estimator) == ("sigmoid", "straight_through")
    assert "predates selection.score_path" in caplog.text
    assert HFSModel.load(tmp_path / "old", device="cpu").cfg.selection.score_path == "sigmoid"


def test_score_path_and_estimator_are_overridable():
    from hfs.pipeline.train.config import ConfigError, resolve_run_config

    run = resolve_run_config(overrides=["selection.score_path=sigmoid", "selection.estimator=score_function",
                                        "selection.samples=3", "selection.logit_scale=1.5"])
    sel = run.model.selection
    assert (sel.score_path, sel.estimator, sel.samples, sel.logit_scale) == ("sigmoid", "score_function", 3, 1.5)
    with pytest.raises((ConfigError, ValueError), match="score_path"):
        resolve_run_config(overrides=["selection.score_path=probit"])


# ---------------------------------------------------------------- activation checkpointing


def _step_with_checkpointing(model: HFSModel, enabled: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict]:
    """One training step's loss and gradients, activation checkpointing on or off; with how many
    times the first LoRA'd projection of the student's and the teacher's LM ran."""
    runs = {"student": 0, "teacher": 0}
    hooks = []
    for side, lm in (("student", model.student.lm), ("teacher", model.teacher.lm)):
        q = next(m for n, m in lm.named_modules() if n.endswith("layers.0.self_attn.q_proj"))
        hooks.append(q.register_forward_hook(lambda *_, side=side: runs.__setitem__(side, runs[side] + 1)))
    model.set_gradient_checkpointing(enabled)
    try:
        model.train()
        model.zero_grad()
        torch.manual_seed(123)  # LoRA dropout (0.05) stays on: checkpointing must replay the same masks
        terms, _ = model(make_batch(), step=0, steps_per_epoch=10, noise=torch.randn(2, N))
        terms.total.backward()
    finally:
        model.set_gradient_checkpointing(False)
        for h in hooks:
            h.remove()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    return terms.total.detach(), grads, runs


def test_gradient_checkpointing_changes_neither_the_loss_nor_a_gradient(model):
    loss, grads, runs = _step_with_checkpointing(model, False)
    loss_ckpt, grads_ckpt, runs_ckpt = _step_with_checkpointing(model, True)
    assert runs_ckpt == {side: 2 * n for side, n in runs.items()}  # each layer ran again in the backward pass
    torch.testing.assert_close(loss_ckpt, loss, rtol=1e-6, atol=0)
    assert grads.keys() == grads_ckpt.keys() and len(grads) > 0
    for name, g in grads.items():
        torch.testing.assert_close(grads_ckpt[name], g, rtol=1e-5, atol=1e-7, msg=name)
    trained = {id(p) for ps in model.trainable_parameters().values() for p in ps}
    assert {id(p) for n, p in model.named_parameters() if n in grads} == trained


def test_gradient_checkpointing_reaches_the_teachers_vision_tower(model):
    model.set_gradient_checkpointing(True)
    try:
        flags = {n: m.gradient_checkpointing for n, m in model.teacher.hf_model.named_modules()
                 if hasattr(m, "gradient_checkpointing")}
        assert any("vision" in n or "visual" in n for n in flags) and all(flags.values()), flags
        assert all(m.gradient_checkpointing for m in model.student.lm.modules() if hasattr(m, "gradient_checkpointing"))
    finally:
        model.set_gradient_checkpointing(False)
    assert not any(getattr(m, "gradient_checkpointing", False) for m in model.modules())
