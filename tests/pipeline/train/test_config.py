"""Run configuration: the paper's defaults in one place, files, `--set` overrides, errors."""

from __future__ import annotations

import json

import pytest

from hfs.pipeline.model.hfs_model import HFSConfig
from hfs.pipeline.train.config import ConfigError, RunConfig, TrainConfig, parse_overrides, resolve_run_config


def test_the_papers_defaults():
    """Paper §4.1, every number it states, asserted here and nowhere else."""
    cfg = RunConfig()
    m, t = cfg.model, cfg.train
    assert m.student.name_or_path == "Qwen/Qwen2.5-1.5B-Instruct"
    assert m.student.K == 3 and m.student.lora_r == 16 and m.student.use_cot and not m.student.static_query
    assert m.student.query_positions == "paper"
    assert m.teacher.kind == "qwen2_5_vl" and m.teacher.lora_r == 8
    assert m.selection.k == 16 and m.selection.tau0 == 2.0 and m.selection.tau_decay == 0.999
    assert m.selection.tau_min == 0.5 and m.selection.relaxation == "lml"
    assert m.set_objective.weights == (0.5, 0.3, 0.2) and m.set_objective.tau_c == 2.0
    assert m.set_objective.gamma == 10.0 and m.set_objective.terms == ("rel", "cov", "red")
    assert m.losses.lambda_kl_start == 0.1 and m.losses.lambda_kl_end == 1.0
    assert m.losses.lambda_set == 1e-4 and m.losses.lambda_sep == 0.01 and m.losses.tau_d == 0.5
    assert m.losses.use_kl and m.losses.use_set and m.losses.use_sep and m.losses.supervision == "answer"
    assert t.lr == 1e-5 and t.weight_decay == 0.01 and t.batch_size == 16


def test_overrides_are_literals_coerced_to_the_fields_type():
    assert parse_overrides(["train.lr=1e-4", "student.K=0", "losses.use_kl=false"]) == {
        "train": {"lr": 1e-4}, "student": {"K": 0}, "losses": {"use_kl": "false"}}
    cfg = resolve_run_config(overrides=["train.lr=1e-4", "student.K=0", "losses.use_kl=false",
                                        "set_objective.terms=rel,cov", "set_objective.weights=(0.4, 0.4, 0.2)",
                                        "train.max_steps=None", "train.grad_clip=2", "selection.k=32"])
    assert cfg.train.lr == 1e-4 and isinstance(cfg.train.lr, float)
    assert cfg.model.student.K == 0 and cfg.model.losses.use_kl is False
    assert cfg.model.set_objective.terms == ("rel", "cov")
    assert cfg.model.set_objective.weights == (0.4, 0.4, 0.2)
    assert cfg.train.max_steps is None and cfg.train.grad_clip == 2.0 and cfg.model.selection.k == 32


def test_yaml_reads_1e_minus_4_as_a_float(tmp_path):
    f = tmp_path / "cfg.yaml"
    f.write_text("train:\n  lr: 1e-4\n  batch_size: 8\nlosses:\n  lambda_set: 2e-4\n  use_sep: no\n")
    cfg = resolve_run_config(config_file=f)
    assert cfg.train.lr == 1e-4 and cfg.model.losses.lambda_set == 2e-4 and cfg.model.losses.use_sep is False
    assert cfg.train.batch_size == 8


def test_later_sources_win(tmp_path):
    f = tmp_path / "cfg.json"
    f.write_text(json.dumps({"train": {"lr": 1e-4, "seed": 3}}))
    cfg = resolve_run_config(preset="tiny", config_file=f, options={"train": {"seed": 5}}, overrides=["train.lr=2e-4"])
    assert cfg.train.lr == 2e-4 and cfg.train.seed == 5
    assert cfg.model.selection.k == 4 and cfg.model.student.name_or_path == "tiny-student"


@pytest.mark.parametrize("overrides, message", [
    (["train.lr=fast"], "train.lr must be a number"),
    (["student.K=1.5"], "student.K must be an integer"),
    (["losses.use_kl=maybe"], "losses.use_kl must be true or false"),
    (["selection.relaxation=sinkhorn"], "relaxation"),
    (["nosuch.x=1"], "unknown sections"),
    (["train.nosuch=1"], "unknown fields ['nosuch']"),
    (["train.lr"], "expected section.field=value"),
    (["train.batch_size=0"], "train.batch_size must be >= 1"),
])
def test_bad_overrides_say_which(overrides, message):
    with pytest.raises(ConfigError) as err:
        resolve_run_config(overrides=overrides)
    assert message in str(err.value)


def test_bad_config_file_names_the_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        resolve_run_config(config_file=f)
    with pytest.raises(ConfigError, match="nope.json"):
        resolve_run_config(config_file=tmp_path / "nope.json")


def test_round_trip_through_json():
    cfg = resolve_run_config(preset="tiny", overrides=["student.K=2", "train.betas=(0.8, 0.95)"])
    back = RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and back.train.betas == (0.8, 0.95)
    assert HFSConfig.from_dict(cfg.model.to_dict()) == cfg.model


def test_accumulation_makes_the_effective_batch():
    t = TrainConfig(batch_size=16, micro_batch_size=2)
    assert t.accumulation(1) == 8 and t.accumulation(8) == 1 and t.accumulation(4) == 2
    with pytest.raises(ConfigError, match="batch_size=16 is not a multiple"):
        t.accumulation(3)


def test_clip_mode_is_per_group_unless_asked_and_old_runs_read_back_global():
    from hfs.pipeline.train.config import saved_before_clip_mode

    assert RunConfig().train.clip_mode == "per_group"
    assert resolve_run_config(overrides=["train.clip_mode=global"]).train.clip_mode == "global"
    with pytest.raises(ConfigError, match="clip_mode"):
        resolve_run_config(overrides=["train.clip_mode=sideways"])
    old = RunConfig().to_dict()
    del old["train"]["clip_mode"]
    assert RunConfig.from_dict(saved_before_clip_mode(old)).train.clip_mode == "global"


def test_gradient_checkpointing_is_auto_on_for_the_papers_models_only():
    from hfs.pipeline.train.config import AUTO_CHECKPOINTING_PARAMETERS

    auto = TrainConfig()
    assert auto.gradient_checkpointing == "auto"
    assert auto.checkpointing_on(1_500_000_000 + 8_300_000_000)  # Qwen2.5-1.5B + Qwen2.5-VL-7B
    assert not auto.checkpointing_on(2_000_000)  # the tiny preset: well under a million, and more
    assert not auto.checkpointing_on(AUTO_CHECKPOINTING_PARAMETERS - 1)
    for text, value in (("true", True), ("false", False), ("auto", "auto")):
        cfg = resolve_run_config("tiny", overrides=[f"train.gradient_checkpointing={text}"])
        assert cfg.train.gradient_checkpointing == value
        assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))).train.gradient_checkpointing == value
    assert TrainConfig(gradient_checkpointing=True).checkpointing_on(0)
    assert not TrainConfig(gradient_checkpointing=False).checkpointing_on(10**12)
    for bad in ("maybe", "1"):
        with pytest.raises(ConfigError, match="gradient_checkpointing.*true or false"):
            resolve_run_config(overrides=[f"train.gradient_checkpointing={bad}"])
    with pytest.raises(ConfigError, match="gradient_checkpointing"):
        TrainConfig(gradient_checkpointing=1)
