"""`hfs evaluate`: a benchmark in its published layout → cache → selectors → teacher → scores.

Reads the benchmark's files (``hfs.manifests.benchmarks``), extracts the videos the cache
does not hold yet (Stage 1, the same Dask fan-out), then for every selector and question
selects k frames and asks the teacher for the option letter (``pipeline/evaluation/predictions.py``;
``--protocol lmms-eval``: lmms-eval's prompt, the frames as its Qwen2.5-VL wrapper is shown them,
greedy generation, answer parser and subtitle rules),
writing ``predictions.jsonl`` as it goes (a rerun skips what is already predicted; one with
other settings — k, teacher, run, seed — is refused, exit 2) and finally ``scores.json``
with the benchmark's own breakdown, printed as one table with the selectors side by side.
Under ``torchrun --nproc-per-node N`` each process answers every N-th question on its own
GPU and the first one merges and scores.

Questions that cannot be scored (a bad row, a missing video, a video that failed extraction)
are counted as skipped, by reason, and the headline says "over n of N questions"; with
``strict`` (``--strict``) any of them stops the evaluation instead, as lmms-eval does.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Optional, Sequence

from hfs.stages.console import ProgressBar, console, rank_error

log = logging.getLogger(__name__)

SUBTITLE_BENCHMARKS = ("videomme", "longvideobench")
STRICT_SHOWN = 5  # problems named one by one in --strict's refusal; the rest are counted


class EvaluateError(RuntimeError):
    """An evaluation that cannot start as asked; the message says why and what to do."""


def run(bench: str, data: Path, out: Path, cache: Optional[Path] = None, selectors: Sequence[str] = ("uniform",),
        run_dir: Optional[Path] = None, teacher: Optional[str] = None, preset: Optional[str] = None, k: int = 16,
        subtitles: bool = False, limit: Optional[int] = None, batch_size: int = 4, workers: Optional[int] = None,
        scheduler: Optional[str] = None, device: str = "auto", seed: int = 0, progress: bool = True,
        truth: Optional[Path] = None, strict: bool = False, protocol: str = "hfs",
        max_new_tokens: Optional[int] = None) -> int:
    """Evaluate; returns the exit status (0 done, 2 usage or input error). ``truth``: ground truth
    of a synthetic task (spans of the answer-bearing frames), shown in the report; ``strict``:
    a question that cannot be scored is an error (exit 2), not a skip; ``protocol``: ``hfs``
    (option-letter logits) or ``lmms-eval`` (its prompt text, greedy generation of at most
    ``max_new_tokens`` tokens, default the task's, and its answer parser; the record keeps the
    ``response``)."""
    from hfs.cache import CacheError
    from hfs.manifests.benchmarks import BenchmarkError
    from hfs.pipeline.evaluation.predictions import PredictionLog, PredictionSettingsError
    from hfs.pipeline.evaluation.selectors import SelectorError
    from hfs.pipeline.extract.encoder import EncoderError
    from hfs.pipeline.model.loading import ModelLoadError
    from hfs.pipeline.train.distributed import ProcessError, Processes

    procs = None
    try:
        _check_benchmark(bench, data, subtitles)
        max_new_tokens = _check_protocol(protocol, bench, subtitles, max_new_tokens)
        benchmark_data = read_benchmark(bench, Path(data), strict)
        if protocol == "lmms-eval" and subtitles and bench == "longvideobench":
            _check_lmms_eval_lvb_subtitles(benchmark_data, limit)
        _check_selectors(selectors, run_dir, truth)
        answering = _answering_model(run_dir, teacher, preset)
        _check_video_input(protocol, answering)
        settings = prediction_settings(k, answering, seed, protocol, max_new_tokens, bench)
        PredictionLog.check_settings(out, settings)  # before any video is extracted or model loaded
        procs = Processes(device)
        return _evaluate(procs, bench, benchmark_data, Path(out), Path(cache) if cache else Path(out) / "cache",
                         list(selectors), run_dir, answering, settings, preset, subtitles, limit, batch_size,
                         workers, scheduler, progress, truth, strict)
    except PredictionSettingsError as err:
        rank_error(f"{err}; choose another --out, or delete that file to predict again with these settings",
                   procs.rank if procs is not None else None)
        return 2
    except (EvaluateError, ProcessError, BenchmarkError, CacheError, EncoderError, ModelLoadError, SelectorError,
            FileNotFoundError) as err:
        rank_error(str(err), procs.rank if procs is not None else None)
        return 2
    finally:
        if procs is not None:
            procs.close()


def _check_protocol(protocol: str, bench: str, subtitles: bool, max_new_tokens: Optional[int]) -> Optional[int]:
    """The protocol, checked; returns the generation length of ``lmms-eval`` (``max_new_tokens``,
    else the task YAML's, else the lmms-eval model wrapper's default), None for ``hfs``."""
    from hfs.pipeline.evaluation.lmms_parsers import LMMS_EVAL_MAX_NEW_TOKENS, LMMS_EVAL_WRAPPER_MAX_NEW_TOKENS
    from hfs.pipeline.evaluation.lmms_prompts import PROTOCOLS

    if protocol not in PROTOCOLS:
        raise EvaluateError(f"--protocol {protocol}: unknown; known: {', '.join(PROTOCOLS)}")
    if protocol == "hfs":
        if max_new_tokens is not None:
            raise EvaluateError("--max-new-tokens: only --protocol lmms-eval generates; hfs reads option logits")
        return None
    if max_new_tokens is not None:
        return max_new_tokens
    return LMMS_EVAL_MAX_NEW_TOKENS.get(bench) or LMMS_EVAL_WRAPPER_MAX_NEW_TOKENS


def _check_benchmark(bench: str, data_dir: Path, subtitles: bool) -> None:
    """The benchmark's name, folder and settings, checked before any model is looked for."""
    from hfs.manifests.benchmarks import get_benchmark

    try:
        get_benchmark(bench)
    except KeyError as err:
        raise EvaluateError(f"--bench: {err.args[0]}") from None
    if not Path(data_dir).is_dir():
        raise EvaluateError(f"--data {data_dir}: no such folder (the benchmark's files as published)")
    if subtitles and bench not in SUBTITLE_BENCHMARKS:
        raise EvaluateError(f"--subtitles: {bench} has no subtitles (only {', '.join(SUBTITLE_BENCHMARKS)} do)")


