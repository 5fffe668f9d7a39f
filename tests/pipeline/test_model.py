"""HFSModel end to end on tiny random models (Eqs. 1–21): gradients, ablations, paths."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from PIL import Image

from hfs.pipeline.model import Batch, HFSConfig, HFSModel, LossConfig, TeacherConfig
from hfs.pipeline.selection import topk_select

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
    model = HFSModel.build(HFSConfig.tiny(teacher=kind), device="cpu")
    _live_lora(model)
    return model


@pytest.fixture(scope="module", params=["qwen2_5_vl", "internvl"])
def model(request, one_thread) -> HFSModel:
    return _build(request.param)


@pytest.fixture(scope="module")
def qwen_model(one_thread) -> HFSModel:
    return _build("qwen2_5_vl")


def frame(b: int, i: int) -> Image.Image:
    """A 64×48 frame whose colour encodes (sample, index)."""
    return Image.new("RGB", (64, 48), (20 * i % 256, 80 * b % 256, 128))


def loader(b: int, indices: list[int]) -> list[Image.Image]:
    assert indices == sorted(indices), "frames must be asked for in time order"
    return [frame(b, i) for i in indices]


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
        frame_loader=loader,
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
    assert sums["MLP_t"] == 0.0  # KL off: MLP_t unused

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

    def no_frames(b, indices):
        raise AssertionError("the teacher must not run under pseudo-label supervision")

    batch.frame_loader = no_frames
    batch.frame_labels = torch.zeros(2, N)
    batch.frame_labels[:, :3] = 1.0
    pl.zero_grad()
    terms, _ = pl(batch, step=0, steps_per_epoch=10)
    terms.total.backward()
    sums = grad_sums(pl)
    assert sums["MLP_s"] > 0 and sums["theta3"] == 0.0


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
