"""The `hfs` command line. Each verb parses options and calls its stage module;
heavy imports (torch, open_clip, dask) happen inside the verbs, so `hfs --help`
is instant."""

from __future__ import annotations

import logging
import os
from enum import Enum
from pathlib import Path
from typing import List, Optional

# OpenMP threads that spin while they wait collapse when the cores are shared (DataLoader
# workers, Dask workers, other jobs): a tiny training step took 7.7 s instead of 0.19 s on
# a loaded 2-core machine. Sleeping waiters cost nothing measurable; read when torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer

app = typer.Typer(
    name="hfs",
    help="HFS: learned, query-aware video frame selection. Stage 1 `extract` caches CLIP features; "
    "later stages train, select and evaluate from that cache.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _setup_logging(verbose: int) -> None:
    import warnings

    from rich.logging import RichHandler

    # peft asks transformers a deprecated question on every adapter switch; nothing for a user to do
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(message)s", handlers=[RichHandler(show_path=False, markup=False)])
    quiet = max(level, logging.ERROR)
    for noisy in ("distributed", "tornado", "asyncio", "bokeh", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(quiet)
    # distributed sets its own loggers to INFO when it is first imported (here and in every
    # worker process it spawns) and LocalCluster restores that level when it closes, so
    # shutdown chatter ("Event loop was unresponsive") would reach the console. Its config
    # is read from the environment at import: set it there, for child processes too.
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", logging.getLevelName(quiet).lower())


class TrainDevice(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class DemoTask(str, Enum):
    single = "single"
    query = "query"


VERBOSE = typer.Option(0, "--verbose", "-v", count=True, help="More log output (-v info, -vv debug).")


from hfs.stages.extract import ExtractDevice, backend_choice  # noqa: E402 - the extract command's choices


@app.command()
def extract(
    manifest: List[Path] = typer.Option(..., "--manifest", "-m", help="Manifest file (JSONL, LLaVA-Video-178K JSON or VideoChat2-IT JSON; list or lines detected from the content). Repeat for several."),
    out: Path = typer.Option(Path("cache"), "--out", "-o", help="Cache folder to create or complete (shard-*.h5 + shard-*.parquet, plan.json, stats.json)."),
    video_root: Optional[Path] = typer.Option(None, "--video-root", help="Folder that relative video paths resolve against (default: each manifest's own folder)."),
    frames: str = typer.Option("128", "--frames", help="Frames sampled per video at segment centres (N). `--frames none` keeps N=128 but stores no teacher JPEGs."),
    size: Optional[int] = typer.Option(None, "--size", min=1, help="CLIP input side (resize shortest side + centre crop, as open_clip does); default: the encoder's own (224 for ViT-B-32). Another size builds the encoder for it (position embeddings interpolated)."),
    teacher_frame_size: str = typer.Option("448", "--teacher-frame-size", help="Longest side of the JPEG frames kept for the teacher (aspect kept, never upscaled); `none` keeps none."),
    model: str = typer.Option("ViT-B-32", "--model", help="open_clip architecture."),
    pretrained: str = typer.Option("openai", "--pretrained", help="open_clip tag from the local cache (`openai`), a checkpoint path, or `none` for random weights (recorded in the cache)."),
    preset: Optional[str] = typer.Option(None, "--preset", help="`tiny`: a tiny random CLIP with the same 512-d output, for smoke runs (implies --pretrained none)."),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", min=0, help="Local Dask worker processes (default: number of cores; 0 runs in this process without Dask)."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Address of an existing Dask scheduler (e.g. tcp://host:8786) instead of a local cluster; --out is made absolute and must be the same path on every worker (a shared filesystem)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Threads per worker process, for torch and for FFmpeg decoding (default: cores / workers locally, 1 on an external cluster)."),
    device: ExtractDevice = typer.Option("cpu", "--device", help="Where CLIP runs; cuda: each worker process on one GPU of its machine, round-robin."),
    backend: str = typer.Option("auto", "--backend", callback=backend_choice, help="Decoder: auto (PyAV, ffmpeg binary as fallback), pyav or ffmpeg."),
    video_timeout: str = typer.Option("600", "--video-timeout", help="Seconds one video may take to decode (in a child process of the worker) before it becomes an error row and the decoder is restarted; `none`: no limit."),
    shard_size: int = typer.Option(32, "--shard-size", min=1, help="Videos per shard (one Dask task, one HDF5 + one Parquet file)."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Frames per CLIP forward pass."),
    strict: bool = typer.Option(False, "--strict", help="Fail on the first bad manifest line, and exit non-zero if any video fails."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar over videos."),
    verbose: int = VERBOSE,
) -> None:
    """Stage 1: decode N frames per video, encode them with frozen CLIP ViT-B/32, write a sharded cache.

    Rerunning the same command finishes what is missing and redoes nothing; rerunning into a cache
    made with another config is an error that names the difference. Exit status 2: a usage error or a
    run that cannot start (one `error:` line); 1: shards failed or nothing could be extracted.
    """
    _setup_logging(verbose)
    from hfs.stages.extract import run

    raise typer.Exit(run(
        manifests=manifest, out=out, video_root=video_root, frames=frames, size=size,
        teacher_frame_size=teacher_frame_size, model=model, pretrained=pretrained, preset=preset,
        workers=workers, scheduler=scheduler, threads=threads, device=device, backend=backend, shard_size=shard_size,
        batch_size=batch_size, video_timeout=video_timeout, strict=strict, progress=progress,
    ))


@app.command()
def train(
    cache: Path = typer.Option(..., "--cache", "-c", help="Feature cache made by `hfs extract` (shard-*.h5 + index)."),
    data: List[Path] = typer.Option(..., "--data", "-d", help="Training QA file: LLaVA-Video-178K JSON, VideoChat2-IT JSON (one sample per QA item) or generic JSONL. Repeat for several. Samples whose video is not in the cache are skipped and counted."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder: config.json, data.json, metrics.jsonl, checkpoints/."),
    student: Optional[str] = typer.Option(None, "--student", help="Student LM: Hugging Face id or local folder (default Qwen/Qwen2.5-1.5B-Instruct)."),
    teacher: Optional[str] = typer.Option(None, "--teacher", help="Teacher: qwen2.5-vl (Qwen2.5-VL-7B-Instruct, default), internvl3 (InternVL3-8B-hf), or a Hugging Face id / local folder of either kind."),
    preset: Optional[str] = typer.Option(None, "--preset", help="`tiny`: tiny random student and teacher built offline, k_sel=4; for smoke runs on the CPU."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML or JSON file with any of the sections student, selection, set_objective, losses, teacher, train."),
    set_: List[str] = typer.Option([], "--set", help="Override one field, section.field=value (Python literal), e.g. train.lr=1e-4, losses.use_kl=false, student.K=0. Repeatable; applied last."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its newest checkpoint, exactly; the configuration must be the same (only train.max_steps, epochs, checkpointing and workers may change)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Optimiser steps in all (train.max_steps); overrides --epochs."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Passes over the training samples (train.epochs, default 1)."),
    video_root: Optional[Path] = typer.Option(None, "--video-root", help="Folder relative video paths in --data resolve against (as given to `hfs extract`); only the paths as written make the video ids."),
    device: TrainDevice = typer.Option(TrainDevice.auto, "--device", help="auto: the process's GPU (torchrun: LOCAL_RANK) when there is one, else the CPU."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar with the loss and the ETA."),
    reschedule: bool = typer.Option(False, "--reschedule", help="With --resume and a changed --max-steps/--epochs: stretch the learning-rate schedule (the cosine) to the new length from the resume point on. Without it the schedule keeps the length the run started with, so the learning rate goes on as before (a cosine past its end trains at 0)."),
    new_data: bool = typer.Option(False, "--new-data", help="With --resume: go on although --data and --cache now give other training samples than the run's data.json records (another count, other ids or another order), which changes every epoch's order from the resume point. Without it such a resume stops (exit 2)."),
    verbose: int = VERBOSE,
) -> None:
    """Stage 2: train the student and the teacher together from the cache (paper Eq. 21).

    Every paper default can be changed with --config or --set; the resolved config is saved in --out.

    One process per GPU: `torchrun --nproc-per-node N -m hfs.stages.cli train ...` (same options).
    """
    _setup_logging(verbose)
    from hfs.stages.train import run

    raise typer.Exit(run(
        cache=cache, data=data, out=out, student=student, teacher=teacher, preset=preset, config_file=config,
        overrides=set_, resume=resume, max_steps=max_steps, epochs=epochs, video_root=video_root, device=device.value,
        progress=progress, reschedule=reschedule, new_data=new_data,
    ))


def _registered(kind: str) -> str:
    """The names in a registry, for --help (both registries import no torch)."""
    if kind == "selectors":
        from hfs.pipeline.evaluation.selectors import list_selectors, selector_needs_run

        return ", ".join(f"{name} (needs --run)" if selector_needs_run(name) else name for name in list_selectors())
    from hfs.manifests.benchmarks import list_benchmarks

    return ", ".join(list_benchmarks())


SELECTORS_HELP = (f"Frame selector: {_registered('selectors')}. hfs is the paper's top-k of s_i, hfs-set greedy F (Eq. 15) "
                  "on the same scores.")
BENCHMARKS = _registered("benchmarks")


@app.command()
def select(
    cache: Path = typer.Option(..., "--cache", "-c", help="Feature cache holding the questions' videos (`hfs extract` first)."),
    out: Path = typer.Option(..., "--out", "-o", help="JSONL file: one line per question with the chosen frame indices, their timestamps and the scores (layout in the README)."),
    selector: str = typer.Option(..., "--selector", "-s", help=SELECTORS_HELP),
    manifest: List[Path] = typer.Option([], "--manifest", "-m", help="Questions from a manifest (any format `hfs extract` reads). Repeatable. Or use --bench/--data."),
    bench: Optional[str] = typer.Option(None, "--bench", help=f"Questions from a benchmark in its published layout: {BENCHMARKS}."),
    data: Optional[Path] = typer.Option(None, "--data", help="The benchmark's folder, with --bench."),
    run: Optional[Path] = typer.Option(None, "--run", help="Trained run (folder, checkpoint or saved model) for hfs / hfs-set."),
    k: int = typer.Option(16, "--k", min=1, help="Frames to select per question (paper: 16 of 128)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random selector."),
    video_root: Optional[Path] = typer.Option(None, "--video-root", help="Folder relative video paths in --manifest resolve against (as for `hfs extract`)."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Questions the selector scores per forward pass (hfs, hfs-set: one student pass over B questions, right-padded: scores equal to one question at a time up to float rounding, ~1e-6 in fp32, ~1e-3 in bf16 on a GPU, where a near-tie can swap a frame; 1 for exactly the one-at-a-time selection). Lower it if the GPU runs out of memory."),
    preset: Optional[str] = typer.Option(None, "--preset", help="With --bench and a new --cache: `tiny` extracts with the tiny CLIP built offline (smoke runs); default the paper's ViT-B/32. An existing cache extends with its own encoder."),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", help="With --bench: Dask worker processes extracting videos not yet in the cache (0: in this process)."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="With --bench: existing Dask scheduler for the extraction (tcp://host:8786)."),
    device: TrainDevice = typer.Option(TrainDevice.auto, "--device", help="Where the hfs / clip models run: auto (a GPU if there is one), cpu or cuda."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    verbose: int = VERBOSE,
) -> None:
    """Select k frames per question with one selector, from the cache, into a JSONL file.

    With --bench, the benchmark's videos not yet in the cache are extracted first. Each line carries
    the benchmark, question id, video path, N, duration, indices and times (the README's export
    format); questions not selected for are listed with their reason in OUT's .skipped.jsonl.
    """
    _setup_logging(verbose)
    from hfs.stages.select import run as run_select

    raise typer.Exit(run_select(cache=cache, out=out, selector=selector, manifests=manifest, bench=bench, data=data,
                                run_dir=run, k=k, seed=seed, video_root=video_root, device=_device(device.value),
                                progress=progress, batch_size=batch_size, preset=preset, workers=workers,
                                scheduler=scheduler))


@app.command()
def evaluate(
    bench: str = typer.Option(..., "--bench", help=f"Benchmark: {BENCHMARKS} (read from its published files)."),
    data: Path = typer.Option(..., "--data", help="The benchmark's folder as downloaded and unpacked (layouts in the README)."),
    out: Path = typer.Option(..., "--out", "-o", help="Results folder: predictions.jsonl, scores.json (and cache/ unless --cache)."),
    cache: Optional[Path] = typer.Option(None, "--cache", "-c", help="Feature cache to use and extend with the benchmark's videos (default: OUT/cache)."),
    selector: List[str] = typer.Option(["uniform"], "--selector", "-s", help=SELECTORS_HELP + " Repeat to compare several."),
    run: Optional[Path] = typer.Option(None, "--run", "--run-dir", help="Trained run: its student for hfs / hfs-set and its LoRA-tuned teacher answers (unless --teacher). Under torchrun write --run-dir: torchrun takes --run for its own --run-path."),
    teacher: Optional[str] = typer.Option(None, "--teacher", help="Base teacher that answers: qwen2.5-vl, internvl3, or a Hugging Face id / local folder (default: the run's tuned teacher, else qwen2.5-vl)."),
    preset: Optional[str] = typer.Option(None, "--preset", help="`tiny`: tiny random teacher and CLIP built offline, for smoke runs on the CPU."),
    k: int = typer.Option(16, "--k", min=1, help="Frames the teacher sees per question (paper: 16 of 128)."),
    subtitles: bool = typer.Option(False, "--subtitles", help="Also answer with the subtitle lines around the selected frames' times (videomme, longvideobench)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N questions (smoke runs)."),
    strict: bool = typer.Option(False, "--strict", help="Stop (exit 2, naming each question or file) at a question that cannot be scored: a bad row, a missing video, a video that failed extraction. Without it such questions are skipped, counted by reason, and the headline says \"over n of N questions\"; lmms-eval stops at them, so use --strict for figures to put beside its numbers."),
    protocol: str = typer.Option("hfs", "--protocol", help="hfs: the teacher's option-letter logits from k frames with their times. lmms-eval: its prompt text, the selector's k frames as its Qwen2.5-VL wrapper is shown them (one video; LongVideoBench with subtitles: k images before its interleaved frame and subtitle text; InternVL teachers refused), greedy generation and answer parser (the response is kept beside the parsed letter), its subtitle rules, to put a figure beside published lmms-eval numbers (its frame sampling is not reproduced: the frames are the selector's)."),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", min=1, help="--protocol lmms-eval: generate at most this many tokens (default: the lmms-eval task's, 16 for videomme and mlvu, 32 for longvideobench; nextqa sets none, so its model wrapper's 32768, cut by the end of the answer)."),
    batch_size: int = typer.Option(4, "--batch-size", min=1, help="Questions per forward pass, of the selector (hfs, hfs-set: one student pass, right-padded; the scores equal one question at a time's up to float rounding, see `hfs select --help`) and of the teacher. Lower it if the GPU runs out of memory."),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", help="Dask worker processes extracting videos not yet in the cache (0: in this process)."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Existing Dask scheduler for the extraction (tcp://host:8786)."),
    device: TrainDevice = typer.Option(TrainDevice.auto, "--device", help="auto: this process's GPU (torchrun: LOCAL_RANK) when there is one, else the CPU."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random selector."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    verbose: int = VERBOSE,
) -> None:
    """Score selectors + a teacher on a benchmark in its published layout, with its own breakdown.

    Extracts the benchmark's videos not yet in the cache, selects, asks the teacher for the option
    letter, writes predictions.jsonl (a rerun skips what is already predicted; a rerun into the same
    --out with another --k, --teacher, --run or --seed is refused) and scores.json, and prints the
    selectors side by side. Several GPUs: `torchrun --nproc-per-node N -m hfs.stages.cli
    evaluate ...`.
    """
    _setup_logging(verbose)
    from hfs.stages.evaluate import run as run_evaluate

    raise typer.Exit(run_evaluate(
        bench=bench, data=data, out=out, cache=cache, selectors=selector, run_dir=run, teacher=teacher, preset=preset,
        k=k, subtitles=subtitles, limit=limit, batch_size=batch_size, workers=workers, scheduler=scheduler,
        device=device.value, seed=seed, progress=progress, strict=strict, protocol=protocol,
        max_new_tokens=max_new_tokens,
    ))


def _device(choice: str) -> str:
    """auto → cuda when torch sees a GPU, else cpu."""
    if choice != "auto":
        return choice
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@app.command()
def report(
    cache: Path = typer.Option(..., "--cache", "-c", help="Feature cache holding the questions' videos: the thumbnails, timestamps and N come from it."),
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="The HTML file to write (self-contained: thumbnails and plots inside, no network)."),
    selections: List[Path] = typer.Option([], "--selections", "-s", help="`hfs select` JSONL file (one selector each). Repeat for several; a selector name found in two files is told apart by the file name."),
    predictions: Optional[Path] = typer.Option(None, "--predictions", "-p", help="`hfs evaluate`'s predictions.jsonl: several selectors, with the teacher's answers (accuracy, ✓/✗ per question)."),
    run: Optional[Path] = typer.Option(None, "--run", help="Training run folder (or a checkpoint in it): its metrics.jsonl curves, each loss term, τ and λ_KL over steps."),
    bench: Optional[str] = typer.Option(None, "--bench", help=f"Question texts and options from a benchmark in its published layout: {BENCHMARKS} (with --data)."),
    data: Optional[Path] = typer.Option(None, "--data", help="The benchmark's folder, with --bench."),
    manifest: List[Path] = typer.Option([], "--manifest", "-m", help="Question texts and options from a manifest (any format `hfs extract` reads). Repeatable."),
    video_root: Optional[Path] = typer.Option(None, "--video-root", help="Folder relative video paths in --manifest resolve against (as for `hfs extract`)."),
    truth: Optional[Path] = typer.Option(None, "--truth", help="The synthetic task's ground_truth.jsonl: answer-bearing frames shaded, event recall@k per selector."),
    max_questions: int = typer.Option(50, "--max-questions", min=0, help="Questions that get a section (each holds N thumbnails); the summary counts all."),
    title: Optional[str] = typer.Option(None, "--title", help="Page title (default: hfs report: frame selections)."),
    verbose: int = VERBOSE,
) -> None:
    """Render one self-contained HTML page: selectors side by side, and per question the N-frame strip
    with each selector's frames marked, the scores s_i, the answer and the predictions.

    Exit status 2: a missing or garbled input (one `error:` line naming the file).
    """
    _setup_logging(verbose)
    from hfs.stages.report import run as run_report

    raise typer.Exit(run_report(
        cache=cache, out=out, selections=selections, predictions=predictions, run_dir=run, bench=bench, data=data,
        manifests=manifest, video_root=video_root, truth=truth, max_questions=max_questions, title=title,
    ))


@app.command()
def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", "-o", help="Folder for everything the demo makes: task/, cache/, teacher/, run/, results/ (report.html), demo.json. A rerun resumes."),
    videos: int = typer.Option(48, "--videos", min=4, help="Training videos (one question each)."),
    test_videos: int = typer.Option(24, "--test-videos", min=1, help="Held-out videos (NExT-QA layout) the selectors are scored on."),
    steps: int = typer.Option(500, "--steps", min=1, help="hfs train optimiser steps (batch 4)."),
    task: DemoTask = typer.Option(DemoTask.query, "--task", help="query (default): five pairs of shapes flash per video and the question names a colour of one pair (\"Which colour was shown together with the red shape?\"), so the right frames depend on the question; k = 2 frames of 128; the fitted teacher answers every held-out question shown the named pair. single: one coloured shape flashes per video, the question asks its colour or shape; k = 16 (the teacher reads held-out videos poorly there: accuracy stays near chance)."),
    teacher_steps: Optional[int] = typer.Option(None, "--teacher-steps", min=1, help="Steps fitting the tiny teacher to read the frames before HFS training (a stand-in for a pretrained video LLM; options shuffled, answered by their text). Default: the task's, 1200 for query (16 new videos a step, 2 frames each, the named pair among them) and 1000 for single (8 training questions a step, 4 frames each, the event among them)."),
    workers: int = typer.Option(2, "--workers", "-j", help="Local Dask worker processes for extraction."),
    seed: int = typer.Option(0, "--seed", help="Seed of the task, the teacher fit and the training."),
    set_: List[str] = typer.Option([], "--set", help="Extra training override, section.field=value (as for hfs train), e.g. losses.use_set=false."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar per stage."),
    verbose: int = VERBOSE,
) -> None:
    """The whole pipeline on a synthetic task only the right frames answer, with tiny models on the CPU.

    Makes the videos and questions (--task single or query), extracts them, fits the stand-in teacher,
    trains HFS, evaluates uniform, random, clip, hfs, hfs-set and oracle (the answer-bearing frames)
    on held-out questions, and prints event recall@k, answer-bearing frames selected and accuracy
    per selector with the training seed, then the path of the HTML report.
    """
    _setup_logging(verbose)
    from hfs.stages.demo import run as run_demo

    raise typer.Exit(run_demo(out=out, n_videos=videos, n_test=test_videos, steps=steps, teacher_steps=teacher_steps,
                              workers=workers, seed=seed, progress=progress, extra_settings=tuple(set_),
                              task_kind=task.value))


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
