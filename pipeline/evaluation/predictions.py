"""Selecting frames and answering benchmark questions: what `hfs select` and `hfs evaluate` run.

For every question and selector: the selector picks k frames on the cached N-frame grid
(``pipeline/selectors``), the step decodes those k teacher JPEGs and the teacher reads them
with the question and its options (and, in the "with subtitles" setting of Video-MME and
LongVideoBench, the subtitle lines around the selected frames' times); its answer is the
option whose letter has the largest logit (``--protocol lmms-eval``: lmms-eval's prompt text,
greedy generation and its answer parser instead, ``GeneratingAnswerer``; the record then holds
the ``response`` beside the parsed letter). One prediction record per (question, selector, setting) goes to
``predictions.jsonl``, one line at a time, so a rerun skips what is already predicted.
Every record carries the settings it was made with (k, the answering teacher, the run's
checkpoint, the seed); a rerun into the same folder with other settings is refused rather
than resumed. Under torchrun each process answers every W-th question into its own file
and the first merges them.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from hfs.cache.format import atomic_write_bytes
from hfs.manifests.records import QASample
from hfs.pipeline.evaluation.scoring import prediction_record
from hfs.pipeline.evaluation.selectors import Choice, Query, SelectorContext, select_batch

log = logging.getLogger(__name__)

__all__ = [
    "EXTRACTION_ERROR",
    "NOT_IN_CACHE",
    "OPEN_ENDED",
    "PredictionSettingsError",
    "query_of",
    "selection_record",
    "PredictionLog",
    "GeneratingAnswerer",
    "TeacherAnswerer",
    "lmms_eval_frames_as",
    "answer_questions",
]

EXTRACTION_ERROR = "extraction error"
NOT_IN_CACHE = "video not in the cache"
OPEN_ENDED = "open-ended question"
MERGED = "predictions.jsonl"
UNRECORDED = "not recorded"  # the value shown for a setting a record lacks (written before it was recorded)
RECORDED_LATER = {"protocol": "hfs"}  # settings added later: a record without one was made with this value


class PredictionSettingsError(ValueError):
    """A results folder holding predictions made with other settings than the ones asked for.

    ``path`` is the file holding them, ``differences`` maps each differing setting to
    (its value in the file, the value asked for).
    """

    def __init__(self, path: Path, differences: Mapping[str, tuple[Any, Any]]) -> None:
        self.path, self.differences = path, dict(differences)
        held = ", ".join(f"{name}={old!r}" for name, (old, _) in self.differences.items())
        asked = ", ".join(f"{name}={new!r}" for name, (_, new) in self.differences.items())
        super().__init__(f"{path} holds predictions made with {held}, not {asked} as asked")


def query_of(sample: QASample, cache) -> Query:
    """The ``Query`` of a sample whose video is in ``cache`` (a ``FeatureCache``)."""
    return Query(sample.sample_id, sample.question, list(sample.options),
                 cache.features(sample.video_id), cache.timestamps(sample.video_id))


def cache_skip_reason(sample: QASample, cache, need_options: bool = True) -> str | None:
    """Why ``sample`` cannot be selected for (or, ``need_options``, answered) from ``cache``, or None."""
    if sample.video_id in cache:
        return None if sample.options or not need_options else OPEN_ENDED
    try:
        cache.row(sample.video_id)
    except KeyError:
        return NOT_IN_CACHE
    return EXTRACTION_ERROR


def selection_record(sample: QASample, selector: str, k: int, choice: Choice, timestamps: np.ndarray, *,
                     benchmark: str | None = None, view: str | None = None, question_id: Any = None,
                     video_path: str | None = None, duration_s: float | None = None) -> dict:
    """One line of ``hfs select``'s JSONL (layout in the README's "export format"): what any
    harness needs to find the question and its video and to take the same frames, beside the
    choice. ``question_id`` is the id as the benchmark's files write it (default: the sample
    id), ``video_path`` the video relative to the benchmark folder or as the manifest wrote it,
    ``duration_s`` the clip's length (None when unknown); ``n_frames`` (N) is the length of
    ``timestamps``."""
    return {
        "sample_id": sample.sample_id, "video_id": sample.video_id, "benchmark": benchmark, "view": view,
        "question_id": sample.sample_id if question_id is None else question_id, "video_path": video_path,
        "n_frames": len(timestamps),
        "duration_s": round(float(duration_s), 4) if duration_s is not None and np.isfinite(duration_s) else None,
        "selector": selector, "k": k,
        "indices": list(choice.indices), "timestamps_s": [round(float(timestamps[i]), 4) for i in choice.indices],
        "scores": None if choice.scores is None else [round(float(x), 6) for x in choice.scores],
    }


class PredictionLog:
    """``predictions.jsonl`` of a results folder, written one line at a time by every process.

    Process r appends to ``predictions.rank-r.jsonl``; ``merge`` (the first process, after
    every process is done) folds those into ``predictions.jsonl`` atomically. A record's
    key is (selector, question id, subtitles setting); ``done`` holds the keys already in
    any of the files, so a rerun after a crash predicts only the rest. ``settings`` (e.g.
    ``{"k": 16, "teacher": ..., "run": ..., "seed": 0}``) are written into every record, and
    a folder whose records were made with other settings raises ``PredictionSettingsError``.
    """

    def __init__(self, folder: str | Path, rank: int = 0, settings: Mapping[str, Any] | None = None) -> None:
        self.folder = Path(folder)
        self.settings = dict(settings or {})
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / f"predictions.rank-{rank}.jsonl"
        self._cut_torn_line()
        self.check_settings(self.folder, self.settings)
        self.done = {self.key(r) for r in self.read_all()}

    @classmethod
    def check_settings(cls, folder: str | Path, settings: Mapping[str, Any]) -> None:
        """Raise ``PredictionSettingsError`` when a prediction file in ``folder`` holds a record made
        with other ``settings`` (a setting the record lacks counts as different)."""
        for path in cls._files_in(Path(folder)):
            for record in cls._records(path, warn=False):
                differences = {name: (record.get(name, RECORDED_LATER.get(name, UNRECORDED)), value)
                               for name, value in settings.items()
                               if record.get(name, RECORDED_LATER.get(name, UNRECORDED)) != value}
                if differences:
                    raise PredictionSettingsError(path, differences)

    def _cut_torn_line(self) -> None:
        """Cut this process's file after its last newline: a run killed while writing leaves a line
        without one, and the next record appended would be glued to it and lost with it."""
        if not self.path.is_file():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            log.warning("%s: dropped a torn line (the run was killed while writing it)", self.path)
            with open(self.path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)

    @staticmethod
    def key(record: dict) -> tuple[str, str, bool]:
        return record["selector"], record["sample_id"], bool(record.get("subtitles", False))

    @staticmethod
    def _files_in(folder: Path) -> list[Path]:
        merged = folder / MERGED
        return ([merged] if merged.is_file() else []) + sorted(folder.glob("predictions.rank-*.jsonl"))

    @staticmethod
    def _records(path: Path, warn: bool = True) -> Iterator[dict]:
        """The records of one file (a torn line is dropped, with a warning when ``warn``)."""
        for line in path.read_text().splitlines():
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                if warn:
                    log.warning("%s: dropped a torn line (the run was killed while writing it)", path)

    def read_all(self) -> list[dict]:
        """Every record in the merged file and the processes' files (a torn last line is dropped)."""
        records, seen = [], set()
        for path in self._files_in(self.folder):
            for record in self._records(path):
                if self.key(record) not in seen:
                    seen.add(self.key(record))
                    records.append(record)
        return records

    def write(self, record: dict) -> None:
        """Append ``record``, with this log's settings, and sync it to disk."""
        record = {**record, **self.settings}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.done.add(self.key(record))

    def merge(self) -> list[dict]:
        """Fold every process's file into ``predictions.jsonl`` (atomically) and return all records."""
        records = self.read_all()
        atomic_write_bytes(self.folder / MERGED, "".join(json.dumps(r) + "\n" for r in records).encode())
        for path in self.folder.glob("predictions.rank-*.jsonl"):
            path.unlink()
        return records


