"""Where model weights come from: local folders, the Hugging Face cache, tiny presets.

hfs is offline by default: a Hugging Face id is only looked up in the local
cache. Downloading needs both `allow_download=True` and `HF_HUB_OFFLINE` unset.
Every failure is one `ModelLoadError` whose message says which option to fix
and how to get a local copy.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

logger = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """A model, tokenizer or adapter could not be found or does not fit."""


def _hub_offline() -> bool:
    """True when `HF_HUB_OFFLINE` is set to anything but an explicit false value."""
    value = os.environ.get("HF_HUB_OFFLINE", "")
    return value.strip().lower() not in ("", "0", "false", "no", "off")


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def _looks_like_path(name: str) -> bool:
    """A name that can only be a filesystem path, not a hub id (`org/name` or `name`)."""
    return name.startswith((".", "~")) or _HUB_ID.match(name) is None


def _missing_model_message(name: str, what: str, reason: str) -> str:
    """One line: what is missing, and the command that makes a local copy."""
    local = f"models/{name.rstrip('/').split('/')[-1]}"
    return (
        f"{what} {name!r}: {reason}. Download it once with "
        f"`huggingface-cli download {name} --local-dir {local}` and pass `{what} {local}`."
    )


def resolve_model_path(name_or_path: str | Path, what: str = "--teacher", allow_download: bool = False) -> Path:
    """Local folder holding the model `name_or_path`.

    - a tiny preset name (`hfs.pipeline.model.tiny.TINY_PRESETS`) is built once per process;
    - an existing local folder is used as is;
    - a hub id (`org/name`) is taken from the local Hugging Face cache; it is
      downloaded only when `allow_download` is true and `HF_HUB_OFFLINE` is unset.
    `what` names the command-line option in error messages (`--student`, `--teacher`).
    """
    from hfs.pipeline.model.tiny import TINY_PRESETS, tiny_model_path

    name = str(name_or_path)
    if name in TINY_PRESETS:
        return tiny_model_path(name)
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ModelLoadError(f"{what} {name!r} is a file; pass the folder that holds config.json and the weights")
    if _looks_like_path(name):
        raise ModelLoadError(f"{what} {name!r}: no such folder")
    return _resolve_hub_id(name, what, allow_download and not _hub_offline())


def _resolve_hub_id(repo_id: str, what: str, download: bool) -> Path:
    """Snapshot folder of `repo_id` from the Hugging Face cache, downloading it if `download`."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        folder = snapshot_download(repo_id, local_files_only=True)
        logger.info("%s %s found in the Hugging Face cache: %s", what, repo_id, folder)
        return Path(folder)
    except (LocalEntryNotFoundError, OSError, ValueError) as err:
        if not download:
            reason = "not a local folder and not in the Hugging Face cache (hfs runs offline by default)"
            raise ModelLoadError(_missing_model_message(repo_id, what, reason)) from err
    try:
        logger.info("downloading %s %s from the Hugging Face hub", what, repo_id)
        return Path(snapshot_download(repo_id))
    except (HfHubHTTPError, OSError, ValueError) as err:
        reason = f"download failed ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        raise ModelLoadError(_missing_model_message(repo_id, what, reason)) from err


def default_dtype(device):
    """Weights dtype for `device`: bfloat16 on CUDA (float16 where bf16 is unsupported), float32 elsewhere."""
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def base_model_key(name_or_path: str | Path) -> str:
    """Comparable model name: the last path component, lower-cased; a hub cache snapshot
    (`models--Org--Name/snapshots/<hash>`) maps to `name`.

    So "Qwen/Qwen2.5-VL-7B-Instruct", "/models/Qwen2.5-VL-7B-Instruct" and its cache
    snapshot compare equal.
    """
    parts = Path(str(name_or_path).rstrip("/")).parts
    for i, part in enumerate(parts):
        if part.startswith("models--") and i + 1 < len(parts) and parts[i + 1] == "snapshots":
            return part.split("--")[-1].lower()
    return parts[-1].lower() if parts else ""


def check_base_model(saved_base: str | None, current_base: str | Path, what: str) -> None:
    """Raise `ModelLoadError` when a checkpoint made on `saved_base` is loaded onto another model.

    `what` says which checkpoint (e.g. "teacher adapter runs/x/teacher_lora").
    A checkpoint without a recorded base only logs a warning.
    """
    if not saved_base:
        logger.warning("%s does not record its base model; assuming it fits %s", what, current_base)
        return
    if base_model_key(saved_base) != base_model_key(current_base):
        raise ModelLoadError(
            f"{what} was trained on {saved_base!r} but the model loaded is {str(current_base)!r}; "
            "load the matching base model or another checkpoint"
        )


def adapter_base_model(adapter_dir: str | Path) -> str | None:
    """`base_model_name_or_path` recorded in a peft adapter folder's adapter_config.json."""
    config_file = Path(adapter_dir) / "adapter_config.json"
    if not config_file.is_file():
        raise ModelLoadError(f"{adapter_dir} is not a LoRA adapter folder (no adapter_config.json)")
    return json.loads(config_file.read_text()).get("base_model_name_or_path")


def set_activation_checkpointing(model, enabled: bool, context_fn=None) -> None:
    """Per-layer activation checkpointing of a transformers model on or off, non-reentrant.

    Non-reentrant checkpointing needs no input that requires grad, so a peft model's frozen
    embeddings (the student's pass A) still pass gradients to the LoRA weights inside each
    checkpointed layer; peft's ``enable_input_require_grads`` is for the reentrant kind.
    ``context_fn``: ``torch.utils.checkpoint``'s, called at each layer's forward, returns the
    contexts of that forward and of its recompute in the backward pass."""
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise ValueError(f"{type(model).__name__} does not support activation checkpointing; "
                         "set train.gradient_checkpointing=false")
    # transformers >= 5.2x names it activation_checkpointing_*; gradient_checkpointing_* is its deprecated alias
    if enabled:
        kwargs = {"use_reentrant": False, **({"context_fn": context_fn} if context_fn is not None else {})}
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    elif hasattr(model, "activation_checkpointing_disable"):
        model.activation_checkpointing_disable()
    else:
        model.gradient_checkpointing_disable()