def read_benchmark(bench: str, data_dir: Path, strict: bool = False):
    """The benchmark's ``BenchmarkData``; with ``strict``, EvaluateError naming each bad row and
    each question whose video is missing (lmms-eval stops at them instead of skipping)."""
    from hfs.manifests.benchmarks import get_benchmark

    data = get_benchmark(bench).read(data_dir)
    if strict:
        problems = [f"bad row {b}" for b in data.bad]
        problems += [f"question {m.sample.sample_id!r}: {m.reason} {m.path}" for m in data.missing]
        _refuse_under_strict(problems, "fix the benchmark's files (or --data)")
    return data


def _refuse_under_strict(problems: Sequence[str], fix: str) -> None:
    """EvaluateError listing ``problems`` (the first ``STRICT_SHOWN``, then a count), if any."""
    if not problems:
        return
    raise EvaluateError(f"--strict: {len(problems)} question(s) cannot be scored: {_listed(problems)}. To go on, "
                        f"{fix}, or run without --strict to score the rest and count these as skipped")


def _listed(problems: Sequence[str]) -> str:
    """``problems`` joined by "; ", the first ``STRICT_SHOWN`` named and the rest counted."""
    more = f"; and {len(problems) - STRICT_SHOWN} more" if len(problems) > STRICT_SHOWN else ""
    return "; ".join(problems[:STRICT_SHOWN]) + more


def _check_selectors(selectors: Sequence[str], run_dir, truth=None) -> None:
    from hfs.pipeline.evaluation.selectors import selector_needs_run

    if not selectors:
        raise EvaluateError("no --selector given")
    needing = [s for s in selectors if selector_needs_run(s)]
    if needing and run_dir is None:
        raise EvaluateError(f"selector(s) {', '.join(needing)} need a trained run: pass --run runs/NAME")
    if "oracle" in selectors and truth is None:
        raise EvaluateError("the oracle selector needs a synthetic task's ground truth (ground_truth.jsonl)")


