"""Read manifest files (JSON list, JSON object holding a list, or JSONL) into a `Manifest`.

The container is told from the content, never the file suffix: a file whose
first non-blank character is `[` is a JSON list; a single JSON object is
either one record or an object holding the list of records; anything else is
JSON Lines. Each record's schema is sniffed (see `formats.py`) unless `fmt`
forces one. Every record knows the line it starts on, so a bad record becomes
a `BadRecord("file", line, reason)` a user can jump to, never a traceback.

The same clip (same key as written, same window) named twice, in one file or
across files, is one `VideoItem`; its samples all point to its `video_id`.

JSON Lines are streamed from the file a line at a time (after a pass that
checks the file is UTF-8), so memory grows with what is kept, not with the
file; JSON lists and objects are read whole. `samples=False` keeps the
videos and bad records only (what extraction needs).
"""

from __future__ import annotations

import codecs
import dataclasses
import itertools
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator
from typing import Any

from hfs.manifests.formats import (
    UNREADABLE,
    ManifestFormat,
    RecordContext,
    RecordError,
    format_hints,
    get_format,
    sniff_format,
)
from hfs.manifests.records import BadRecord, Manifest, QASample, VideoItem

logger = logging.getLogger(__name__)

MAX_LOGGED_BAD = 20  # bad records logged one by one; the rest are counted
_DECODER = json.JSONDecoder()
_WS = re.compile(r"[ \t\n\r]*")
# Keys under which a JSON object commonly holds its list of records.
_LIST_KEYS = ("data", "annotations", "records", "samples", "items", "videos")
_REST_UNREAD = "the rest of the list was not read"


class ManifestError(ValueError):
    """A manifest that cannot be read at all, or a bad record under `strict=True`.

    The message starts with "file:line: reason" (or "file: reason").
    """


# ---------------------------------------------------------------------------
# Containers: text -> (line, value, error) triples.

Item = tuple[int, Any, "str | None"]  # (1-based line, decoded value, error reason or None)


class _LineCounter:
    """1-based line number of an offset in `text`, cheap for increasing offsets."""

    def __init__(self, text: str):
        self.text, self.pos, self.line = text, 0, 1

    def at(self, pos: int) -> int:
        """Line of offset `pos`."""
        if pos < self.pos:
            self.pos, self.line = 0, 1
        self.line += self.text.count("\n", self.pos, pos)
        self.pos = pos
        return self.line


def _skip_ws(text: str, pos: int) -> int:
    """Offset of the first non-whitespace character at or after `pos`."""
    return _WS.match(text, pos).end()


def iter_records(text: str, is_record=None) -> Iterator[Item]:
    """Decode the records of a manifest's text, each with the line it starts on.

    `is_record(obj)` tells a single JSON object that is itself a record from
    one that holds the list of records (default: any object is a record).
    Undecodable input yields an item with value None and an error reason.
    """
    pos = _skip_ws(text, 0)
    if pos == len(text):
        return
    if text[pos] == "[":
        yield from _iter_json_list(text, pos, _LineCounter(text))
    elif text[pos] == "{":
        yield from _iter_object_or_lines(text, pos, is_record or (lambda obj: True))
    else:
        yield from _iter_jsonl(text)


def _iter_json_list(text: str, pos: int, lines: _LineCounter, top_level: bool = True) -> Iterator[Item]:
    """Elements of the JSON list starting at `text[pos] == "["`.

    A syntax error ends the list (the rest cannot be re-synchronised): one
    error item at the line of the error says so.
    """
    pos = _skip_ws(text, pos + 1)
    if text.startswith("]", pos):
        pos += 1
    else:
        while True:
            line = lines.at(pos)
            try:
                value, end = _DECODER.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                yield exc.lineno, None, f"invalid JSON ({exc.msg}, column {exc.colno}); {_REST_UNREAD}"
                return
            yield line, value, None
            pos = _skip_ws(text, end)
            if text.startswith(",", pos):
                pos = _skip_ws(text, pos + 1)
            elif text.startswith("]", pos):
                pos += 1
                break
            else:
                found = repr(text[pos]) if pos < len(text) else "end of file"
                reason = f"invalid JSON (expected ',' or ']' after a record, found {found}); {_REST_UNREAD}"
                yield lines.at(pos), None, reason
                return
    pos = _skip_ws(text, pos)
    if top_level and pos < len(text):
        yield lines.at(pos), None, "unexpected content after the end of the JSON list"


