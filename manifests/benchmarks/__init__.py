"""Evaluation benchmarks read from their published files: one module each, one registry.

    from hfs.manifests.benchmarks import get_benchmark
    data = get_benchmark("videomme").read("/data/Video-MME")
    data.samples, data.videos, data.bad, data.missing

Registered: `nextqa`, `videomme`, `longvideobench`, `mlvu` (`list_benchmarks()`).
Adding a benchmark is one module with a `Benchmark` subclass and the
decorator (timm-style), plus its import at the bottom of this file:

    @register_benchmark("mybench")
    class MyBench(Benchmark):
        title = "MyBench"
        views = {"json": ("mybench.json",)}
        def read(self, data_dir, *, video_dir=None, view=None): ...
        def aggregate(self, outcomes, skips): ...
        def table_metrics(self, aggregate): ...

Each module's docstring says where its layout comes from (dataset card and
lmms-eval task). Scoring around the modules' `aggregate` is in
`hfs.pipeline.evaluation.scoring`; subtitle parsing and the window rule in `subtitles`.
"""

from __future__ import annotations

from hfs.manifests.benchmarks.base import (
    BAD_ROW,
    MISSING_VIDEO,
    SUBTITLE_SETTINGS,
    Benchmark,
    BenchmarkData,
    BenchmarkError,
    MissingVideo,
    Outcome,
    Skip,
    accuracy_cell,
    by_subtitle_setting,
    cells_by,
    macro_average,
)
from hfs.manifests.benchmarks.subtitles import (
    DEFAULT_WINDOW_S,
    Cue,
    SubtitleError,
    cues_near,
    lines_near,
    parse_lvb_cues,
    parse_srt,
    read_subtitle_file,
    sample_subtitle_lines,
)

_BENCHMARKS: dict[str, Benchmark] = {}


def register_benchmark(name: str):
    """Class (or object) decorator that adds a benchmark under `name`.

    A class is instantiated once with no arguments; an object is used as is.
    It must have `read`, `aggregate` and `table_metrics` methods.
    """

    def decorator(obj):
        if name in _BENCHMARKS:
            raise ValueError(f"benchmark {name!r} is already registered")
        instance = obj() if isinstance(obj, type) else obj
        for method in ("read", "aggregate", "table_metrics"):
            if not callable(getattr(instance, method, None)):
                raise TypeError(f"benchmark {name!r} has no {method}() method")
        instance.name = name
        _BENCHMARKS[name] = instance
        return obj

    return decorator


def list_benchmarks() -> list[str]:
    """Names of the registered benchmarks, in registration order."""
    return list(_BENCHMARKS)


def get_benchmark(name: str) -> Benchmark:
    """The registered benchmark called `name`; KeyError naming the known ones otherwise."""
    try:
        return _BENCHMARKS[name]
    except KeyError:
        raise KeyError(f"unknown benchmark {name!r}; known: {', '.join(list_benchmarks())}") from None


# Registration happens on import; order here is the order `list_benchmarks()` shows.
from hfs.manifests.benchmarks import nextqa, videomme, longvideobench, mlvu  # noqa: E402,F401  isort: skip

__all__ = [
    "BAD_ROW",
    "DEFAULT_WINDOW_S",
    "MISSING_VIDEO",
    "SUBTITLE_SETTINGS",
    "Benchmark",
    "BenchmarkData",
    "BenchmarkError",
    "Cue",
    "MissingVideo",
    "Outcome",
    "Skip",
    "SubtitleError",
    "accuracy_cell",
    "by_subtitle_setting",
    "cells_by",
    "cues_near",
    "get_benchmark",
    "lines_near",
    "list_benchmarks",
    "macro_average",
    "parse_lvb_cues",
    "parse_srt",
    "read_subtitle_file",
    "register_benchmark",
    "sample_subtitle_lines",
]
