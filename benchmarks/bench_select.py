"""Frame selection: latency per question of each selector, and `hfs evaluate` throughput.

    python benchmarks/bench_select.py [--quick] [--json out.json]                  # tiny preset, CPU
    python benchmarks/bench_select.py --real --device cuda [--json out.json]       # paper-size student, GPU
    python benchmarks/bench_select.py --real --dry-run [--json out.json]           # meta device: tokens, FLOPs
    python benchmarks/bench_select.py --real --device cpu --student-width 64       # the --real path, narrow, CPU

Default (CPU): a synthetic cache written with the cache's own writer (N = 128 frames a
video, teacher JPEGs of 448×252, CLIP features made by the tiny CLIP from those JPEGs, so
the clip selector's check that the cache is its encoder's passes), the tiny preset (a saved
tiny HFSModel serves `hfs` / `hfs-set`, the tiny Qwen2.5-VL teacher answers), k = 16.
Per selector: the latency of one question (``selector(query, ctx)`` on a query read from
the cache; the cache read is timed apart), median and 90th percentile over the questions
after a warm-up that loads the selector's models (their load time is reported apart); and
the throughput of what `hfs evaluate` does per question (select, decode the k teacher
JPEGs, the teacher's answer, one line of predictions.jsonl) with ``answer_questions`` in
batches of 4, in questions per minute.

``--real``: the student at the paper's size (Qwen2.5-1.5B-Instruct's configuration,
bench_model.py's ``real_configs``, random bf16 weights; the teacher is not built): median
time of ``HFSModel.select`` for one question (N = 128, k = 16) and for batches of
``--batch-sizes`` questions (default 1 2 4), each row with its data wait (reading the
questions' features and timestamps from a synthetic cache onto the device, as `hfs evaluate`
reads before it selects; ``data_wait_frac`` = read / (read + select)), peak memory
(``max_memory_allocated``; on the CPU the resident set above the start) and MFU; a batch
that runs out of memory is a row with ``oom: true`` and the next runs. Then the ``hfs`` and
``hfs-set`` selectors as `hfs evaluate` calls them, and a breakdown of one selection into
its parts (eval-mode switch of the model, the question's tokens, the two adapter switches,
pass A with θ1, pass B with θ2, W_v + MLP_s + top-k). Selection runs without gradients, so
activation checkpointing (a training setting) changes nothing here and has no rows. Goal
(issue): ``hfs`` under 30 ms per question at paper size on one GPU.
``--dry-run`` builds the student on the meta device and counts tokens and FLOPs (2·P·T,
P without embeddings and LM head; as bench_model.py). ``--student-width`` /
``--student-layers`` shrink the student (paper depth is 28) so the ``--real`` code path runs
on a CPU: at width 64 and 28 layers the time goes to per-call overhead, as on a GPU at
batch 1, which is what the breakdown is for.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the hfs command line sets it (stages/cli.py), before torch loads

import argparse
import logging
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _common import is_oom, write_json, write_synthetic_cache

WORK = Path(__file__).resolve().parent / "_work" / "select"
SELECTORS = ("uniform", "random", "clip", "hfs", "hfs-set")
GOAL_MS = 30.0  # hfs at paper size, one question, one GPU
QUESTIONS = [
    ("What happens right after the woman in the red coat closes the car door?",
     ["She waves", "She walks to the shop", "She drives away", "She opens the trunk"]),
    ("How many people cross the street before the bus arrives?", ["none", "one", "two", "three", "four"]),
    ("Where is the dog when the ball lands?", ["in the garden", "on the sofa", "by the door"]),
    ("Why does the man stop the bicycle?", ["the light turns red", "he drops a bag", "a friend calls him",
                                            "the tyre is flat"]),
]

log = logging.getLogger("bench_select")


# --- the CPU rows: a synthetic cache and the tiny preset ------------------------------------------


def make_cache(root: Path, videos: int, n_frames: int, frame_size: tuple[int, int]):
    """A cache of ``videos`` videos (JPEG teacher frames, tiny-CLIP features of those frames) written
    by the cache's own plan and shard writer, and one multiple-choice question per video."""
    import io

    from PIL import Image

    from hfs.manifests import QASample, make_video_id
    from hfs.pipeline.extract.encoder import load_clip

    cache = root / "cache"
    ids = [make_video_id(f"v{i}.mp4") for i in range(videos)]
    samples = []
    for i, video_id in enumerate(ids):
        question, options = QUESTIONS[i % len(QUESTIONS)]
        samples.append(QASample(f"q{i}", video_id, question, tuple(options), options[i % len(options)],
                                i % len(options)))
    if (root / "done").exists():
        return cache, samples
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    encoder = load_clip("ViT-B-32", "none", preset="tiny")

    def clip_features(jpegs):  # the tiny CLIP's own features, so the clip selector's encoder check passes
        return encoder.encode(torch.stack([encoder.preprocess(Image.open(io.BytesIO(f)).convert("RGB")) for f in jpegs]))

    write_synthetic_cache(cache, videos, n_frames, frame_size, clip_features, encoder=encoder.name)
    (root / "done").touch()
    return cache, samples