def _iter_object_or_lines(text: str, pos: int, is_record) -> Iterator[Item]:
    """A file starting with "{": one JSON document (a record or a holder of records), or JSONL."""
    lines = _LineCounter(text)
    try:
        obj, end = _DECODER.raw_decode(text, pos)
    except json.JSONDecodeError as exc:
        if exc.lineno > lines.at(pos) and not _second_line_is_object(text, pos):
            # One pretty-printed document with a syntax error: reading it line by
            # line would report every line, so report the error once.
            yield exc.lineno, None, f"invalid JSON ({exc.msg}, column {exc.colno}); the file was not read"
            return
        yield from _iter_jsonl(text)
        return
    if _skip_ws(text, end) < len(text):
        yield from _iter_jsonl(text)  # more after the first object: JSON Lines
    elif is_record(obj):
        yield lines.at(pos), obj, None
    else:
        yield from _iter_held_list(text, pos, obj, lines)


def _iter_held_list(text: str, pos: int, obj: dict, lines: _LineCounter) -> Iterator[Item]:
    """Records of a single JSON object that holds them in one key whose value is a list of objects."""
    list_keys = [k for k, v in obj.items() if isinstance(v, list) and all(isinstance(e, dict) for e in v)]
    preferred = [k for k in _LIST_KEYS if k in list_keys]
    if len(list_keys) == 1 or preferred:
        key = preferred[0] if preferred else list_keys[0]
        yield from _iter_json_list(text, _member_offsets(text, pos)[key], lines, top_level=False)
    elif list_keys:
        reason = f"a JSON object with several lists ({', '.join(list_keys)}); cannot tell which holds the records"
        yield lines.at(pos), None, reason
    else:
        yield lines.at(pos), obj, None  # not a holder: let the formats say what is wrong with it


def _member_offsets(text: str, pos: int) -> dict[str, int]:
    """Offset of each top-level member's value in the (valid) JSON object at `pos`."""
    offsets: dict[str, int] = {}
    pos = _skip_ws(text, pos + 1)
    while not text.startswith("}", pos):
        key, pos = _DECODER.raw_decode(text, pos)
        pos = _skip_ws(text, _skip_ws(text, pos) + 1)  # past ':'
        offsets[key] = pos
        _, pos = _DECODER.raw_decode(text, pos)
        pos = _skip_ws(text, pos)
        if text.startswith(",", pos):
            pos = _skip_ws(text, pos + 1)
    return offsets


def _second_line_is_object(text: str, pos: int) -> bool:
    """Whether the first non-blank line after the one holding `pos` is a JSON object.

    Tells JSON Lines with a broken first line (the next line is a record) from
    a pretty-printed document (the next line is a fragment such as `"data": [`).
    """
    for raw in text[pos:].split("\n", 20)[1:20]:
        if raw.strip():
            try:
                return isinstance(json.loads(raw), dict)
            except json.JSONDecodeError:
                return False
    return False


def _iter_jsonl(text: str) -> Iterator[Item]:
    """One JSON value per non-blank line; lines are split on "\\n" only, as editors count them."""
    return _iter_jsonl_lines(_text_lines(text))


def _text_lines(text: str) -> Iterator[str]:
    """The lines of `text` split on "\\n", as `text.split("\\n")` gives them, without building the list."""
    start = 0
    while (end := text.find("\n", start)) >= 0:
        yield text[start:end]
        start = end + 1
    yield text[start:]


def _iter_jsonl_lines(lines: Iterable[str]) -> Iterator[Item]:
    """One JSON value per non-blank line of `lines` (the first is line 1)."""
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        try:
            yield number, json.loads(line), None
        except json.JSONDecodeError as exc:
            yield number, None, f"not valid JSON ({exc.msg}, column {exc.colno})"


def _is_blank(line: str) -> bool:
    """Whether `line` is JSON whitespace only (what `_skip_ws` skips)."""
    return _skip_ws(line, 0) == len(line)