def _answering_model(run_dir, teacher: Optional[str], preset: Optional[str]) -> dict:
    """Which teacher answers (a run's LoRA-tuned one, or a base model), resolved before any process
    group starts (tiny presets are built now, see ``stages.options.materialise_models``)."""
    from hfs.pipeline.model.hfs_model import read_saved_config
    from hfs.pipeline.train.checkpoint import run_model_dir
    from hfs.stages.options import materialise_models, teacher_choice, teacher_model_name

    model_dir = run_model_dir(run_dir) if run_dir is not None else None
    if model_dir is not None:
        cfg = read_saved_config(model_dir)
        materialise_models(student=cfg.student.name_or_path, teacher=teacher_model_name(cfg.teacher))
    if teacher is not None or model_dir is None:
        kind, name = teacher_choice(teacher or "qwen2.5-vl", preset)
        from hfs.pipeline.model.teachers.base import teacher_class

        name = name or teacher_class(kind).default_model
        materialise_models(teacher=name)
        return {"source": "base", "kind": kind, "name": name, "model_dir": model_dir}
    return {"source": "run", "kind": cfg.teacher.kind, "model_dir": model_dir}


def _check_video_input(protocol: str, answering: dict) -> None:
    """``--protocol lmms-eval`` shows the frames as lmms-eval's model wrapper is shown them (one video,
    or separate images before the text): a teacher that cannot is refused here, before any video is
    extracted or model loaded."""
    from hfs.pipeline.model.teachers.base import list_teachers, teacher_class

    kind = answering.get("kind")
    if protocol == "lmms-eval" and kind in list_teachers() and teacher_class(kind).video_input_refusal:
        raise EvaluateError(teacher_class(kind).video_input_refusal)


def teacher_label(answering: dict) -> str:
    """The answering teacher as ``scores.json`` and the prediction records name it: the base
    model's id or folder, or the run's saved model (absolute path) with "(LoRA-tuned)"."""
    return answering.get("name") or f"{Path(answering['model_dir']).resolve()} (LoRA-tuned)"


def prediction_settings(k: int, answering: dict, seed: int, protocol: str = "hfs",
                        max_new_tokens: Optional[int] = None, bench: Optional[str] = None) -> dict:
    """What a prediction depends on besides its question, selector and subtitle setting, written
    into every prediction record: k, the answering teacher, the run's saved model (the resolved
    checkpoint, so a run trained further is another run), the random selector's seed (and of
    lmms-eval's random fallback), the protocol and, for ``lmms-eval``, ``max_new_tokens`` and
    ``frames_as``, how lmms-eval's Qwen2.5-VL wrapper is shown ``bench``'s frames
    (`predictions.lmms_eval_frames_as`: "video", or LongVideoBench's per subtitle setting)."""
    from hfs.pipeline.evaluation.predictions import lmms_eval_frames_as

    model_dir = answering["model_dir"]
    settings = {"k": k, "teacher": teacher_label(answering),
                "run": str(Path(model_dir).resolve()) if model_dir is not None else None, "seed": seed,
                "protocol": protocol}
    if protocol == "lmms-eval":
        settings["max_new_tokens"] = max_new_tokens
        # earlier lmms-eval predictions showed the frames as images, and LongVideoBench's all as one video
        settings["frames_as"] = lmms_eval_frames_as(bench)
    return settings


def _check_lmms_eval_lvb_subtitles(data, limit: Optional[int]) -> None:
    """``--protocol lmms-eval --subtitles`` on LongVideoBench: EvaluateError naming each question
    whose subtitle file lmms-eval's ``longvideobench_val_i`` could not read (it reads one for every
    question), before any video is extracted or model loaded."""
    from hfs.manifests.benchmarks.subtitles import SubtitleError, sample_lmms_eval_lvb_items

    problems = []
    for sample in data.samples[:limit] if limit else data.samples:
        try:
            sample_lmms_eval_lvb_items(sample)
        except SubtitleError as err:
            problems.append(str(err))
    if problems:
        raise EvaluateError(f"--protocol lmms-eval --subtitles: lmms-eval's longvideobench_val_i reads every "
                            f"question's subtitle file, and {len(problems)} cannot be read: {_listed(problems)}. Put "
                            "them under the benchmark's subtitles/ (tar -xf subtitles.tar), or run without "
                            "--subtitles, or with --protocol hfs (a question without a file gets no lines)")