class TeacherAnswerer:
    """The teacher answering multiple-choice questions from selected cached frames."""

    def __init__(self, teacher, cache) -> None:
        self.teacher = teacher.eval()
        self.cache = cache

    def __call__(self, samples: Sequence[QASample], indices: Sequence[Sequence[int]],
                 timestamps: Sequence[Sequence[float]], subtitles: Sequence[list[str] | None] | None = None):
        """Option logits ``[B, Cmax]`` (float32, -inf past a sample's options) and the chosen option
        index of each sample (argmax over its option letters)."""
        import torch

        from hfs.pipeline.model.frames import decode_jpegs

        device = self.teacher.device
        frames = [decode_jpegs(self.cache.frames(s.video_id, idx), device=device) for s, idx in zip(samples, indices)]
        gates = torch.ones(len(samples), len(indices[0]), device=device)
        with torch.no_grad():
            out = self.teacher(frames, gates, [s.question for s in samples], [list(s.options) for s in samples],
                               timestamps=[list(t) for t in timestamps], subtitles=subtitles)
        logits = out.option_logits.float().cpu()
        return logits, logits.argmax(-1).tolist()


def lmms_eval_frames_as(bench: str) -> str | dict[str, str]:
    """How lmms-eval's Qwen2.5-VL wrapper is shown a question's frames (`Teacher.generate`'s
    ``frames_as``), the ``frames_as`` setting of ``--protocol lmms-eval``: "video", the frames as ONE
    video, as every task's ``doc_to_visual`` gives a video file; LongVideoBench per subtitle setting,
    since ``longvideobench_val_i``'s gives 16 images instead ("images_first": separate images, all
    before the text, as ``_auto_doc_to_messages`` lays them out)."""
    if bench == "longvideobench":
        return {"without_subtitles": "video", "with_subtitles": "images_first"}
    return "video"