def tiny_run(root: Path) -> Path:
    """A saved tiny HFSModel (what `--run` accepts), built once."""
    from hfs.pipeline.model.hfs_model import HFSConfig, HFSModel

    out = root / "model"
    if not (out / "hfs_config.json").is_file():
        torch.manual_seed(0)
        HFSModel.build(HFSConfig.tiny(), device="cpu").save(out)
    return out


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def latency_row(name: str, ctx, cache, samples, warmup: int = 2) -> dict:
    """One selector's time per question (after ``warmup`` questions that load its models)."""
    from hfs.pipeline.evaluation.predictions import query_of
    from hfs.pipeline.evaluation.selectors import check_choice, get_selector

    fn = get_selector(name)
    reads, times = [], []
    t0 = time.perf_counter()
    for s in samples[:warmup]:
        query = query_of(s, cache)
        check_choice(fn(query, ctx), len(query.features), ctx.k, name)
    first_s = time.perf_counter() - t0
    for s in samples:
        t0 = time.perf_counter()
        query = query_of(s, cache)
        t1 = time.perf_counter()
        check_choice(fn(query, ctx), len(query.features), ctx.k, name)
        times.append(time.perf_counter() - t1)
        reads.append(t1 - t0)
    median = statistics.median(times)
    return {"selector": name, "questions": len(times), "k": ctx.k, "frames": len(query.features),
            "median_ms": 1e3 * median, "p90_ms": 1e3 * _percentile(times, 90), "mean_ms": 1e3 * statistics.mean(times),
            "cache_read_ms": 1e3 * statistics.median(reads),
            "warmup_s": first_s, "load_s": max(0.0, first_s - warmup * median)}


def throughput_row(name: str, ctx, cache, samples, teacher, work_dir: Path, batch_size: int) -> dict:
    """Questions per minute of `hfs evaluate`'s answering loop with one selector (after a warm-up)."""
    from hfs.pipeline.evaluation.predictions import PredictionLog, TeacherAnswerer, Work, answer_questions

    answerer = TeacherAnswerer(teacher, cache)
    shutil.rmtree(work_dir, ignore_errors=True)
    warm = PredictionLog(work_dir / "warmup")
    answer_questions([Work(s, name) for s in samples[:2]], cache, ctx, answerer, warm, batch_size=batch_size)
    predictions = PredictionLog(work_dir / "timed")
    t0 = time.perf_counter()
    answer_questions([Work(s, name) for s in samples], cache, ctx, answerer, predictions, batch_size=batch_size)
    wall = time.perf_counter() - t0
    done = len(predictions.read_all())
    if done != len(samples):
        raise RuntimeError(f"{name}: {done} predictions for {len(samples)} questions")
    return {"selector": name, "questions": done, "batch_size": batch_size, "wall_s": wall,
            "questions_per_min": 60.0 * done / wall, "s_per_question": wall / done}