def iter_file_records(file: str, is_record=None) -> Iterator[Item]:
    """`iter_records` of a manifest file, streaming it when it is JSON Lines.

    The file is first checked to be UTF-8 (ManifestError naming the byte
    otherwise, before any record is read). JSON Lines (told as `iter_records`
    tells them, from the first record's line and the next non-blank line) are
    then decoded a line at a time; anything else (a JSON list, one JSON
    object, a first record spanning lines) is read whole and given to
    `iter_records`, so both give the same items.
    """
    _check_utf8(file)
    try:
        with open(file, encoding="utf-8-sig") as handle:
            # universal newlines, as `_read_text`: the lines are those of its text split on "\n"
            head: list[str] = []
            for raw in handle:
                head.append(raw)
                if not _is_blank(raw):
                    break
            if _streams_as_jsonl(head, handle):
                yield from _iter_jsonl_lines(itertools.chain(head, handle))
                return
    except OSError as exc:
        raise ManifestError(f"{file}: cannot read manifest: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:  # changed since it was checked
        raise ManifestError(f"{file}: manifest is not UTF-8 text ({exc.reason})") from None
    yield from iter_records(_read_text(file), is_record)


def _streams_as_jsonl(head: list[str], handle) -> bool:
    """Whether the file whose lines up to its first non-blank one are `head` is JSON Lines.

    Reads (and appends to `head`) up to the next non-blank line when the first
    one holds a whole JSON object: more content after it means JSON Lines, as
    in `_iter_object_or_lines`. False when the whole text must decide (a list,
    a first object that does not end on its line, or a lone object).
    """
    if not head or _is_blank(head[-1]):
        return False  # empty or blank: nothing to stream
    first = head[-1]
    pos = _skip_ws(first, 0)
    if first[pos] == "[":
        return False
    if first[pos] != "{":
        return True
    try:
        _, end = _DECODER.raw_decode(first, pos)
    except json.JSONDecodeError:
        return False
    if _skip_ws(first, end) < len(first):
        return True
    for raw in handle:
        head.append(raw)
        if not _is_blank(raw):
            return True
    return False


# ---------------------------------------------------------------------------
# Records -> Manifest.


def _json_type(value: Any) -> str:
    """JSON name of a decoded value's type."""
    names = {bool: "boolean", int: "number", float: "number", str: "string", list: "list", type(None): "null"}
    return names.get(type(value), type(value).__name__)


class _ManifestBuilder:
    """Accumulates records from one or more files into one deduplicated Manifest."""

    def __init__(self, video_root: str | os.PathLike | None, strict: bool, fmt: str | None, samples: bool = True):
        self.video_root = os.path.abspath(os.fspath(video_root)) if video_root is not None else None
        self.strict = strict
        self.keep_samples = samples
        self.forced: ManifestFormat | None = None
        if fmt is not None:
            try:
                self.forced = get_format(fmt)
            except KeyError as exc:
                raise ManifestError(exc.args[0]) from None
        self.manifest = Manifest()
        self.videos: dict[str, VideoItem] = {}
        self.sample_ids: set[str] = set()
        self.unlogged = 0

    def add_file(self, path: str | os.PathLike) -> None:
        """Read every record of one manifest file."""
        file = os.fspath(path)
        root = self.video_root or os.path.dirname(os.path.abspath(file))
        kept = self.manifest.samples if self.keep_samples else self.manifest.videos
        n_before = (len(kept), len(self.manifest.bad))
        for line, value, error in iter_file_records(file, self._is_record):
            self._add_record(RecordContext(file, line, root), value, error)
        logger.info(
            "%s: %d %s, %d bad records", file, len(kept) - n_before[0],
            "samples" if self.keep_samples else "new videos", len(self.manifest.bad) - n_before[1],
        )

    def _is_record(self, obj: Any) -> bool:
        """Whether a lone JSON object is a record (rather than a holder of records)."""
        if self.forced is not None:
            return bool(self.forced.sniff(obj))
        return sniff_format(obj) is not None

    def _add_record(self, ctx: RecordContext, value: Any, error: str | None) -> None:
        """Parse one decoded record and merge it, or report it as bad."""
        if error is not None:
            return self._bad(ctx, error)
        if not isinstance(value, dict):
            return self._bad(ctx, f"record is a {_json_type(value)}, expected an object")
        fmt = self.forced or sniff_format(value)
        if fmt is None:
            return self._bad(ctx, f"no 'video' in record: none of the keys that name a format ({format_hints()})")
        try:
            video, samples = fmt.parse(value, ctx)
        except RecordError as exc:
            return self._bad(ctx, str(exc), exc.kind)
        if video is not None and not self._add_video(video, ctx):
            return
        if self.keep_samples:
            for sample in samples:
                self._add_sample(sample, ctx)

    def _add_video(self, video: VideoItem, ctx: RecordContext) -> bool:
        """Keep the first VideoItem of each id; False (and a bad record) on a path conflict."""
        seen = self.videos.get(video.video_id)
        if seen is None:
            self.videos[video.video_id] = video
            self.manifest.videos.append(video)
        elif seen.path != video.path:
            self._bad(ctx, f"video {video.key!r} resolves to {video.path} but to {seen.path} at {seen.source}; "
                           "pass video_root so both manifests agree")
            return False
        return True

    def _add_sample(self, sample: QASample, ctx: RecordContext) -> None:
        """Append a sample, renaming it "<id>@<file-stem>:<line>" if its id is taken."""
        if sample.sample_id in self.sample_ids:
            stem = os.path.splitext(os.path.basename(ctx.file))[0]
            new_id, n = f"{sample.sample_id}@{stem}:{ctx.line}", 1
            while new_id in self.sample_ids:
                n += 1
                new_id = f"{sample.sample_id}@{stem}:{ctx.line}~{n}"
            logger.debug("%s: sample id %r already used; renamed %r", ctx.source, sample.sample_id, new_id)
            sample = dataclasses.replace(sample, sample_id=new_id)
        self.sample_ids.add(sample.sample_id)
        self.manifest.samples.append(sample)

    def _bad(self, ctx: RecordContext, reason: str, kind: str = UNREADABLE) -> None:
        """Record a skipped record: raise under strict, else log (rate-limited) and keep it."""
        bad = BadRecord(ctx.file, ctx.line, reason, kind)
        if self.strict:
            raise ManifestError(str(bad))
        self.manifest.bad.append(bad)
        if len(self.manifest.bad) <= MAX_LOGGED_BAD:
            logger.warning("skipped %s", bad)
        else:
            self.unlogged += 1

    def finish(self) -> Manifest:
        """Log what was not logged one by one and return the manifest."""
        if self.unlogged:
            logger.warning("%d more bad records skipped (not logged); see Manifest.bad", self.unlogged)
        return self.manifest


def _read_text(file: str) -> str:
    """The manifest's text (UTF-8, BOM tolerated); ManifestError naming the file otherwise."""
    try:
        with open(file, encoding="utf-8-sig") as handle:
            return handle.read()
    except OSError as exc:
        raise ManifestError(f"{file}: cannot read manifest: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{file}: manifest is not UTF-8 text (byte {exc.start}: {exc.reason})") from None


_CHUNK = 1 << 16  # bytes the UTF-8 check reads at a time


def _check_utf8(file: str) -> None:
    """ManifestError unless the file is UTF-8 (BOM tolerated), with the message `_read_text` gives.

    Reads the file in chunks and keeps none of it; the byte named is counted
    as `_read_text`'s decoder counts it (after a BOM).
    """
    try:
        with open(file, "rb") as handle:
            data = handle.read(_CHUNK)
            if data.startswith(codecs.BOM_UTF8):
                data = data[len(codecs.BOM_UTF8):]
            offset = 0  # of data[0] in the text after the BOM
            while True:
                more = handle.read(_CHUNK)
                try:
                    _, used = codecs.utf_8_decode(data, "strict", not more)
                except UnicodeDecodeError as exc:
                    raise ManifestError(
                        f"{file}: manifest is not UTF-8 text (byte {offset + exc.start}: {exc.reason})") from None
                if not more:
                    return
                offset += used
                data = data[used:] + more
    except OSError as exc:
        raise ManifestError(f"{file}: cannot read manifest: {exc.strerror or exc}") from None


def read_manifests(
    paths: Iterable[str | os.PathLike] | str | os.PathLike,
    video_root: str | os.PathLike | None = None,
    strict: bool = False,
    fmt: str | None = None,
    *,
    samples: bool = True,
) -> Manifest:
    """Read and merge manifest files into one Manifest.

    Relative video paths resolve against `video_root`, else each manifest's own
    folder. `fmt` forces one registered format for every record (else sniffed
    per record). Bad records are skipped and listed in `Manifest.bad`, or raise
    `ManifestError("file:line: reason")` with `strict=True`. A missing or
    unreadable file always raises ManifestError.

    `samples=False` reads the videos only: every record is parsed and checked
    as with samples (the same videos, ids and bad records) but no `QASample`
    is kept, and `Manifest.samples` is empty. That is all extraction needs,
    and far less memory on a large manifest.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    builder = _ManifestBuilder(video_root, strict, fmt, samples)
    for path in paths:
        builder.add_file(path)
    return builder.finish()


def read_manifest(
    path: str | os.PathLike,
    video_root: str | os.PathLike | None = None,
    strict: bool = False,
    fmt: str | None = None,
    *,
    samples: bool = True,
) -> Manifest:
    """Read one manifest file; see `read_manifests`."""
    return read_manifests([path], video_root=video_root, strict=strict, fmt=fmt, samples=samples)
