"""`hfs demo`: the whole pipeline on a synthetic task only the right frames answer, on the CPU.

1. **task**: videos of moving grey blobs in which coloured shapes flash (``pipeline/demo/task.py``).
   ``--task query`` (the default, `DEFAULT_TASK`): five pairs of shapes per video, the question
   names a colour of one pair and asks the other ("Which colour was shown together with the red
   shape?"), so the right frames depend on the question; k = 2 of 128 (`K`). ``--task single``:
   one shape per video, the question asks its colour or shape; k = 16, the paper's. Options
   shuffled. A training manifest (LLaVA-Video-178K layout), a held-out test set (NExT-QA layout)
   and the ground-truth spans.
2. **extract**: every split into one cache (Stage 1, Dask with 2 workers, the tiny CLIP).
3. **teacher**: the tiny teacher is fitted to read the frames, a stand-in for a pretrained video
   LLM (``pipeline/demo/teacher.py``, `TEACHER_FIT`): on new videos of the task's generator
   (query) or on the training questions (single); HFS training then uses it as its frozen teacher.
4. **train**: ``hfs train`` with the tiny preset: N = 128, the task's k.
5. **evaluate**: ``hfs evaluate`` on the test set with uniform, random, clip, hfs, hfs-set and
   oracle (the answer-bearing frames from the ground truth: the ceiling).

Then one table per selector, with the training seed: event recall@k (questions whose selected
frames include an answer-bearing one), mean answer-bearing frames selected, answer accuracy; and
the HTML report. A rerun resumes: finished stages are skipped.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from hfs.stages.console import ProgressBar, console, error

log = logging.getLogger(__name__)

SELECTORS = ("uniform", "random", "clip", "hfs", "hfs-set", "oracle")
TASKS = ("single", "query")
DEFAULT_TASK = "query"
"""The demo's task unless ``--task`` says otherwise: the one whose teacher reads held-out videos
(oracle accuracy 1.00), so accuracy follows the selection (on "single" it stays near chance)."""
TEACHER_STEPS = {"single": 1000, "query": 1200}
"""Steps of `fit_teacher` before HFS training, per task."""
TEACHER_FIT = {
    "single": dict(training_share=1.0, k_schedule=((4, 1.0),), batch_size=8, lr=2e-3, warmup=0, grad_clip=None,
                   no_evidence_share=0.0, answer_scoring="option_text"),
    "query": dict(training_share=0.0, k_schedule=((2, 1.0),), batch_size=16, lr=1e-3, warmup=100, grad_clip=1.0,
                  no_evidence_share=0.25, answer_scoring="option_text"),
}
"""How the demo fits its teacher (`fit_teacher`), per task, options shuffled (`task_config`) and
answered by their text. "single": on the training questions alone, 4 frames each with the
answer-bearing ones among them (measured over training seeds, benchmarks/RESULTS.md 2026-12-07,
"Which teacher is a good critic?": fits that also read new videos with k growing to 16, or learn to
doubt without evidence, made worse critics, though the first reads held-out videos better).
"query": on a stream of new videos only (never a training or test video), k = 2 as the student
selects, a quarter of them shown no answer-bearing frame and fitted to the uniform answer: it reads
the named pair of held-out videos, and shown another pair it does not answer that pair's colour
with confidence (which taught every student measured to avoid all events: benchmarks/RESULTS.md,
2026-12-08). 1,200 steps, not 600: after 600 a distractor pair still cost more than quiet frames (CE
3.8 against 2.0) and a student could learn to avoid every event; after 1,200 they cost alike (2.5)
and the named pair is the cheapest of the five pairs on every training question (RESULTS.md,
"2026-12-08 (2)")."""
K = {"single": 16, "query": 2}
"""Frames selected per question, per task. "single": the paper's 16 of 128. "query": 2, fewer than
the video's five pairs of shapes, so a selector that finds every event but reads no question
cannot hold them all (at k = 16 it could, and the question would not matter: RESULTS.md)."""
GOAL = 2.0  # hfs's event recall over uniform's that the demo is meant to show
SCALE = ("train.lr=1e-3", "train.batch_size=4", "train.micro_batch_size=4", "train.num_workers=1")
"""Minutes on a CPU instead of days on GPUs: a larger learning rate and a smaller batch (with
``selection.k`` = the task's `K`)."""
TRAIN_SETTINGS = (
    *SCALE,
    # the fitted teacher is the critic the student learns from: keep it fixed (README, "the demo")
    "teacher.lora_r=0",
    # F(m)'s relevance term saturates s_i under Adam and stalls the selector (README, bench_ablations)
    "losses.use_set=false",
)
"""What the demo changes from the paper's defaults (and why: README), besides k."""


def train_settings(task_kind: str) -> tuple[str, ...]:
    """The demo's training overrides on ``task_kind``: its k, then `TRAIN_SETTINGS`."""
    return (f"selection.k={K[task_kind]}", *TRAIN_SETTINGS)


@dataclass
class Prepared:
    """The demo's task, cache and fitted teacher (what every training run of it shares)."""

    task: object  # synthetic_task.TaskFiles
    cache: Path
    teacher: Path
    timings: dict


def _stage(name: str, title: str) -> float:
    console.rule(f"[bold]{name}[/bold]: {title}")
    return time.perf_counter()


def prepare(out: Path, n_videos: int = 48, n_test: int = 24, teacher_steps: int | None = None, workers: int = 2,
            seed: int = 0, progress: bool = True, task_kind: str = DEFAULT_TASK) -> Prepared:
    """Stages 1–3: the task (``task_kind``: "single" or "query"), its splits extracted into one
    cache, the teacher fitted as `TEACHER_FIT[task_kind]` says for ``teacher_steps`` (None: `TEACHER_STEPS`).
    Reuses what an earlier run left in ``out``."""
    from hfs.cache import FeatureCache
    from hfs.manifests import read_manifests
    from hfs.manifests.benchmarks import get_benchmark
    from hfs.pipeline.demo.task import grid_summary, make_task
    from hfs.pipeline.demo.teacher import fit_teacher
    from hfs.pipeline.evaluation.recall import read_ground_truth
    from hfs.pipeline.extract.config import ExtractConfig
    from hfs.pipeline.extract.run import extract

    out = Path(out)
    teacher_steps = teacher_steps or TEACHER_STEPS[task_kind]
    fit = TEACHER_FIT[task_kind]
    timings: dict[str, float] = {}
    t = _stage("task", f"{n_videos} training and {n_test} test videos ({task_kind} task), answer-bearing events "
                       + ("1-5 s long, four more pairs as distractors" if task_kind == "query" else "under a second long"))
    config = task_config(task_kind)
    task = make_task(out / "task", n_train=n_videos, n_test=n_test, seed=seed, config=config)
    timings["task"] = time.perf_counter() - t
    k = K[task_kind]
    s = grid_summary(list(read_ground_truth(task.test_truth).values()), k)  # task.json's summary is at k = 16
    console.print(f"test set: {s['questions']} questions, {s['mean_grid_hits_per_question']:.1f} answer-bearing frames "
                  f"of 128 per question; uniform {k}-of-128 catches one with p = {s['uniform_catch_probability_any_event']:.2f}")

    t = _stage("extract", "hfs extract (tiny random CLIP, Dask, CPU)")
    train = read_manifests([str(task.train_manifest)], video_root=str(task.train_manifest.parent))
    test = get_benchmark("nextqa").read(task.test_dir)
    cache_dir = out / "cache"
    summary = extract(train.videos + test.videos, cache_dir, ExtractConfig(preset="tiny", pretrained="none"),
                      workers=workers, progress=progress)
    if summary.failed_shards or (summary.planned and summary.ok == 0 and summary.skipped_done == 0):
        raise DemoError(f"extraction into {cache_dir} failed; rerun `hfs demo --out {out}` to retry")
    timings["extract"] = time.perf_counter() - t

    where = "the training questions" if fit["training_share"] == 1.0 else "new videos of the task's generator"
    t = _stage("teacher", f"fit the tiny teacher to read the frames ({teacher_steps} steps on {where}, the answer-"
                          f"bearing frames among {fit['k_schedule'][-1][0]}), a stand-in for pretraining")
    teacher_dir = out / "teacher"
    if not (teacher_dir / "config.json").is_file():
        with ProgressBar("teacher", teacher_steps, enabled=progress) as bar:
            train_truth = read_ground_truth(task.train_truth)
            fit_teacher(config, teacher_dir, steps=teacher_steps, seed=seed, progress=bar.advance,
                        training=(FeatureCache(cache_dir), [s for s in train.samples if s.sample_id in train_truth],
                                  train_truth), **fit)
    timings["teacher"] = time.perf_counter() - t
    return Prepared(task, cache_dir, teacher_dir, timings)


def train_and_evaluate(prepared: Prepared, run_dir: Path, results: Path, steps: int, settings: tuple[str, ...],
                       selectors: tuple[str, ...] = SELECTORS, seed: int = 0, progress: bool = True,
                       k: int = K[DEFAULT_TASK]) -> list:
    """Stages 4–5: ``hfs train`` with ``settings`` (on top of the tiny preset), then ``hfs evaluate``
    on the test set with k frames per question; returns the ``SelectorRow`` of each selector."""
    from hfs.pipeline.evaluation.recall import read_ground_truth, selector_rows
    from hfs.pipeline.train.checkpoint import latest_checkpoint
    from hfs.stages import evaluate as evaluate_stage
    from hfs.stages import train as train_stage

    task = prepared.task
    t = _stage("train", f"hfs train, tiny preset, {steps} steps (N = 128, k = {k})")
    before = latest_checkpoint(run_dir) if run_dir.is_dir() else None
    status = train_stage.run(cache=prepared.cache, data=[task.train_manifest], out=run_dir, preset="tiny",
                             teacher=str(prepared.teacher.resolve()), overrides=settings + (f"train.seed={seed}",),
                             resume=(run_dir / "config.json").is_file(), max_steps=steps,
                             video_root=task.train_manifest.parent, device="cpu", progress=progress)
    if status:
        raise DemoError(f"hfs train exited with {status}")
    prepared.timings["train"] = time.perf_counter() - t
    after = latest_checkpoint(run_dir)
    if before is not None and after != before and results.is_dir():
        # the run trained on: its old predictions belong to another checkpoint (hfs evaluate would refuse them)
        log.info("the run trained further (%s -> %s): evaluating afresh into %s", before.name, after.name, results)
        shutil.rmtree(results)

    t = _stage("evaluate", f"hfs evaluate on the held-out set: {', '.join(selectors)}")
    status = evaluate_stage.run(bench="nextqa", data=task.test_dir, out=results, cache=prepared.cache,
                                selectors=selectors, run_dir=run_dir, preset="tiny", k=k, workers=0, device="cpu",
                                seed=seed, progress=progress, truth=task.test_truth)
    if status:
        raise DemoError(f"hfs evaluate exited with {status}")
    prepared.timings["evaluate"] = time.perf_counter() - t
    predictions = [json.loads(line) for line in (results / "predictions.jsonl").read_text().splitlines()]
    return selector_rows(predictions, read_ground_truth(task.test_truth), k)


class DemoError(RuntimeError):
    """A demo stage that failed; the message says which and what to do."""


def run(out: Path, n_videos: int = 48, n_test: int = 24, steps: int = 500, teacher_steps: int | None = None,
        workers: int = 2, seed: int = 0, progress: bool = True, extra_settings: tuple[str, ...] = (),
        task_kind: str = DEFAULT_TASK) -> int:
    """Run the demo into ``out`` on the ``task_kind`` task ("single" or "query"); returns the exit status."""
    from hfs.cache.format import atomic_write_json

    out = Path(out)
    try:
        if task_kind not in TASKS:
            raise DemoError(f"unknown task {task_kind!r}; expected one of {', '.join(TASKS)}")
        teacher_steps = teacher_steps or TEACHER_STEPS[task_kind]
        prepared = prepare(out, n_videos, n_test, teacher_steps, workers, seed, progress, task_kind)
        settings = (*train_settings(task_kind), *extra_settings)
        k = K[task_kind]
        rows = train_and_evaluate(prepared, out / "run", out / "results", steps, settings, seed=seed,
                                  progress=progress, k=k)
    except DemoError as err:
        error(str(err))
        return 1
    print_table(rows, k, seed)
    verdict = goal_line(rows)
    console.print(verdict)
    atomic_write_json(out / "demo.json", {
        "selectors": [vars(r) for r in rows], "goal": verdict,
        "timings_s": {k: round(v, 1) for k, v in prepared.timings.items()},
        "settings": {"task": task_kind, "videos": n_videos, "test_videos": n_test,
                     "steps": steps,
                     "teacher_steps": teacher_steps, "k": k, "seed": seed, "train_settings": list(settings)},
    })
    console.print("time per stage: " + ", ".join(f"{k} {v:.0f} s" for k, v in prepared.timings.items()))
    console.print(f"report: {out / 'results' / 'report.html'}")
    return 0


def print_table(rows, k: int, seed: int) -> None:
    from rich.table import Table

    table = Table(title=f"held-out questions, training seed {seed}: does the selector find the frames that answer "
                        f"them? (k = {k} of 128)", title_justify="left")
    for name in ("selector", "questions", f"event recall@{k}", "answer-bearing frames selected", "accuracy"):
        table.add_column(name, justify="left" if name == "selector" else "right")
    for r in rows:
        table.add_row(r.selector, str(r.questions), f"{r.event_recall:.2f}", f"{r.mean_hits:.2f}", f"{r.accuracy:.2f}")
    console.print(table)


def goal_line(rows) -> str:
    """What the measured figures say about the goal (hfs ≥ 2× uniform's event recall)."""
    by = {r.selector: r for r in rows}
    if "hfs" not in by or "uniform" not in by:
        return "goal not measured (hfs or uniform missing)"
    hfs, uniform = by["hfs"].event_recall, by["uniform"].event_recall
    ratio = hfs / uniform if uniform > 0 else float("inf")
    met = "met" if ratio >= GOAL else "NOT met"
    return (f"hfs event recall {hfs:.2f} vs uniform {uniform:.2f}: {ratio:.1f}x "
            f"(goal >= {GOAL:.0f}x: {met})")


def task_config(task_kind: str = DEFAULT_TASK):
    """The demo's synthetic task. "single": colour and shape questions about a video's one event.
    "query": five pairs of shapes flash per video and the question names a colour of one pair
    ("Which colour was shown together with the red shape?"), so the right frames depend on the
    question; colours only, because the tiny teacher fitted in minutes reads colours and not shapes
    (benchmarks/RESULTS.md, 2026-12-08)."""
    from hfs.pipeline.demo.task import TaskConfig

    # options shuffled, as real benchmarks list them: the fitted teacher answers by their text (TEACHER_FIT)
    if task_kind == "query":
        return TaskConfig(kinds=("query_pair",), n_events=5, min_gap_s=1.0, event_grid_steps=(6.0, 10.0))
    return TaskConfig(kinds=("colour", "shape"))
