"""Reading every input format into plain records (`VideoItem`, `QASample`).

`read_manifest(s)` reads JSON lists, JSON objects holding a list, and JSONL
(told from the content), sniffs each record's schema from the registered
formats (`list_formats()`; add one with `@register_format`), and reports bad
records as `BadRecord(file, line, reason)` instead of raising.

Evaluation benchmarks are read from their published files by the readers in
`hfs.manifests.benchmarks` (`list_benchmarks()`, `get_benchmark(name).read(dir)`;
add one with `@register_benchmark`).
"""

from hfs.manifests.formats import ManifestFormat, RecordContext, RecordError, list_formats, register_format
from hfs.manifests.reader import ManifestError, read_manifest, read_manifests
from hfs.manifests.records import BadRecord, Manifest, QASample, VideoItem, make_video_id
from hfs.manifests.benchmarks import (  # isort: skip  (after records: the readers build on them)
    Benchmark,
    BenchmarkData,
    BenchmarkError,
    get_benchmark,
    list_benchmarks,
    register_benchmark,
)

__all__ = [
    "BadRecord",
    "Benchmark",
    "BenchmarkData",
    "BenchmarkError",
    "Manifest",
    "ManifestError",
    "ManifestFormat",
    "QASample",
    "RecordContext",
    "RecordError",
    "VideoItem",
    "get_benchmark",
    "list_benchmarks",
    "list_formats",
    "make_video_id",
    "read_manifest",
    "read_manifests",
    "register_benchmark",
    "register_format",
]