class GeneratingAnswerer:
    """The teacher answering as lmms-eval asks it (``hfs evaluate --protocol lmms-eval``).

    Per question: lmms-eval's prompt text of the benchmark (``lmms_prompts``; Video-MME "with
    subtitles" takes the lines given, LongVideoBench's reads its own interleaving,
    ``subtitles.sample_lmms_eval_lvb_prefix``), the selected frames as lmms-eval's model wrapper
    is shown them (`lmms_eval_frames_as`: one video, or k images before the text; a teacher that
    cannot is refused here), greedy generation of at most ``max_new_tokens`` (``Teacher.generate``),
    and lmms-eval's answer parser (``lmms_parsers``); ``rng`` draws NExT-QA's and LongVideoBench's
    random fallback for an unparseable response.
    """

    def __init__(self, teacher, cache, bench: str, max_new_tokens: int, rng=None) -> None:
        from hfs.pipeline.evaluation.lmms_parsers import LMMS_EVAL_PARSERS

        if bench not in LMMS_EVAL_PARSERS:
            raise ValueError(f"no lmms-eval protocol for benchmark {bench!r}; known: {', '.join(LMMS_EVAL_PARSERS)}")
        if teacher.video_input_refusal:
            raise ValueError(teacher.video_input_refusal)
        self.teacher = teacher.eval()
        self.cache = cache
        self.bench = bench
        self.max_new_tokens = max_new_tokens
        self.rng = rng
        self.frames_as = lmms_eval_frames_as(bench)

    def frames_as_in(self, with_subtitles: bool) -> str:
        """`Teacher.generate`'s ``frames_as`` in one subtitle setting."""
        if isinstance(self.frames_as, str):
            return self.frames_as
        return self.frames_as["with_subtitles" if with_subtitles else "without_subtitles"]

    def prompt(self, sample: QASample, subtitles: list[str] | None = None) -> str:
        """lmms-eval's prompt text of ``sample``; with ``subtitles`` (the "with subtitles" setting):
        Video-MME's subtitle prompt of those lines, which says "No subtitles available" for a video
        without a subtitle file, or LongVideoBench's ``longvideobench_val_i`` text, its frames and
        subtitles interleaved at its own frame times whatever the lines given (SubtitleError where
        lmms-eval could not read the question's file)."""
        from hfs.manifests.benchmarks.subtitles import sample_lmms_eval_lvb_prefix
        from hfs.pipeline.evaluation.lmms_prompts import (
            lmms_eval_doc,
            lmms_eval_prompt,
            longvideobench_prompt,
            videomme_prompt,
        )

        doc = lmms_eval_doc(self.bench, sample)
        if subtitles is None:
            return lmms_eval_prompt(self.bench, doc)
        if self.bench == "longvideobench":
            return longvideobench_prompt(doc, interleaved_prefix=sample_lmms_eval_lvb_prefix(sample))
        if self.bench != "videomme":
            raise ValueError(f"the lmms-eval protocol has no subtitle prompt for {self.bench}")
        has_file = sample.meta.get("subtitle_path") is not None
        return videomme_prompt(doc, subtitles if has_file else None, with_subtitles=True)

    def __call__(self, samples: Sequence[QASample], indices: Sequence[Sequence[int]],
                 timestamps: Sequence[Sequence[float]], subtitles: Sequence[list[str] | None] | None = None):
        """(None: no option logits, the parsed letter of each sample or None when lmms-eval's parser
        found none, per sample ``{"response", "parsed", "random_fallback"}``). The samples of a call
        share one subtitle setting (``subtitles`` None: without)."""
        from hfs.pipeline.evaluation.lmms_parsers import parse_answer
        from hfs.pipeline.model.frames import decode_jpegs

        device = self.teacher.device
        frames = [decode_jpegs(self.cache.frames(s.video_id, idx), device=device) for s, idx in zip(samples, indices)]
        texts = [self.prompt(s, subtitles[b] if subtitles is not None else None) for b, s in enumerate(samples)]
        responses = self.teacher.generate(frames, texts, self.max_new_tokens,
                                          frames_as=self.frames_as_in(subtitles is not None))
        parsed = [parse_answer(self.bench, r, s.options, rng=self.rng) for r, s in zip(responses, samples)]
        extras = [{"response": r, "parsed": p.letter, "random_fallback": p.random_fallback}
                  for r, p in zip(responses, parsed)]
        return None, [p.letter or None for p in parsed], extras


