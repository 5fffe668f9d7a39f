"""Manifest formats: a registry of record schemas and the three built-in ones.

A format turns one decoded JSON record into zero or one `VideoItem` and zero or
more `QASample`s. Adding a format is one class plus the decorator (timm-style):

    @register_format("my_format")
    class MyFormat(ManifestFormat):
        hint = "'clip'"                      # the key that gives the schema away
        def sniff(self, record): return "clip" in record
        def parse(self, record, ctx): ...    # -> (VideoItem | None, [QASample])

`parse` raises `RecordError(reason)` for a bad record; the reader turns it into
a `BadRecord` with the record's file and line. Formats are sniffed in order of
`priority` (highest first), so the catch-all `jsonl` format comes last.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from hfs.manifests.answers import letter_index, normalise_answer, option_letter, option_letters
from hfs.manifests.records import ANSWER_MISMATCH, UNREADABLE, QASample, VideoItem, make_video_id

_FORMATS: dict[str, "ManifestFormat"] = {}

_MEDIA_TAG = re.compile(r"[ \t]*<(?:image|video)>[ \t]*\n?")
_OPTIONS_HEADER = re.compile(r"^\s*(?:options|choices)\s*(?::\s*(.*))?$", re.IGNORECASE)
# "A. text", "A) text", "A: text", "(A) text"
_OPTION_LINE = re.compile(r"^\s*(?:\(([A-Z])\)|([A-Z])[.):])\s*(\S.*?)\s*$")
# An answer that names a letter: "B", "B.", "(B)", "B) text", "B. text"
_ANSWER_LETTER = re.compile(r"^\s*(?:\(([A-Z])\)|([A-Z])(?:[.):]|\s*$))")
_QUESTION_PREFIX = re.compile(r"^\s*question\s*:\s*", re.IGNORECASE)
_ANSWER_PREFIX = re.compile(r"^\s*(?:best\s+option|answer)\s*:\s*", re.IGNORECASE)
_HUMAN_ROLES = ("human", "user")
_GPT_ROLES = ("gpt", "assistant")


class RecordError(ValueError):
    """A record that cannot be read; the message is the reason, without file:line.

    `kind` groups reasons for counting (`UNREADABLE`, `ANSWER_MISMATCH`).
    """

    def __init__(self, message: str, kind: str = UNREADABLE):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class RecordContext:
    """Where a record comes from and how its relative video paths resolve.

    `file` is the manifest path as the user gave it, `line` the 1-based line
    the record starts on, `root` the absolute folder relative video paths
    resolve against (the video root, else the manifest's own folder).
    """

    file: str
    line: int
    root: str

    @cached_property
    def source(self) -> str:
        """The record's location as "file:line" (one string per record, shared by its clip and samples)."""
        return f"{self.file}:{self.line}"

    def sample_id(self, record_id: str | None, turn: int, n_turns: int) -> str:
        """Sample id: the record's id, else "file-stem:line"; "#turn" (0-based) if several."""
        base = record_id if record_id is not None else f"{os.path.splitext(os.path.basename(self.file))[0]}:{self.line}"
        return f"{base}#{turn}" if n_turns > 1 else base


class ManifestFormat:
    """Base class of a manifest format (subclassing is optional; duck typing works).

    `name` is set by `register_format`; `hint` names the key that identifies the
    schema, for error messages; `priority` orders sniffing (highest first).
    """

    name: str = ""
    hint: str = ""
    priority: int = 0

    def sniff(self, record: dict) -> bool:
        """Whether `record` looks like this format."""
        raise NotImplementedError

    def parse(self, record: dict, ctx: RecordContext) -> tuple[VideoItem | None, list[QASample]]:
        """Read `record` into a clip and its samples; raise `RecordError` if it is bad."""
        raise NotImplementedError


def register_format(name: str):
    """Class (or object) decorator that adds a manifest format under `name`.

    A class is instantiated once with no arguments; an object is used as is.
    It must have `sniff(record) -> bool` and `parse(record, ctx)`.
    """

    def decorator(obj):
        if name in _FORMATS:
            raise ValueError(f"manifest format {name!r} is already registered")
        instance = obj() if isinstance(obj, type) else obj
        for method in ("sniff", "parse"):
            if not callable(getattr(instance, method, None)):
                raise TypeError(f"manifest format {name!r} has no {method}() method")
        instance.name = name
        _FORMATS[name] = instance
        return obj

    return decorator


def list_formats() -> list[str]:
    """Names of the registered manifest formats, in sniffing order."""
    return [f.name for f in _sniff_order()]


def get_format(name: str) -> ManifestFormat:
    """The registered format called `name`; KeyError naming the known ones otherwise."""
    try:
        return _FORMATS[name]
    except KeyError:
        raise KeyError(f"unknown manifest format {name!r}; known: {', '.join(list_formats())}") from None


def sniff_format(record: dict) -> ManifestFormat | None:
    """The first format (by priority) whose `sniff` accepts `record`, or None."""
    for fmt in _sniff_order():
        if fmt.sniff(record):
            return fmt
    return None


def format_hints() -> str:
    """A one-line description of which key selects which format, for error messages."""
    return ", ".join(f"{f.hint} -> {f.name}" for f in _sniff_order() if getattr(f, "hint", ""))


def _sniff_order() -> list[ManifestFormat]:
    """Registered formats, highest priority first, registration order among equals."""
    return sorted(_FORMATS.values(), key=lambda f: -getattr(f, "priority", 0))


# ---------------------------------------------------------------------------
# Field helpers shared by the formats. Each raises RecordError with a reason.


def _type_name(value: Any) -> str:
    """JSON name of a decoded value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _clip(text: str, limit: int = 60) -> str:
    """`text` shortened for an error message."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def require_str(record: dict, key: str, *, required: bool = True) -> str | None:
    """`record[key]` as a non-empty stripped string; None when absent and not required."""
    value = record.get(key)
    if value is None:
        if required:
            raise RecordError(f"missing required key {key!r}")
        return None
    if not isinstance(value, str):
        raise RecordError(f"{key!r} must be a string, got {_type_name(value)}")
    if not value.strip():
        raise RecordError(f"{key!r} is empty")
    return value.strip()


def record_id(record: dict) -> str | None:
    """The record's `id` as a string (strings and integers accepted), or None."""
    value = record.get("id")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RecordError(f"'id' must be a string or an integer, got {_type_name(value)}")
    text = str(value).strip()
    if not text:
        raise RecordError("'id' is empty")
    return text


def read_window(record: dict) -> tuple[float | None, float | None]:
    """The clip window (`start`, `end`) in seconds, validated; None where absent."""
    bounds = []
    for key in ("start", "end"):
        value = record.get(key)
        if value is None:
            bounds.append(None)
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecordError(f"{key!r} must be a number of seconds, got {_type_name(value)}")
        if not math.isfinite(value):
            raise RecordError(f"{key!r} must be finite, got {value}")
        if value < 0:
            raise RecordError(f"{key!r} is negative ({value})")
        bounds.append(float(value))  # 5 and 5.0 must give the same video id
    start, end = bounds
    if start is not None and end is not None and start >= end:
        raise RecordError(f"start ({start:g}) must be before end ({end:g})")
    return start, end


def make_video(record: dict, ctx: RecordContext, key: str, data_source: str | None = None) -> VideoItem:
    """The clip a record names: path resolved against `ctx.root`, id from key and window.

    With `data_source`, a relative `key` that does not exist under the root but
    does under `root/data_source/` resolves there (the LLaVA-Video-178K layout);
    the key then includes the data_source folder, as it is relative to the root.
    """
    start, end = read_window(record)
    if os.path.isabs(key):
        path = os.path.normpath(key)
    else:
        path = os.path.normpath(os.path.join(ctx.root, key))
        if data_source and not os.path.exists(path):
            alt = os.path.normpath(os.path.join(ctx.root, data_source, key))
            if os.path.exists(alt):
                key, path = f"{data_source.rstrip('/')}/{key}", alt
    return VideoItem(make_video_id(key, start, end), path, key, start, end, ctx.source)


def strip_media_tags(text: str) -> str:
    """`text` without "<image>" / "<video>" placeholders (and the newline after them)."""
    return _MEDIA_TAG.sub("", text).strip()


def split_options(text: str) -> tuple[str, tuple[str, ...], str]:
    """Split a prompt into (question, options, trailing instruction).

    Options are a run of at least two lines lettered A, B, C... in order, as
    "A. x", "A) x", "A: x" or "(A) x", optionally after an "Options:" header
    (whose own line may hold option A). Text after the run (e.g. "Answer with
    the option's letter.") is returned as the trailing instruction. Without
    such a run, the whole text is the question and options are empty.
    """
    lines = text.split("\n")
    header = next((i for i, ln in enumerate(lines) if _OPTIONS_HEADER.match(ln)), None)
    if header is not None:
        rest = _OPTIONS_HEADER.match(lines[header]).group(1)
        lines = lines[:header] + ([rest] if rest else []) + lines[header + 1 :]
    first = header if header is not None else 0
    for i in range(first, len(lines)):
        options = _option_run(lines, i)
        if len(options) >= 2:
            after = i + len(options)
            if after < len(lines) and _OPTION_LINE.match(lines[after]):
                raise RecordError(f"option letters out of order at {_clip(lines[after].strip())!r}")
            question = _QUESTION_PREFIX.sub("", "\n".join(lines[:i])).strip()
            return question, tuple(options), "\n".join(lines[after:]).strip()
        if header is not None:
            break  # after a header, the options must start right away
    if header is not None:
        raise RecordError("'Options:' block has no lines like 'A. text' or '(A) text'")
    return _QUESTION_PREFIX.sub("", text).strip(), (), ""


def _option_run(lines: list[str], start: int) -> list[str]:
    """Texts of the consecutive option lines A, B, C... beginning at `lines[start]`."""
    options: list[str] = []
    for line in lines[start:]:
        m = _OPTION_LINE.match(line)
        if not m or (m.group(1) or m.group(2)) != option_letter(len(options)):
            break
        options.append(m.group(3))
    return options


def read_options(value: Any) -> tuple[str, ...]:
    """Options given as a list of strings or a dict letter -> text (letters A, B, ... in full)."""
    if isinstance(value, dict):
        letters = {str(k).strip().strip("().:").upper(): v for k, v in value.items()}
        expected = option_letters(len(letters))
        if sorted(letters) != expected:
            raise RecordError(f"option letters must be A, B, C... without gaps, got {', '.join(map(str, value))}")
        value = [letters[k] for k in expected]
    if not isinstance(value, list):
        raise RecordError(f"'options' must be a list or an object letter -> text, got {_type_name(value)}")
    if len(value) > 26:
        raise RecordError(f"at most 26 options are supported, got {len(value)}")
    options = []
    for i, text in enumerate(value):
        if not isinstance(text, str) or not text.strip():
            raise RecordError(f"option {option_letter(i)} must be a non-empty string, got {_type_name(text)}")
        options.append(text.strip())
    return tuple(options)


def resolve_answer(answer: Any, options: tuple[str, ...]) -> int:
    """Index of the option `answer` names: an integer index, an option's text, or a letter.

    Text wins over letter (options "A"/"B" stay unambiguous); a letter may be
    followed by text ("B. walking", "(B) walking"), which is not checked.
    """
    n = len(options)
    if isinstance(answer, bool) or not isinstance(answer, (int, str)):
        raise RecordError(f"'answer' must be a letter, an index or an option's text, got {_type_name(answer)}")
    if isinstance(answer, int):
        if not 0 <= answer < n:
            raise RecordError(f"answer index {answer} is out of range for {n} options", ANSWER_MISMATCH)
        return answer
    text = _ANSWER_PREFIX.sub("", answer).strip()
    for i, option in enumerate(options):
        if normalise_answer(option) == normalise_answer(text):
            return i
    m = _ANSWER_LETTER.match(text)
    if m:
        index = letter_index(m.group(1) or m.group(2))
        if index >= n:
            letter = m.group(1) or m.group(2)
            raise RecordError(f"answer {_clip(answer)!r} names option {letter} but there are only {n} options",
                              ANSWER_MISMATCH)
        return index
    raise RecordError(f"answer {_clip(answer)!r} is neither an option letter, an index nor one of the {n} options",
                      ANSWER_MISMATCH)


def make_samples(
    turns: list[tuple[str | None, tuple[str, ...], Any, dict]],
    video: VideoItem,
    ctx: RecordContext,
    rid: str | None,
) -> list[QASample]:
    """QASamples from (question, options, answer, meta) turns of one record, validated.

    Multiple choice: at least two options, a non-empty question, and an answer
    (if given) that resolves to an option; `answer` is then the option's text
    and the raw answer is kept in `meta["answer_raw"]`. Open-ended: `answer` is
    the text as written (numbers accepted), None when absent.
    """
    samples = []
    for k, (question, options, answer, meta) in enumerate(turns):
        where = f"turn {k}: " if len(turns) > 1 else ""
        try:
            index, answer_text = _check_turn(question, options, answer)
        except RecordError as exc:
            raise RecordError(f"{where}{exc}", exc.kind) from None
        if index is not None:
            meta = {**meta, "answer_raw": answer}
        samples.append(
            QASample(
                sample_id=ctx.sample_id(rid, k, len(turns)),
                video_id=video.video_id,
                question=question,
                options=options,
                answer=answer_text,
                answer_index=index,
                source=ctx.source,
                meta=meta,
            )
        )
    return samples


def _check_turn(question: str | None, options: tuple[str, ...], answer: Any) -> tuple[int | None, str | None]:
    """Validate one question/answer; return (answer_index, answer text)."""
    if options and len(options) < 2:
        raise RecordError(f"a multiple-choice question needs at least 2 options, got {len(options)}")
    if not question:
        raise RecordError("empty question with options" if options else "empty question")
    if isinstance(answer, str) and not answer.strip():
        raise RecordError("empty answer")
    if answer is None:
        return None, None
    if options:
        index = resolve_answer(answer, options)
        return index, options[index]
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
        raise RecordError(f"'answer' must be text, got {_type_name(answer)}")
    return None, _ANSWER_PREFIX.sub("", str(answer)).strip() if isinstance(answer, str) else str(answer)


# ---------------------------------------------------------------------------
# The formats.


@register_format("llava_video")
class LlavaVideoFormat(ManifestFormat):
    """LLaVA-Video-178K: `{id, data_source, video, conversations: [{from, value}, ...]}`.

    Each human/gpt pair is one sample. The human turn holds the question and
    possibly an options block; the gpt turn's leading letter is the answer of
    a multiple-choice turn, its whole text the answer of an open-ended one.
    """

    hint = "'conversations'"
    priority = 20

    def sniff(self, record: dict) -> bool:
        """LLaVA records carry a `conversations` list."""
        return "conversations" in record

    def parse(self, record: dict, ctx: RecordContext) -> tuple[VideoItem, list[QASample]]:
        """One VideoItem and one QASample per human/gpt pair."""
        key = require_str(record, "video")
        data_source = require_str(record, "data_source", required=False)
        video = make_video(record, ctx, key, data_source)
        turns = []
        for k, (human, gpt) in enumerate(self._pairs(record.get("conversations"))):
            question, options, suffix = split_options(strip_media_tags(human))
            meta = {"turn": k, **({"data_source": data_source} if data_source else {})}
            if suffix:
                meta["prompt_suffix"] = suffix
            turns.append((question, options, gpt.strip(), meta))
        return video, make_samples(turns, video, ctx, record_id(record))

    @staticmethod
    def _pairs(conversations: Any) -> list[tuple[str, str]]:
        """(human value, gpt value) pairs of a conversation, checked to alternate."""
        if not isinstance(conversations, list) or not conversations:
            raise RecordError(f"'conversations' must be a non-empty list, got {_type_name(conversations)}")
        if len(conversations) % 2:
            raise RecordError(f"'conversations' has {len(conversations)} turns; expected human/gpt pairs")
        texts = []
        for i, turn in enumerate(conversations):
            roles = _HUMAN_ROLES if i % 2 == 0 else _GPT_ROLES
            if not isinstance(turn, dict):
                raise RecordError(f"conversations[{i}] must be an object, got {_type_name(turn)}")
            if turn.get("from") not in roles:
                raise RecordError(f"conversations[{i}]: expected from={roles[0]!r}, got {turn.get('from')!r}")
            value = turn.get("value")
            if not isinstance(value, str):
                raise RecordError(f"conversations[{i}]['value'] must be a string, got {_type_name(value)}")
            texts.append(value)
        return list(zip(texts[0::2], texts[1::2]))


@register_format("videochat2")
class VideoChat2Format(ManifestFormat):
    """VideoChat2-IT: `{video, QA: [{i, q, a}], start?, end?}`.

    `i` is an instruction (kept as `meta["instruction"]`), `q` the question,
    possibly with an options block ("Options:\\n(A) x\\n(B) y"), `a` the answer
    ("(B) y", "Answer: (B) y" or free text).
    """

    hint = "'QA'"
    priority = 10

    def sniff(self, record: dict) -> bool:
        """VideoChat2 records carry a `QA` list."""
        return "QA" in record

    def parse(self, record: dict, ctx: RecordContext) -> tuple[VideoItem, list[QASample]]:
        """One VideoItem and one QASample per QA entry."""
        video = make_video(record, ctx, require_str(record, "video"))
        qa = record.get("QA")
        if not isinstance(qa, list) or not qa:
            raise RecordError(f"'QA' must be a non-empty list, got {_type_name(qa)}")
        turns = []
        for k, item in enumerate(qa):
            if not isinstance(item, dict):
                raise RecordError(f"QA[{k}] must be an object, got {_type_name(item)}")
            try:
                question = require_str(item, "q")
                # Many VideoChat2-IT entries carry an empty instruction: that is no instruction.
                instruction = require_str(item, "i", required=False) if item.get("i") != "" else None
            except RecordError as exc:
                raise RecordError(f"QA[{k}]: {exc}", exc.kind) from None
            question, options, suffix = split_options(strip_media_tags(question))
            meta = {"turn": k, **({"instruction": instruction} if instruction else {})}
            if suffix:
                meta["prompt_suffix"] = suffix
            answer = item.get("a")
            turns.append((question, options, answer.strip() if isinstance(answer, str) else answer, meta))
        return video, make_samples(turns, video, ctx, record_id(record))


_JSONL_KEYS = ("id", "video", "start", "end", "question", "options", "answer")


@register_format("jsonl")
class JsonlFormat(ManifestFormat):
    """Generic: `{video, id?, start?, end?, question?, options?, answer?}`.

    `options` is a list of strings or an object letter -> text; `answer` a
    letter, an integer index or an option's text (free text if open-ended).
    A record without `question` lists a video only. Other keys go to `meta`.
    """

    hint = "'video'"
    priority = -100  # the catch-all: any record with a video

    def sniff(self, record: dict) -> bool:
        """Any record that names a `video`."""
        return "video" in record

    def parse(self, record: dict, ctx: RecordContext) -> tuple[VideoItem, list[QASample]]:
        """One VideoItem and at most one QASample."""
        video = make_video(record, ctx, require_str(record, "video"))
        rid = record_id(record)
        question = record.get("question")
        options = read_options(record["options"]) if record.get("options") not in (None, [], {}) else ()
        answer = record.get("answer")
        if question is None:
            if options or answer is not None:
                raise RecordError("'options' or 'answer' given without a 'question'")
            return video, []
        if not isinstance(question, str):
            raise RecordError(f"'question' must be a string, got {_type_name(question)}")
        meta = {k: v for k, v in record.items() if k not in _JSONL_KEYS}
        return video, make_samples([(question.strip(), options, answer, meta)], video, ctx, rid)