def cpu_rows(args) -> dict:
    from hfs.cache import FeatureCache
    from hfs.pipeline.evaluation.selectors import SelectorContext
    from hfs.pipeline.model.teachers import load_teacher

    work = args.work
    cache_dir, samples = make_cache(work / f"data_{args.videos}_{args.frame_size[0]}x{args.frame_size[1]}",
                                    args.videos, 128, tuple(args.frame_size))
    run = tiny_run(work)
    cache = FeatureCache(cache_dir)
    ctx = SelectorContext(k=args.k, seed=0, run=run, cache_config=cache.config, device="cpu", cache=cache)
    latency = [latency_row(name, ctx, cache, samples) for name in args.selectors]
    for row in latency:
        log.info("%s", row)
    throughput = []
    if not args.no_throughput:
        teacher = load_teacher("qwen2_5_vl", "tiny-qwen2_5_vl", device="cpu", lora_r=0)
        for name in args.selectors:
            throughput.append(throughput_row(name, ctx, cache, samples, teacher, work / "predictions" / name,
                                             args.batch_size))
            log.info("%s", throughput[-1])
    return {"latency": latency, "throughput": throughput, "videos": args.videos, "frames": 128, "k": args.k,
            "teacher_frame_size": list(args.frame_size), "threads": torch.get_num_threads()}


# --- the --real rows: the student at the paper's size ----------------------------------------------


