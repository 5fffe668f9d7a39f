"""Plain records every input format is read into.

A manifest line becomes zero or one `VideoItem` (what Stage 1 decodes) and zero
or more `QASample`s (what Stage 2 trains and evaluates on). A line that cannot
be read becomes a `BadRecord` with its file and line, never an exception.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from dataclasses import dataclass, field


def make_video_id(key: str, start: float | None = None, end: float | None = None) -> str:
    """Stable id of a clip: readable stem + 12 hex digits of sha1(key, window).

    `key` is the video path as the manifest writes it (relative to the video
    root), so the id does not change when the data moves to another disk. It
    is normalised first (`\\` as `/`, then `posixpath.normpath`: `./`, `//`
    and `x/..` dropped), so one file written two ways is one video; a key
    that is already normal keeps its id. A key with a scheme (`s3://...`) is
    left as written. A `start`/`end` window makes a distinct clip.
    """
    norm = key.replace("\\", "/")
    if "://" not in norm:
        norm = posixpath.normpath(norm)
    window = "" if start is None and end is None else f"@{start if start is not None else ''}-{end if end is not None else ''}"
    digest = hashlib.sha1(f"{norm}{window}".encode()).hexdigest()[:12]
    stem = os.path.splitext(os.path.basename(norm))[0]
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)[:40] or "video"
    return f"{stem}-{digest}"


@dataclass(frozen=True, slots=True)
class VideoItem:
    """One clip to decode: a file and an optional time window (seconds)."""

    video_id: str
    path: str  # absolute path on this machine
    key: str  # the path as the manifest wrote it (what the id is made from)
    start: float | None = None
    end: float | None = None
    source: str = ""  # "file:line" of the first manifest record that named it


@dataclass(frozen=True, slots=True)
class QASample:
    """One question about one clip.

    `options` is empty for open-ended samples; `answer_index` is the index of
    the correct option (None when open-ended or unknown). `answer` is the
    correct option's text for multiple choice (the answer as written is kept
    in `meta["answer_raw"]`), the answer text as written when open-ended, and
    None when unknown.
    """

    sample_id: str
    video_id: str
    question: str
    options: tuple[str, ...] = ()
    answer: str | None = None
    answer_index: int | None = None
    source: str = ""
    meta: dict = field(default_factory=dict, compare=False, hash=False)


UNREADABLE = "unreadable record"
"""`BadRecord.kind` of a record that cannot be parsed."""
ANSWER_MISMATCH = "answer matches no option"
"""`BadRecord.kind` of a multiple-choice answer that names none of the options."""


@dataclass(frozen=True, slots=True)
class BadRecord:
    """A manifest line or record that was skipped, and why."""

    file: str
    line: int  # 1-based line the record starts on (JSONL and JSON lists alike)
    reason: str
    kind: str = UNREADABLE  # what `reason` is an instance of, for counting (UNREADABLE, ANSWER_MISMATCH)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass
class Manifest:
    """Everything read from one or more manifest files."""

    videos: list[VideoItem] = field(default_factory=list)
    samples: list[QASample] = field(default_factory=list)
    bad: list[BadRecord] = field(default_factory=list)
