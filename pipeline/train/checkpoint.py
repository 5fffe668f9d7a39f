"""Training checkpoints of a run folder, written atomically, read back exactly.

```
runs/NAME/
  config.json                 the resolved RunConfig (written when the run starts)
  data.json                   samples kept and skipped, by reason
  metrics.jsonl               one line per optimiser step
  checkpoints/
    step-00000500/
      model/                  HFSModel.save: hfs_config.json, student/ (both adapters, heads),
                              teacher_lora/ (peft), teacher_scorer.safetensors
      trainer_state.pt        optimiser, step, RNG states of every process, sampler position,
                              skipped steps, the learning-rate schedule's length, the training
                              data's fingerprint, the run config and library versions
    latest                    name of the newest complete checkpoint
```

A checkpoint is written into a temporary folder and renamed into place, and ``latest`` is
replaced after that, so a crash at any moment leaves the previous checkpoint intact and
never a folder a reader could mistake for a complete one.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hfs.cache.format import atomic_write_bytes, publish_mode
from hfs.pipeline.train.run_folder import CHECKPOINTS, LATEST, MODEL, TRAINER_STATE

log = logging.getLogger(__name__)

__all__ = ["save_checkpoint", "latest_checkpoint", "load_trainer_state", "run_model_dir", "rng_state",
           "set_rng_state", "restore_rng", "dropout_seed"]

_STEP_DIR = re.compile(r"^step-(\d+)$")


def _step_name(step: int) -> str:
    return f"step-{step:08d}"


def save_checkpoint(run_dir: str | Path, step: int, model, trainer_state: dict[str, Any], keep: int = 2) -> Path:
    """Write checkpoint ``step`` of ``model`` (an ``HFSModel``) and ``trainer_state`` under
    ``run_dir/checkpoints``, atomically; keep the ``keep`` newest. Returns its folder."""
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / _step_name(step)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=root))
    publish_mode(tmp, directory=True)
    try:
        model.save(tmp / MODEL)
        torch.save(trainer_state, tmp / TRAINER_STATE)
        _fsync_tree(tmp)
        if final.exists():  # the same step written again (a resumed run that stopped here)
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _write_latest(root, final.name)
    _prune(root, keep)
    log.info("checkpoint %s", final)
    return final


def _fsync_tree(folder: Path) -> None:
    """Flush every file of ``folder`` to disk before it is renamed into place."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())


def _write_latest(root: Path, name: str) -> None:
    atomic_write_bytes(root / LATEST, (name + "\n").encode())


def _steps(root: Path) -> list[tuple[int, Path]]:
    found = []
    for p in root.iterdir() if root.is_dir() else []:
        m = _STEP_DIR.match(p.name)
        if m and (p / TRAINER_STATE).is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def _prune(root: Path, keep: int) -> None:
    for _, path in _steps(root)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)
    for leftover in root.glob(".step-*.tmp-*"):  # from a run killed while writing
        shutil.rmtree(leftover, ignore_errors=True)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    root = Path(run_dir) / CHECKPOINTS
    latest = root / LATEST
    if latest.is_file():
        path = root / latest.read_text().strip()
        if (path / TRAINER_STATE).is_file():
            return path
    steps = _steps(root)
    return steps[-1][1] if steps else None


def run_model_dir(run: str | Path) -> Path:
    """The saved model of ``run``: a run folder (its newest checkpoint), a checkpoint folder,
    or a saved model folder. Raises ``FileNotFoundError`` saying what was looked for."""
    run = Path(run)
    if (run / "hfs_config.json").is_file():
        return run
    if (run / MODEL / "hfs_config.json").is_file():
        return run / MODEL
    ckpt = latest_checkpoint(run)
    if ckpt is None:
        raise FileNotFoundError(f"{run} holds no checkpoint (looked for {run / CHECKPOINTS / LATEST} and "
                                f"{run / CHECKPOINTS}/step-*); train one with `hfs train --out {run}`")
    return ckpt / MODEL


def load_trainer_state(checkpoint: str | Path) -> dict[str, Any]:
    """``trainer_state.pt`` of a checkpoint folder (CPU tensors)."""
    return torch.load(Path(checkpoint) / TRAINER_STATE, map_location="cpu", weights_only=False)


def rng_state() -> dict[str, Any]:
    """This process's random states: torch (CPU), CUDA (when available)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` returned."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def restore_rng(saved: list[dict[str, Any]], rank: int, world: int, seed: int, step: int) -> bool:
    """Restore process ``rank``'s random states from a checkpoint's (``saved``, one per process
    of the run that wrote it). Returns True when restored exactly; False when that run had
    another number of processes: then each process is reseeded from ``dropout_seed(seed,
    rank, step)``, so the processes draw different dropout masks and a rerun draws the same."""
    if len(saved) == world:
        set_rng_state(saved[rank])
        return True
    torch.manual_seed(dropout_seed(seed, rank, step))  # the CPU and every CUDA device
    return False


def dropout_seed(seed: int, rank: int, step: int) -> int:
    """Seed of process ``rank``'s random stream from optimiser step ``step`` on (a resume with
    another number of processes)."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1, dtype=np.uint64)[0] >> 1)