def build_real_student(device: str, dtype: torch.dtype, width: int | None = None, layers: int | None = None):
    """HFSModel holding only the student at Qwen2.5-1.5B-Instruct's size (random weights); the
    teacher is not built (selection never calls it). ``width``/``layers`` shrink it."""
    import bench_model as bm
    from transformers import Qwen2ForCausalLM

    from hfs.pipeline.model import tiny
    from hfs.pipeline.model.hfs_model import HFSConfig, HFSModel
    from hfs.pipeline.model.student import Student, StudentConfig

    s_cfg, _ = bm.real_configs("qwen2_5_vl")
    if width:
        s_cfg.hidden_size, s_cfg.intermediate_size = width, 4 * width
        s_cfg.num_attention_heads, s_cfg.num_key_value_heads = max(1, width // 64), 1
    if layers:
        s_cfg.num_hidden_layers = layers
    cfg = HFSConfig(student=StudentConfig(name_or_path="Qwen/Qwen2.5-1.5B-Instruct"))
    with torch.device(device):
        torch.manual_seed(0)
        lm = Qwen2ForCausalLM._from_config(s_cfg, dtype=dtype)
        student = Student(cfg.student, lm, tiny.build_tiny_tokenizer())  # adapters and heads in float32
    return HFSModel(cfg, student, torch.nn.Identity(), torch.nn.Identity()).eval(), s_cfg


def student_matmul_params(model) -> int:
    """Matmul parameters of the student's LM (embedding and LM head excluded; LoRA included)."""
    lm = model.student.lm.get_base_model()
    skip = {id(p) for m in (lm.get_input_embeddings(), lm.get_output_embeddings()) if m is not None
            for p in m.parameters()}
    return sum(p.numel() for p in lm.parameters() if id(p) not in skip)


def select_tokens(model, B: int) -> dict[str, int]:
    """Tokens of pass A and pass B for B questions over 128 frames."""
    from bench_model import OPTIONS, QUESTION

    student = model.student
    text = student.text_inputs([QUESTION] * B, [OPTIONS] * B, device="cpu")
    K = student.cfg.num_task_queries
    return {"pass_a": int(text.task_lengths.sum()) if K else 0,
            "pass_b": int((128 + text.qa_lengths + K + 1).sum())}


class Clock:
    """Wall time of a call, synchronising the GPU around it."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")

    def __call__(self, fn, repeats: int) -> float:
        """Median seconds of ``fn()`` over ``repeats`` calls after one warm-up call."""
        fn()
        times = []
        for _ in range(repeats):
            if self.cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if self.cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)


def breakdown(model, clock: Clock, repeats: int) -> dict[str, float]:
    """Milliseconds of each part of one selection (B = 1), timed one part at a time."""
    from bench_model import OPTIONS, QUESTION

    from hfs.pipeline.model.hfs_model import _eval_mode
    from hfs.pipeline.model.selection import topk_select
    from hfs.pipeline.model.student import CONTEXT_AGGREGATOR, TASK_ANALYZER

    st = model.student
    features = torch.randn(1, 128, 512, device=st.device)
    out: dict[str, float] = {}
    with torch.no_grad():
        def toggle():
            with _eval_mode(model):
                pass

        out["eval_mode_switch"] = clock(toggle, repeats)
        out["question_tokens"] = clock(lambda: st.text_inputs([QUESTION], [OPTIONS]), repeats)
        text = st.text_inputs([QUESTION], [OPTIONS])
        out["adapter_switch_x2"] = 2 * clock(lambda: st._use_adapter(TASK_ANALYZER), repeats)
        switch = out["adapter_switch_x2"] / 2
        out["pass_a_theta1"] = clock(lambda: st.task_queries(text), repeats) - switch
        q_task = st.task_queries(text)
        e_v = st.frame_embeddings(features)
        out["pass_b_theta2"] = clock(lambda: st.aggregate(e_v, text, q_task), repeats) - switch
        q_hat = st.aggregate(e_v, text, q_task)
        out["heads_and_topk"] = clock(lambda: topk_select(st.scorer(st.frame_embeddings(features), q_hat.float()), 16),
                                      repeats)
        st._use_adapter(CONTEXT_AGGREGATOR)
    return {k: 1e3 * v for k, v in out.items()}


def peft_switch_ms(model, clock: Clock, repeats: int) -> float:
    """Two adapter switches the way hfs made them before 2026-12-02, through ``PeftModel``'s
    ``set_adapter`` and ``set_requires_grad`` (each a walk over every module of the LM): the
    same-run baseline of the breakdown's ``adapter_switch_x2`` (the LoRA layers listed once)."""
    from hfs.pipeline.model.student import CONTEXT_AGGREGATOR, TASK_ANALYZER

    st = model.student

    def switch():
        st.lm.set_adapter(TASK_ANALYZER)
        st.lm.set_requires_grad([CONTEXT_AGGREGATOR], requires_grad=True)
        st.lm.set_requires_grad([TASK_ANALYZER], requires_grad=st.train_task_analyzer)

    with torch.no_grad():
        ms = 2e3 * clock(switch, repeats)
    st._use_adapter(CONTEXT_AGGREGATOR)
    return ms


def real_cache(root: Path, videos: int):
    """A cache of ``videos`` videos with random features (the --real rows read theirs from it);
    reused when it holds enough."""
    from hfs.cache import FeatureCache

    cache = root / "cache"
    if (root / "done").exists():
        with FeatureCache(cache) as fc:
            if len(fc.video_ids()) >= videos:
                return FeatureCache(cache)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    write_synthetic_cache(cache, videos, 128, (64, 36))  # selection reads no JPEG
    (root / "done").touch()
    return FeatureCache(cache)


def time_select(model, cache, B: int, device: str, clock: Clock, repeats: int) -> dict:
    """One row's timings: reading B questions' features and timestamps from ``cache`` onto the
    device (the data wait of `hfs evaluate`'s selection, which reads in its own loop), then
    ``HFSModel.select`` on them; peak memory of the select calls (CUDA:
    ``max_memory_allocated``; CPU: resident set above the start)."""
    import bench_model as bm

    ids = sorted(cache.video_ids())[:B]
    questions, options = [bm.QUESTION] * B, [list(bm.OPTIONS) for _ in range(B)]

    def read():
        features = torch.from_numpy(np.stack([cache.features(v) for v in ids])).to(device)
        torch.from_numpy(np.stack([cache.timestamps(v) for v in ids])).to(device)
        return features

    wait = clock(read, repeats)
    features = read()
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        seconds = clock(lambda: model.select(features, questions, options, k=16), repeats)
        peak = torch.cuda.max_memory_allocated()
    else:
        with bm._RSSPeak() as rss:
            seconds = clock(lambda: model.select(features, questions, options, k=16), repeats)
        peak = rss.extra
    return {"ms": 1e3 * seconds, "ms_per_question": 1e3 * seconds / B, "data_wait_ms": 1e3 * wait,
            "data_wait_frac": wait / (wait + seconds), "peak_gib": peak / 2**30}


def real_rows(args) -> dict:
    import bench_model as bm

    from hfs.pipeline.evaluation.selectors import Query, SelectorContext, get_selector

    device = "meta" if args.dry_run else args.device
    dtype = torch.bfloat16 if device != "cpu" else torch.float32
    t0 = time.perf_counter()
    model, s_cfg = build_real_student(device, dtype, args.student_width, args.student_layers)
    log.info("built the student (%s, %d layers, width %d) in %.1f s", device, s_cfg.num_hidden_layers,
             s_cfg.hidden_size, time.perf_counter() - t0)
    params = student_matmul_params(model)
    result = {"student": {"layers": s_cfg.num_hidden_layers, "hidden_size": s_cfg.hidden_size,
                          "matmul_params": params, "dtype": str(dtype).replace("torch.", "")},
              "rows": [], "selectors": [], "breakdown_ms": None}
    clock = Clock(args.device)
    cache = None if args.dry_run else real_cache(args.work / "data_real", max(4, *args.batch_sizes))
    for B in args.batch_sizes:
        tokens = select_tokens(model, B)
        flops = 2.0 * params * (tokens["pass_a"] + tokens["pass_b"])
        row = {"path": "HFSModel.select", "batch": B, "frames": 128, "k": 16, "tokens_pass_a": tokens["pass_a"],
               "tokens_pass_b": tokens["pass_b"], "tflop": flops / 1e12}
        if not args.dry_run:
            failure = None
            try:
                row.update(time_select(model, cache, B, args.device, clock, args.repeats))
            except Exception as err:  # noqa: BLE001 - only running out of memory is a row
                if not is_oom(err):
                    raise
                failure = str(err).splitlines()[0] if str(err) else type(err).__name__
            if failure is not None:  # outside the handler: the traceback's tensors are gone
                log.warning("HFSModel.select, B=%d: out of memory (%s)", B, failure)
                row.update(oom=True, error=failure)
                if args.device.startswith("cuda"):
                    torch.cuda.empty_cache()
            else:
                seconds = row["ms"] / 1e3
                row["mfu"] = flops / seconds / bm.PEAK_FLOPS if args.device.startswith("cuda") else None
        result["rows"].append(row)
        log.info("%s", row)
    if args.dry_run:
        return result
    ctx = SelectorContext(k=16, device=args.device)
    ctx.__dict__["model"] = model  # the run's model, as `ctx.model` would load it
    rng = np.random.default_rng(0)
    query = Query("q0", bm.QUESTION, list(bm.OPTIONS), rng.standard_normal((128, 512)).astype(np.float16),
                  np.linspace(0.5, 600.0, 128, dtype=np.float32))
    for name in ("hfs", "hfs-set"):
        fn = get_selector(name)
        seconds = clock(lambda: fn(query, ctx), args.repeats)
        result["selectors"].append({"selector": name, "ms_per_question": 1e3 * seconds})
        log.info("%s: %.1f ms", name, 1e3 * seconds)
    result["breakdown_ms"] = breakdown(model, clock, args.repeats)
    result["adapter_switch_x2_through_peft_ms"] = peft_switch_ms(model, clock, args.repeats)
    return result


# --- tables --------------------------------------------------------------------------------------


def print_cpu(res: dict, title: str) -> None:
    print(f"\n### {title}\n")
    tp = {r["selector"]: r for r in res["throughput"]}
    print("| selector | select ms / question (median) | p90 ms | first-call load s | "
          f"`hfs evaluate` loop, questions/min (batch {res['throughput'][0]['batch_size'] if tp else '-'}) |")
    print("|---|---:|---:|---:|---:|")
    for r in res["latency"]:
        t = tp.get(r["selector"])
        per_min = f"{t['questions_per_min']:.1f}" if t else "-"
        print(f"| {r['selector']} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} | {r['load_s']:.2f} | {per_min} |")
    reads = [r["cache_read_ms"] for r in res["latency"]]
    print(f"\nN = {res['frames']} frames, k = {res['k']}, {res['latency'][0]['questions']} questions; reading a "
          f"question's features and timestamps from the cache: {statistics.median(reads):.2f} ms (not in the "
          f"select column); {res['threads']} torch threads.")


def print_real(res: dict, title: str, dry_run: bool) -> None:
    print(f"\n### {title}\n")
    st = res["student"]
    print(f"student: {st['layers']} layers, width {st['hidden_size']}, {st['matmul_params'] / 1e9:.3f} B matmul "
          f"parameters, {st['dtype']}\n")
    print("| path | B | tokens A+B | TFLOP | ms | ms / question | data wait ms | peak GiB | MFU |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in res["rows"]:
        timed = "ms" in r
        cells = [r["path"], str(r["batch"]), f"{r['tokens_pass_a']}+{r['tokens_pass_b']}", f"{r['tflop']:.3g}",
                 f"{r['ms']:.1f}" if timed else ("out of memory" if r.get("oom") else "-"),
                 f"{r['ms_per_question']:.1f}" if timed else "-", f"{r['data_wait_ms']:.2f}" if timed else "-",
                 f"{r['peak_gib']:.2f}" if timed else "-", f"{100 * r['mfu']:.1f} %" if r.get("mfu") else "-"]
        print("| " + " | ".join(cells) + " |")
    if dry_run:
        return
    print()
    for r in res["selectors"]:
        print(f"`{r['selector']}` selector (as `hfs evaluate` calls it, B = 1): {r['ms_per_question']:.1f} ms per question")
    hfs = next((r["ms_per_question"] for r in res["selectors"] if r["selector"] == "hfs"), None)
    if hfs is not None and st["layers"] == 28 and st["hidden_size"] == 1536:
        print(f"\ngoal hfs < {GOAL_MS:.0f} ms per question: {'met' if hfs < GOAL_MS else 'NOT met'} ({hfs:.1f} ms)")
    b = res["breakdown_ms"]
    total = sum(b.values())
    print("\n| part of one selection (B = 1) | ms | share |")
    print("|---|---:|---:|")
    for name, ms in b.items():
        print(f"| {name.replace('_', ' ')} | {ms:.1f} | {100 * ms / total:.0f} % |")
    peft_ms = res["adapter_switch_x2_through_peft_ms"]
    print(f"\nThe two adapter switches through peft's module walks (hfs before 2026-12-02): {peft_ms:.1f} ms, "
          f"{peft_ms / b['adapter_switch_x2']:.1f}x the LoRA layers listed once.")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", action="store_true", help="the student at paper size (random weights), HFSModel.select")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda[:i] with --real")
    ap.add_argument("--dry-run", action="store_true", help="--real: build on the meta device, count tokens and FLOPs")
    ap.add_argument("--student-width", type=int, default=None, help="--real: a narrower student (paper: 1536)")
    ap.add_argument("--student-layers", type=int, default=None, help="--real: fewer layers (paper: 28)")
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 2, 4], help="--real: questions per select call")
    ap.add_argument("--repeats", type=int, default=5, help="--real: timed calls per row (after one warm-up)")
    ap.add_argument("--selectors", nargs="+", default=list(SELECTORS), choices=SELECTORS)
    ap.add_argument("--videos", type=int, default=16, help="CPU: videos (one question each) in the synthetic cache")
    ap.add_argument("--k", type=int, default=16, help="CPU: frames selected per question (paper: 16 of 128)")
    ap.add_argument("--frame-size", nargs=2, type=int, default=[448, 252], metavar=("W", "H"),
                    help="CPU: teacher JPEG size in the cache (the cache's default longest side is 448)")
    ap.add_argument("--batch-size", type=int, default=4, help="CPU: questions per teacher call (hfs evaluate's default)")
    ap.add_argument("--no-throughput", action="store_true", help="CPU: latency only, no teacher")
    ap.add_argument("--quick", action="store_true", help="CPU: 6 videos")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--work", type=Path, default=WORK, help="folder for the synthetic caches and the tiny run")
    ap.add_argument("--json", type=Path, default=None, help="write the result here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.real and not args.dry_run and args.device == "cpu" and not args.student_width:
        ap.error("--real on the CPU needs --student-width (the 1.5B student is far too slow there); "
                 "use --device cuda, or --dry-run to count")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("--device cuda but torch sees no GPU")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.videos = 6
    where = (torch.cuda.get_device_name(0) if args.device.startswith("cuda") else
             "meta (dry run)" if args.dry_run else f"cpu, {torch.get_num_threads()} threads")
    result: dict = {"bench": "select", "real": args.real, "dry_run": args.dry_run, "device": args.device,
                    "device_name": where}
    if args.real:
        result.update(real_rows(args))
        write_json(args.json, result)
        size = ("paper size" if not (args.student_width or args.student_layers)
                else f"narrowed: width {result['student']['hidden_size']}, {result['student']['layers']} layers")
        print_real(result, f"bench_select --real (student at {size}, random {result['student']['dtype']}, {where})",
                   args.dry_run)
        return result
    result.update(cpu_rows(args))
    write_json(args.json, result)
    print_cpu(result, f"bench_select (tiny preset, {where})")
    return result


if __name__ == "__main__":
    sys.exit(main() and 0)
