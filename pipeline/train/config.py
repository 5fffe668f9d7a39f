"""Configuration of a training run: ``TrainConfig`` beside ``HFSConfig``, files and overrides.

A run's configuration is one ``RunConfig``: the model's ``HFSConfig`` (sections ``student``,
``selection``, ``set_objective``, ``losses``, ``teacher``) plus ``train`` (optimiser, batch,
data, checkpoints). It is resolved in this order, later wins:

1. the paper's defaults (every dataclass default), or the ``tiny`` preset;
2. a YAML or JSON file (``--config cfg.yaml``) with any of the six sections;
3. the command line's own options (``--student``, ``--teacher``, ``--max-steps``, ...);
4. ``--set section.field=value`` overrides, values read with ``ast.literal_eval``.

Values from a file or ``--set`` are coerced to each field's declared type, so ``1e-4``
is a float even where YAML 1.1 reads it as a string, ``true``/``false`` are booleans and
``rel,cov`` fills a tuple. An unknown section or field, or a value of the wrong type,
is an error that names it. The resolved config is saved as ``config.json`` in the run
folder; ``RunConfig.from_dict`` reads it back.

Every ablation of the paper's Tables 3–8 is a field (see ``pipeline/model/hfs_model.py``), e.g.
``--set student.K=0``, ``--set losses.use_kl=false``, ``--set set_objective.terms=rel,cov``,
``--set selection.k=32``.
"""

from __future__ import annotations

import ast
import json
import logging
import types
import typing
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, Sequence

from hfs.pipeline.model.hfs_model import _SECTIONS, HFSConfig

log = logging.getLogger(__name__)

__all__ = ["TrainConfig", "RunConfig", "AUTO_CHECKPOINTING_PARAMETERS", "ConfigError", "parse_overrides", "load_config_file", "resolve_run_config"]

LR_SCHEDULES = ("constant", "cosine")
AUTO_CHECKPOINTING_PARAMETERS = 500_000_000
"""``train.gradient_checkpointing = "auto"`` checkpoints activations from this many parameters
(student and teacher together) on: the paper's pair holds ~10B, the tiny preset well under 1M."""
CLIP_MODES = ("per_group", "global")


class ConfigError(ValueError):
    """A config file, override or combination of values that cannot be used; says which."""