@dataclass
class Work:
    """One question to answer with one selector, in one subtitle setting."""

    sample: QASample
    selector: str
    subtitles: bool = False


def answer_questions(
    work: Sequence[Work],
    cache,
    ctx: SelectorContext,
    answerer: TeacherAnswerer,
    log_: PredictionLog,
    subtitle_lines=None,
    batch_size: int = 4,
    on_done=None,
) -> None:
    """Select, answer and log every item of ``work`` (items already in ``log_.done`` are skipped).

    ``subtitle_lines(sample, timestamps_s) -> list[str]`` gives the subtitle lines of the
    "with subtitles" setting. Items go to the teacher in batches of ``batch_size`` with the
    same selector and setting; the selector scores a batch's questions in one pass too
    (``select_batch``), with the choices it makes one question at a time up to float rounding. ``on_done(n)`` is
    called after each batch (progress).
    """
    todo = [w for w in work if (w.selector, w.sample.sample_id, w.subtitles) not in log_.done]
    choices: dict[tuple[str, str], tuple[Choice, np.ndarray]] = {}
    for batch in _batches(todo, batch_size):
        new = {}  # the same frames in both subtitle settings: each (selector, question) is selected once
        for w in batch:
            key = (w.selector, w.sample.sample_id)
            if key not in choices and key not in new:
                new[key] = query_of(w.sample, cache)
        if new:  # one selector per batch: its questions in one student pass (``select_batch``)
            queries = list(new.values())
            for key, query, choice in zip(new, queries, select_batch(batch[0].selector, queries, ctx)):
                choices[key] = (choice, query.timestamps)
        picked = [choices[(w.selector, w.sample.sample_id)] for w in batch]
        times = [[float(t[i]) for i in c.indices] for c, t in picked]
        subs = [subtitle_lines(w.sample, tt) if w.subtitles else None for w, tt in zip(batch, times)]
        answered = answerer([w.sample for w in batch], [c.indices for c, _ in picked], times,
                            subs if any(w.subtitles for w in batch) else None)
        logits, predicted = answered[0], answered[1]
        rows = logits.tolist() if logits is not None else [None] * len(batch)
        extras = answered[2] if len(answered) > 2 else [{}] * len(batch)
        for w, (choice, t), row, pred, sub, extra in zip(batch, picked, rows, predicted, subs, extras):
            record = prediction_record(w.sample, w.selector, pred, subtitles=w.subtitles)
            record.update(
                video_id=w.sample.video_id, indices=list(choice.indices),
                timestamps_s=[round(float(t[i]), 4) for i in choice.indices],
                option_logits=None if row is None else [round(x, 5) for x in row[: len(w.sample.options)]],
                frame_scores=None if choice.scores is None else [round(float(x), 6) for x in choice.scores],
                **extra,
            )
            if sub is not None:
                record["subtitle_lines"] = len(sub)
            log_.write(record)
        if on_done is not None:
            on_done(len(batch))


def _batches(items: Sequence[Work], size: int) -> Iterator[list[Work]]:
    """Consecutive runs of at most ``size`` items that share selector and subtitle setting."""
    batch: list[Work] = []
    for w in items:
        if batch and (len(batch) == size or (w.selector, w.subtitles) != (batch[0].selector, batch[0].subtitles)):
            yield batch
            batch = []
        batch.append(w)
    if batch:
        yield batch
