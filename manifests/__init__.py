"""Reading every input format into plain records (`VideoItem`, `QASample`).

`read_manifest(s)` reads JSON lists, JSON objects holding a list, and JSONL
(told from the content), sniffs each record's schema from the registered
formats (`list_formats()`; add one with `@register_format`), and reports bad
records as `BadRecord(file, line, reason)` instead of raising.
"""

from hfs.manifests.formats import ManifestFormat, RecordContext, RecordError, list_formats, register_format
from hfs.manifests.reader import ManifestError, read_manifest, read_manifests
from hfs.manifests.records import BadRecord, Manifest, QASample, VideoItem, make_video_id

__all__ = [
    "BadRecord",
    "Manifest",
    "ManifestError",
    "ManifestFormat",
    "QASample",
    "RecordContext",
    "RecordError",
    "VideoItem",
    "list_formats",
    "make_video_id",
    "read_manifest",
    "read_manifests",
    "register_format",
]