def lmms_eval_subtitle_lines(data, bench: str):
    """``subtitle_lines(sample, timestamps_s)`` of ``--protocol lmms-eval``: lmms-eval's rule, whatever
    frames the selector chose. Video-MME: the lines at its 32 frames spread evenly over the video
    (``subtitles.sample_lmms_eval_subtitle_lines``); [] for a video without a subtitle file (the
    prompt then says "No subtitles available"). A video's frame rate and frame count come from
    `hfs.pipeline.decode.probe` (lmms-eval asks OpenCV), once per video. LongVideoBench: the cue
    texts ``longvideobench_val_i`` interleaves with its 16 frames (``subtitles.sample_lmms_eval_lvb_items``;
    `GeneratingAnswerer.prompt` writes the interleaving itself)."""
    from functools import lru_cache

    from hfs.manifests.benchmarks.subtitles import sample_lmms_eval_lvb_items, sample_lmms_eval_subtitle_lines
    from hfs.pipeline.decode import probe

    if bench == "longvideobench":
        return lambda sample, timestamps_s: [x for x in sample_lmms_eval_lvb_items(sample) if isinstance(x, str)]
    paths = {v.video_id: v.path for v in data.videos}

    @lru_cache(maxsize=None)
    def rate_and_count(video_id: str) -> tuple[float, int]:
        info = probe(paths[video_id])
        return info.fps, info.n_frames if info.n_frames is not None else int(info.duration * info.fps)

    def lines(sample, timestamps_s) -> list[str]:
        if not sample.meta.get("subtitle_path"):
            return []
        return sample_lmms_eval_subtitle_lines(sample, *rate_and_count(sample.video_id))

    return lines


