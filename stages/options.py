"""Command-line conventions shared by the verbs (`train`, `select`, `evaluate`, `report`, `demo`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

TEACHER_ALIASES = {"qwen2.5-vl": "qwen2_5_vl", "qwen2_5_vl": "qwen2_5_vl", "internvl3": "internvl", "internvl": "internvl"}
"""``--teacher`` names that pick a registered teacher with its default model."""


def teacher_choice(teacher: str, preset: Optional[str] = None) -> tuple[str, Optional[str]]:
    """(teacher kind, model id or path) of a ``--teacher`` value: an alias picks the kind's
    default model (its tiny preset with ``--preset tiny``); anything else is a Hugging Face
    id or folder whose kind is read from its config."""
    kind = TEACHER_ALIASES.get(teacher.lower())
    if kind is not None:
        return kind, f"tiny-{kind}" if preset == "tiny" else None
    from hfs.pipeline.model.teachers import teacher_kind

    return teacher_kind(teacher), teacher


def teacher_model_name(teacher_cfg) -> str:
    """The model a ``TeacherConfig`` names: its ``name_or_path``, else its kind's default."""
    from hfs.pipeline.model.loading import ModelLoadError
    from hfs.pipeline.model.teachers.base import teacher_class

    try:
        return teacher_cfg.name_or_path or teacher_class(teacher_cfg.kind).default_model
    except ValueError as err:  # an unknown teacher.kind
        raise ModelLoadError(f"teacher.kind: {err}") from None


def materialise_models(student: Optional[str] = None, teacher: Optional[str] = None) -> None:
    """Find (or, for a tiny preset, build) each model's folder in this process before any process
    group exists: once one does, transformers writes a model only on rank 0, so the other ranks
    could not build their tiny presets. A model that is not there fails now, naming its option."""
    from hfs.pipeline.model.loading import resolve_model_path

    for name, option in ((student, "--student"), (teacher, "--teacher")):
        if name is not None:
            resolve_model_path(name, what=option)


def require_cache_folder(cache: str | Path) -> None:
    """Raise ``CacheError`` naming ``--cache`` and how to make it when the folder is not there."""
    from hfs.cache import CacheError

    if not Path(cache).is_dir():
        raise CacheError(f"--cache {cache}: no such folder; make it with `hfs extract --out {cache}`")


def extraction_config(cache_dir: Path, preset: Optional[str]):
    """The Stage 1 config for new videos: the cache's own when it exists, else the paper's
    ViT-B/32 (the tiny CLIP with ``--preset tiny``)."""
    from hfs.cache.plan import read_config
    from hfs.pipeline.extract.config import ExtractConfig

    if (cache_dir / "plan.json").is_file():
        saved = read_config(cache_dir)
        return ExtractConfig(**{k: saved[k] for k in ExtractConfig.CACHE_KEYS if k in saved})
    if preset == "tiny":
        return ExtractConfig(preset="tiny", pretrained="none")
    return ExtractConfig()


def extract_missing_videos(data, samples, cache_dir: Path, preset: Optional[str] = None,
                           workers: Optional[int] = None, scheduler: Optional[str] = None, progress: bool = True):
    """Stage 1 (the same Dask fan-out as `hfs extract`) for the videos of ``samples`` (questions of
    the ``BenchmarkData`` ``data``) that ``cache_dir`` does not hold yet; the cache is made when
    absent (``extraction_config``). A video that fails is left to the caller to skip (its index row
    holds the error); a shard that fails raises ``CacheError``, which says to rerun. Returns the
    ``ExtractSummary``."""
    from hfs.cache import CacheError
    from hfs.pipeline.extract.run import extract

    cache_dir = Path(cache_dir)
    wanted = {s.video_id for s in samples}
    videos = [v for v in data.videos if v.video_id in wanted]
    summary = extract(videos, cache_dir, extraction_config(cache_dir, preset), workers=workers,
                      scheduler=scheduler, progress=progress)
    if summary.failed_shards:
        raise CacheError(f"extraction into {cache_dir} failed for shard(s) {', '.join(summary.failed_shards)}; "
                         "rerun to retry them")
    return summary