@dataclass
class TrainConfig:
    """Optimisation, data and checkpointing of ``hfs train`` (paper §4.1 defaults).

    Attributes:
        lr: AdamW learning rate. Paper: 1e-5.
        weight_decay: AdamW weight decay, on every trained parameter. Paper: 0.01.
        betas: AdamW (β1, β2). Not given in the paper; torch's defaults.
        eps: AdamW ε. Not given in the paper; torch's default.
        lr_schedule: "constant" (paper: none stated) or "cosine" (to 0 at the last step).
        warmup_steps: linear warm-up of the learning rate from 0 over this many optimiser
            steps (0: none).
        batch_size: effective batch per optimiser step, over all processes. Paper: 16.
            Must equal micro_batch_size × accumulation × processes for a whole number of
            accumulation steps.
        micro_batch_size: questions per forward pass in one process.
        grad_clip: clip the gradient norm to this (0: no clipping), as ``clip_mode`` says.
            Not given in the paper.
        clip_mode: "per_group" clips the student's trained parameters (θ1, θ2, W_v, q_agg,
            MLP_s) and the teacher's (θ3, MLP_t) each to ``grad_clip`` on its own, so a large
            teacher gradient does not scale the student's down; "global" clips them all
            under one norm (the paper's single clip, and every run saved before this option).
        epochs: passes over the training samples (the last partial batch of an epoch is
            dropped). λ_KL rises over the first epoch (Eq. 21).
        max_steps: optimiser steps in all; when set it decides the run's length instead of
            ``epochs`` (the data order simply continues into the next epoch).
        seed: seeds the fresh weights, each epoch's sample order, each sample's Gumbel
            noise and dropout.
        num_workers: DataLoader worker processes reading the cache (0: in the training
            process).
        prefetch_factor: micro-batches each worker prepares ahead.
        max_open_shards: HDF5 shard files a reading process keeps open (LRU).
        checkpoint_every: write a checkpoint every this many optimiser steps (and always
            at the end).
        keep_checkpoints: how many of the newest checkpoints to keep (older ones are
            deleted once a newer one is written).
        precision: "auto" (bf16 autocast on CUDA, fp32 on the CPU), "bf16" or "fp32".
            Trainable parameters are float32 in every case.
        frame_labels: per-frame labels for ``losses.supervision = "pseudo_label"`` (Table 7):
            a ground-truth JSONL (``hfs.pipeline.evaluation.recall``'s format, one record
            per sample_id with its ``grid_hits``); frame i of a sample is labelled 1 when i
            is one of its grid hits, else 0. Required with that supervision, unused without.
        gradient_checkpointing: activation checkpointing in the student's LM and the
            teacher's language model and vision tower (``HFSModel.set_gradient_checkpointing``):
            each layer keeps only its input and runs its forward again in the backward pass,
            so activation memory falls to about one layer's worth for ~1/3 more compute; the
            loss and the gradients are unchanged. true, false, or "auto" (default): on when
            the two models hold at least ``AUTO_CHECKPOINTING_PARAMETERS`` parameters (the
            paper's 1.5B student and 7-8B teachers), off for smaller ones (the ``tiny`` preset).
    """

    lr: float = 1e-5
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    lr_schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = 0
    batch_size: int = 16
    micro_batch_size: int = 1
    grad_clip: float = 1.0
    clip_mode: Literal["per_group", "global"] = "per_group"
    epochs: int = 1
    max_steps: int | None = None
    seed: int = 0
    num_workers: int = 2
    prefetch_factor: int = 2
    max_open_shards: int = 16
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    frame_labels: str | None = None
    gradient_checkpointing: Literal["auto"] | bool = "auto"

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)
        positive = ("batch_size", "micro_batch_size", "epochs", "checkpoint_every", "keep_checkpoints",
                    "prefetch_factor", "max_open_shards")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "num_workers"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"train.max_steps must be >= 1 or None, got {self.max_steps}")
        if self.lr <= 0 or self.weight_decay < 0 or self.grad_clip < 0 or self.eps <= 0:
            raise ConfigError("train.lr and train.eps must be > 0, weight_decay and grad_clip >= 0")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"train.betas must be two numbers in [0, 1), got {self.betas}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"train.lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.clip_mode not in CLIP_MODES:
            raise ConfigError(f"train.clip_mode must be one of {CLIP_MODES}, got {self.clip_mode!r}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ConfigError(f"train.precision must be auto, bf16 or fp32, got {self.precision!r}")
        if not (self.gradient_checkpointing == "auto" or isinstance(self.gradient_checkpointing, bool)):
            raise ConfigError(f"train.gradient_checkpointing must be auto, true or false, got {self.gradient_checkpointing!r}")

    def checkpointing_on(self, model_parameters: int) -> bool:
        """Whether ``gradient_checkpointing`` turns activation checkpointing on for models of
        ``model_parameters`` parameters in all ("auto": at least ``AUTO_CHECKPOINTING_PARAMETERS``)."""
        if self.gradient_checkpointing == "auto":
            return model_parameters >= AUTO_CHECKPOINTING_PARAMETERS
        return bool(self.gradient_checkpointing)

    def accumulation(self, world_size: int) -> int:
        """Micro-batches per optimiser step in each process, so that
        micro_batch_size × accumulation × world_size = batch_size."""
        per_step = self.micro_batch_size * world_size
        if self.batch_size % per_step:
            raise ConfigError(
                f"train.batch_size={self.batch_size} is not a multiple of micro_batch_size × processes = "
                f"{self.micro_batch_size} × {world_size}; change one of them"
            )
        return self.batch_size // per_step


RESUMABLE_CHANGES = ("max_steps", "epochs", "checkpoint_every", "keep_checkpoints", "num_workers",
                     "prefetch_factor", "max_open_shards", "gradient_checkpointing")
"""``train`` fields a resumed run may change: they decide how long it runs, how it reads and
how it trades memory for time, not what a step computes."""


@dataclass
class RunConfig:
    """Everything a run needs: the model (``HFSConfig``) and its training (``TrainConfig``)."""

    model: HFSConfig = field(default_factory=HFSConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain JSON-able dict: the five model sections and ``train``."""
        return {**self.model.to_dict(), "train": json.loads(json.dumps(asdict(self.train)))}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        """Inverse of ``to_dict`` (values coerced to the fields' types)."""
        return apply_sections(cls(), data, where="config")


def saved_before_clip_mode(data: dict[str, Any], where: str = "saved config") -> dict[str, Any]:
    """A saved run config dict as it was trained: one written before ``train.clip_mode``
    existed clipped every gradient under one norm, so it gets ``clip_mode = "global"`` (logged)."""
    train = data.get("train")
    if isinstance(train, dict) and "clip_mode" not in train:
        log.warning("%s predates train.clip_mode: it was trained with one global gradient clip (clip_mode "
                    "'global')", where)
        data = {**data, "train": {**train, "clip_mode": "global"}}
    return data


_ALL_SECTIONS: dict[str, type] = {**_SECTIONS, "train": TrainConfig}


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """``value`` (from JSON, YAML or an override) as the type ``hint`` declares."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError("; or ".join(errors) if errors else f"{where}: cannot read {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where} must be one of {list(args)}, got {value!r}")
        return value
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        item = args[0] if args else Any
        return tuple(_coerce(v, item, where) for v in value)
    if hint is bool:
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.strip().lower() in ("true", "yes", "on", "1")
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, str):
            value = _literal(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):
            try:
                value = float(value)  # YAML 1.1 reads 1e-4 as a string
            except ValueError:
                raise ConfigError(f"{where} must be a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    return value


def _literal(text: str) -> Any:
    """``ast.literal_eval(text)``, or the text itself when it is not a Python literal."""
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return text


def apply_sections(run: RunConfig, data: dict[str, Any], where: str) -> RunConfig:
    """``run`` with the values of ``data`` ({section: {field: value}}) applied, each coerced
    and each section validated again. ``where`` names the source in error messages."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of sections, got {type(data).__name__}")
    unknown = set(data) - set(_ALL_SECTIONS)
    if unknown:
        raise ConfigError(f"{where}: unknown sections {sorted(unknown)}; known: {sorted(_ALL_SECTIONS)}")
    model_parts = {name: getattr(run.model, name) for name in _SECTIONS}
    train = run.train
    for name, values in data.items():
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: section {name!r} must be a mapping, got {values!r}")
        cls = _ALL_SECTIONS[name]
        hints = typing.get_type_hints(cls)
        known = {f.name for f in fields(cls)}
        bad = sorted(set(values) - known)
        if bad:
            raise ConfigError(f"{where}: unknown fields {bad} in section {name!r}; known: {sorted(known)}")
        changes = {k: _coerce(v, hints[k], f"{name}.{k}") for k, v in values.items()}
        current = train if name == "train" else model_parts[name]
        try:
            updated = replace(current, **changes)
        except (ValueError, TypeError) as err:
            raise ConfigError(f"{where}: {err}") from err
        if name == "train":
            train = updated
        else:
            model_parts[name] = updated
    return RunConfig(HFSConfig(**model_parts), train)


def parse_overrides(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["train.lr=1e-4", "losses.use_kl=false"]`` → ``{"train": {"lr": 1e-4}, ...}``.

    The value is read with ``ast.literal_eval`` when it is a Python literal (so ``1e-4``
    is a float and ``(0.5, 0.3, 0.2)`` a tuple) and kept as text otherwise; the field's
    type then decides (``_coerce``).
    """
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) != 2 or not all(parts):
            raise ConfigError(f"--set {item!r}: expected section.field=value, e.g. train.lr=1e-4")
        out.setdefault(parts[0], {})[parts[1]] = _literal(raw)
    return out


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Sections from a YAML (``.yaml``/``.yml``) or JSON file; errors name the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"--config {path}: {err.strerror or err}") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as err:  # yaml.YAMLError, json.JSONDecodeError
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"--config {path}: not valid {'YAML' if path.suffix.lower() in ('.yaml', '.yml') else 'JSON'} ({first})") from None
    return data or {}


def resolve_run_config(
    preset: str | None = None,
    tiny_teacher: str = "qwen2_5_vl",
    config_file: str | Path | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    overrides: Sequence[str] = (),
) -> RunConfig:
    """Defaults (or the ``tiny`` preset) ← config file ← command-line options ← ``--set``."""
    if preset is None:
        run = RunConfig()
    elif preset == "tiny":
        run = RunConfig(model=HFSConfig.tiny(teacher=tiny_teacher))
    else:
        raise ConfigError(f"--preset {preset!r}: the only preset is 'tiny'")
    if config_file is not None:
        run = apply_sections(run, load_config_file(config_file), where=f"--config {config_file}")
    if options:
        run = apply_sections(run, options, where="the command line")
    if overrides:
        run = apply_sections(run, parse_overrides(overrides), where="--set")
    return run