def _evaluate(procs, bench: str, data, out: Path, cache_dir: Path, selectors: list[str], run_dir,
              answering: dict, settings: dict, preset, subtitles: bool, limit, batch_size: int, workers, scheduler,
              progress: bool, truth=None, strict: bool = False) -> int:
    from hfs.cache import FeatureCache
    from hfs.cache.format import atomic_write_json
    from hfs.manifests.benchmarks import get_benchmark
    from hfs.pipeline.evaluation.predictions import (
        GeneratingAnswerer,
        PredictionLog,
        TeacherAnswerer,
        Work,
        answer_questions,
        cache_skip_reason,
    )
    from hfs.pipeline.evaluation.scoring import score_benchmark
    from hfs.pipeline.evaluation.selectors import SelectorContext
    from hfs.pipeline.model.teachers import load_teacher
    from hfs.stages.options import extract_missing_videos

    benchmark = get_benchmark(bench)
    samples = data.samples[:limit] if limit else list(data.samples)
    if procs.main:
        out.mkdir(parents=True, exist_ok=True)
        console.print(f"{benchmark.title} ({data.view} view): {len(samples)} questions"
                      + (f" of {len(data.samples)}" if limit else "")
                      + "".join(f", {n} skipped: {reason}" for reason, n in data.skip_counts().items()))
        extract_missing_videos(data, samples, cache_dir, preset, workers=workers, scheduler=scheduler,
                               progress=progress)
    procs.barrier()

    cache = FeatureCache(cache_dir)
    answerable, unanswerable = [], []
    for s in samples:
        reason = cache_skip_reason(s, cache)
        if reason is None:
            answerable.append(s)
        else:
            unanswerable.append({**s.meta, "sample_id": s.sample_id, "reason": reason})
    if strict:
        _refuse_under_strict([f"question {s['sample_id']!r}: {s['reason']}" for s in unanswerable],
                             f"fix those videos or questions (the index of {cache_dir} holds each video's error)")
    skips = data.skips() + unanswerable
    k = settings["k"]
    ctx = SelectorContext(k=k, seed=settings["seed"], run=run_dir, cache_config=cache.config,
                          device=str(procs.device), cache=cache, truth=truth)
    if answering["source"] == "run":
        answering_teacher = ctx.model.teacher  # the LoRA-tuned teacher; ctx.model also serves hfs / hfs-set
    else:
        answering_teacher = load_teacher(answering["kind"], answering["name"], device=procs.device, lora_r=0)
    subtitle_settings = [False, True] if subtitles else [False]
    mine = answerable[procs.rank::procs.world]
    predictions = PredictionLog(out, procs.rank, settings)
    # setting before question, so a batch (one selector, one setting) is not cut at every question
    work = [w for w in (Work(s, sel, sub) for sel in selectors for sub in subtitle_settings for s in mine)
            if (w.selector, w.sample.sample_id, w.subtitles) not in predictions.done]
    if settings.get("protocol") == "lmms-eval":
        if answering_teacher.video_input_refusal:
            raise EvaluateError(answering_teacher.video_input_refusal)
        # lmms-eval draws its random fallback from Python's random seeded once; here one stream per process
        answerer = GeneratingAnswerer(answering_teacher, cache, bench, settings["max_new_tokens"],
                                      rng=random.Random(settings["seed"] + procs.rank))
    else:
        answerer = TeacherAnswerer(answering_teacher, cache)
    subtitle_lines = data.subtitle_lines
    if settings.get("protocol") == "lmms-eval" and subtitles:
        subtitle_lines = lmms_eval_subtitle_lines(data, bench)
    with ProgressBar("evaluate", len(work), enabled=progress and procs.main) as bar:
        answer_questions(work, cache, ctx, answerer, predictions,
                         subtitle_lines=subtitle_lines, batch_size=batch_size, on_done=bar.advance)
    procs.barrier()
    if not procs.main:
        return 0
    records = predictions.merge()
    scores = score_benchmark(bench, [r for r in records if r["selector"] in selectors], skips, expected=samples,
                             total=data.question_count())
    scores.update(k=k, teacher=settings["teacher"], run=str(run_dir) if run_dir else None, seed=settings["seed"],
                  questions=len(samples), protocol=settings["protocol"])
    if "max_new_tokens" in settings:
        scores["max_new_tokens"] = settings["max_new_tokens"]
    atomic_write_json(out / "scores.json", scores)
    print_scores(scores)
    console.print(f"predictions: {out / 'predictions.jsonl'}   scores: {out / 'scores.json'}")
    report = write_report(out, cache, data, truth=truth, run_dir=run_dir)
    if report is not None:
        console.print(f"report: {report}")
    return 0


def write_report(out: Path, cache, data, truth=None, run_dir=None) -> Path | None:
    """``out/report.html`` (``hfs report``'s page) of this evaluation; a report that cannot be
    made is a warning, never a failed evaluation."""
    from hfs.pipeline.evaluation.report.inputs import ReportError
    from hfs.pipeline.evaluation.report.page import write_evaluation_report

    try:
        return write_evaluation_report(out, cache, data, truth=truth, run=run_dir).path
    except ReportError as err:
        log.warning("no report: %s", err)
        return None


def print_scores(scores: dict) -> None:
    """The selectors side by side, one row per metric of the benchmark's breakdown, then each
    selector's headline "over n of N questions" (``scoring.headline_lines``) and the benchmark's
    notes (``scoring.note_lines``, e.g. an M-Avg over fewer than MLVU's 7 tasks)."""
    from rich.table import Table

    from hfs.pipeline.evaluation.scoring import comparison_rows, headline_lines, note_lines

    header, rows = comparison_rows(scores)
    table = Table(title=f"{header[0]}: accuracy % (questions scored)", title_justify="left")
    table.add_column("")
    for name in header[1:]:
        table.add_column(name, justify="right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    for line in headline_lines(scores):
        console.print(line)
    for line in note_lines(scores):
        console.print(f"note: {line}")
