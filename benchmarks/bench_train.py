"""Training throughput: samples/s, data-wait fraction, and the share of each step spent
outside model compute (reading, JPEG decoding, the teacher's image preprocessing).

    python benchmarks/bench_train.py [--quick] [--steps 16] [--workers 0 2] [--json out.json]
    python benchmarks/bench_train.py --real --device cuda [--batch-sizes 1 2 4] [--checkpointing both] [--json out.json]
    python benchmarks/bench_train.py --real --dry-run
    python benchmarks/bench_train.py --real --tiny --device cpu --teachers qwen2_5_vl --frame-size 64 36
    python benchmarks/bench_train.py --mid [--steps 3] [--json out.json]

Default (CPU): the real loop of ``hfs train`` (stages/train.py, in this process) with the
tiny preset on a synthetic cache written with the cache writer: 24 videos of N = 128
frames, teacher JPEGs of 448×252 (the cache's default longest side), k_sel = 16, micro-batch
2 × accumulation 2. One row per ``--workers`` value (DataLoader worker processes). The
in-step work that is not model compute is timed by wrapping ``frames.decode_jpegs`` and
``Teacher.encode_batch``; data wait comes from ``metrics.jsonl``. The first 2 steps are
warm-up and left out. In the same run the teacher's preprocessing of 16 frames with the
published processors' settings is timed both ways: the tensor path the step uses
(``decode_jpegs`` + ``encode_sample``) and the old one (PIL decode + the HF processor), as
a ratio.

``--real --device cuda``: the paper's sizes with random bf16 weights (bench_model.py's
configs): optimiser steps (bf16 autocast, forward, backward, clip, AdamW) on 128 frames of
448×252 JPEGs, k_sel = 16, one row per teacher × activation checkpointing (off, then on, in
the same run; ``--checkpointing``) × micro-batch (``--batch-sizes``, default 1 2 4). The
micro-batches are read as ``hfs train`` reads them: ``QADataset`` + ``collate`` over a
synthetic cache in ``--loader-workers`` DataLoader workers (default 2, the config's). Per row:
median step time over ``--repeats`` steps after one warm-up, data wait (the time the step
waited for its batch, as ``metrics.jsonl``'s ``data_wait_frac``), peak memory
(``max_memory_allocated`` over the timed steps), MFU (FLOPs as in bench_model.py, over
bench_model.py's ``PEAK_FLOPS``) and the share of the step spent decoding and preprocessing
frames. A setting that runs out of memory is a row with ``oom: true`` and its error, and the
next setting runs. ``--dry-run`` builds on the meta device and counts tokens and FLOPs only;
``--tiny`` runs the same code path with the tiny preset's models (on the CPU: peak = resident
set above the row's start, which memory an earlier row freed hides, so a check of the path,
not a measure; no MFU). Goals (issue 14): data wait < 5 % of the step; MFU >= 40 %;
peak memory at micro-batch 1 within one 80 GB GPU.

``--mid`` (CPU): activation checkpointing (``train.gradient_checkpointing``) off and on, in the
same run. A mid-size random pair built here (``MID_TEXT``: a 512-wide, 8-layer Qwen2 student
and a Qwen2.5-VL teacher with the same language model and a small frozen vision tower, whose
processor resizes 448×252 frames to 336×168: 72 tokens a frame, ~1,250 teacher tokens for
k_sel = 16), so the teacher's activations, not its weights, decide the peak. Each setting runs
the real loop of ``hfs train`` (micro-batch 1, fp32, no DataLoader workers) in a fresh
process: peak memory is that process's maximum resident set (``getrusage``; tracemalloc does
not see torch's allocations), "above the model" subtracts the resident set right after the
models were built; step time is the median over the steps after the first.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the hfs command line sets it (stages/cli.py), before torch loads

import argparse
import contextlib
import json
import logging
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch
from _common import is_oom, write_json, write_synthetic_cache

WORK = Path(__file__).resolve().parent / "_work" / "train"
QUESTION = "What happens right after the woman in the red coat closes the car door?"
OPTIONS = ["She waves", "She walks to the shop", "She drives away", "She opens the trunk"]

log = logging.getLogger("bench_train")


# --- a synthetic cache ----------------------------------------------------------------------------


def make_cache(root: Path, videos: int, n_frames: int, frame_size: tuple[int, int]) -> tuple[Path, Path]:
    """A cache of ``videos`` videos (random features, JPEG teacher frames) and a JSONL manifest
    with one question each, written by the cache's own plan and shard writer."""
    cache = root / "cache"
    manifest = root / "train.jsonl"
    if (root / "done").exists():
        return cache, manifest
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    write_synthetic_cache(cache, videos, n_frames, frame_size)
    lines = [json.dumps({"video": f"v{i}.mp4", "id": f"q{i}", "question": QUESTION, "options": OPTIONS,
                         "answer": i % 4}) for i in range(videos)]
    manifest.write_text("\n".join(lines) + "\n")
    (root / "done").touch()
    return cache, manifest


# --- timing the in-step work that is not model compute ---------------------------------------------


class StepWork:
    """Seconds spent in ``decode_jpegs`` and ``Teacher.encode_batch`` while installed."""

    def __init__(self, cuda: bool = False) -> None:
        self.cuda = cuda
        self.seconds = {"decode": 0.0, "preprocess": 0.0}

    def _timed(self, name: str, fn):
        def wrapper(*args, **kwargs):
            if self.cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            if self.cuda:
                torch.cuda.synchronize()
            self.seconds[name] += time.perf_counter() - t0
            return out
        return wrapper

    @contextlib.contextmanager
    def installed(self):
        from hfs.pipeline.model import frames
        from hfs.pipeline.model.teachers.base import Teacher

        decode, encode = frames.decode_jpegs, Teacher.encode_batch
        frames.decode_jpegs = self._timed("decode", decode)
        Teacher.encode_batch = self._timed("preprocess", encode)
        try:
            yield self
        finally:
            frames.decode_jpegs, Teacher.encode_batch = decode, encode


# --- the CPU rows: the real loop --------------------------------------------------------------------


def loop_row(cache: Path, manifest: Path, workers: int, steps: int, warmup: int = 2) -> dict:
    """Run ``hfs train`` for ``steps`` steps with ``workers`` DataLoader workers; medians after warm-up."""
    from hfs.stages.train import run

    out = WORK / f"run_w{workers}"
    shutil.rmtree(out, ignore_errors=True)
    work = StepWork()
    t0 = time.perf_counter()
    with work.installed():
        status = run(cache=cache, data=[manifest], out=out, preset="tiny", max_steps=steps, progress=False,
                     device="cpu", overrides=["selection.k=16", "train.batch_size=4", "train.micro_batch_size=2",
                                              f"train.num_workers={workers}", f"train.checkpoint_every={steps}"])
    wall = time.perf_counter() - t0
    if status != 0:
        raise RuntimeError(f"hfs train exited with {status}")
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()][warmup:]
    step_s = sum(m["step_s"] for m in lines)
    # decode/preprocess were summed over every step: scale by the timed steps' share of all steps
    share = len(lines) / steps
    decode, prep = work.seconds["decode"] * share, work.seconds["preprocess"] * share
    wait = sum(m["data_wait_frac"] * m["step_s"] for m in lines)
    return {
        "workers": workers, "steps": steps, "timed_steps": len(lines), "batch": 4, "frames": 128, "k_sel": 16,
        "samples_per_s": statistics.median(m["samples_per_s"] for m in lines),
        "step_s": statistics.median(m["step_s"] for m in lines),
        "data_wait_frac": wait / step_s, "decode_frac": decode / step_s, "preprocess_frac": prep / step_s,
        "outside_compute_frac": (wait + decode + prep) / step_s, "wall_s": wall,
    }


def preprocessing_comparison(frames: list[bytes], kind: str, repeats: int) -> dict:
    """The teacher input for 16 frames with the published processors' settings (Qwen2.5-VL:
    28-px merge windows up to 1280 of them; InternVL3: 448-px tiles): the tensor path the step
    uses vs PIL decoding + the HF processor. The models are on the meta device (not run)."""
    import io

    import bench_model as bm
    from PIL import Image

    from hfs.pipeline.model.frames import decode_jpegs

    teacher = bm.build_real(kind, "meta", torch.bfloat16).teacher
    prompt = teacher.build_prompt(len(frames), QUESTION, OPTIONS, list(range(len(frames))))

    def tensor_path():
        teacher.encode_sample(prompt, decode_jpegs(frames))

    def hf_path():
        images = [Image.open(io.BytesIO(f)).convert("RGB") for f in frames]
        teacher.processor(text=[prompt], images=images, return_tensors="pt")

    out = {"teacher": kind, "frames": len(frames)}
    for name, fn in (("tensor_s", tensor_path), ("hf_processor_s", hf_path)):
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        out[name] = statistics.median(times)
    out["speedup"] = out["hf_processor_s"] / out["tensor_s"]
    return out


# --- the GPU rows: one optimiser step at paper sizes ------------------------------------------------


def real_loader(cache: Path, manifest: Path, B: int, steps: int, workers: int):
    """Micro-batches of ``B`` questions for ``steps`` steps, read as ``hfs train`` reads them:
    ``QADataset`` over the cache (features and the JPEG bytes of all N frames) and ``collate``,
    in ``workers`` DataLoader worker processes."""
    from hfs.cache import FeatureCache
    from hfs.pipeline.train.data import QADataset, collate, training_samples

    with FeatureCache(cache) as fc:
        samples, _ = training_samples([manifest], fc)
    n = samples.num_rows
    batches = [[(s * B + j) % n for j in range(B)] for s in range(steps)]
    return torch.utils.data.DataLoader(QADataset(samples, cache), batch_sampler=batches, collate_fn=collate,
                                       num_workers=workers, prefetch_factor=2 if workers else None)


def time_steps(model, trainable, optimizer, loader, device: str) -> dict:
    """One optimiser step per micro-batch of ``loader`` (the first a warm-up): median step
    time, the data wait inside it (waiting on the DataLoader, as ``hfs train`` measures it),
    and the peak memory (CUDA: ``max_memory_allocated``; CPU: resident set above the start)."""
    import bench_model as bm

    cuda = device.startswith("cuda")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()
    steps, waits = [], []
    with contextlib.ExitStack() as stack:
        rss = None if cuda else stack.enter_context(bm._RSSPeak())
        stack.callback(optimizer.zero_grad, set_to_none=True)  # also after running out of memory
        for i, tb in enumerate(_timed_iter(loader, waits)):
            if i == 1 and cuda:
                torch.cuda.reset_peak_memory_stats()  # the warm-up step's allocator growth left out
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                terms, _ = model(tb.batch, step=0, steps_per_epoch=100, generator=torch.Generator().manual_seed(i))
            terms.total.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            if cuda:
                torch.cuda.synchronize()
            steps.append(time.perf_counter() - waits[-1][0])
    peak = torch.cuda.max_memory_allocated() if cuda else rss.extra
    timed = list(zip(steps, (w for _, w in waits)))
    timed = timed[1:] or timed  # the first step is warm-up
    return {"step_s": statistics.median(s for s, _ in timed), "data_wait_s": statistics.median(w for _, w in timed),
            "data_wait_frac": sum(w for _, w in timed) / sum(s for s, _ in timed), "peak_gib": peak / 2**30,
            "timed_steps": len(timed), "step_s_all": steps}


def _timed_iter(loader, waits: list):
    """``loader``'s items; appends (start, seconds waited) for each to ``waits``: the step's
    clock starts when the loop asks for its batch."""
    it = iter(loader)
    while True:
        t0 = time.perf_counter()
        try:
            item = next(it)
        except StopIteration:
            return
        waits.append((t0, time.perf_counter() - t0))
        yield item


def real_rows(args) -> list[dict]:
    """One row per (teacher, activation checkpointing, micro-batch); a setting that runs out of
    memory is a row with ``oom`` and the next setting runs."""
    import gc

    import bench_model as bm

    rows = []
    device = "meta" if args.dry_run else args.device
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    w, h = args.frame_size
    if not args.dry_run:
        cache, manifest = make_cache(args.work / f"data_real_{max(args.batch_sizes)}_{w}x{h}",
                                     max(4, max(args.batch_sizes)), 128, (w, h))
    for kind in args.teachers:
        model = bm.build_tiny(kind, device) if args.tiny else bm.build_real(kind, device, dtype)
        model.train()
        params = bm.param_counts(model)
        trainable = [p for ps in model.trainable_parameters().values() for p in ps]
        for p in trainable:  # as HFSModel.build leaves them with peft >= 0.19: float32
            p.data = p.data.float()
        optimizer = None if args.dry_run else torch.optim.AdamW(trainable, lr=1e-5, weight_decay=0.01)
        for checkpointing in args.checkpointing:
            model.set_gradient_checkpointing(checkpointing)
            for B in args.batch_sizes:
                batch = bm.make_batch(B, 128, (w, h))
                tokens = bm.token_counts(model, batch)
                flops = bm.step_flops(params, tokens, "train")
                row = {"teacher": kind, "gradient_checkpointing": checkpointing, "micro_batch": B, "frames": 128,
                       "frame_size": [w, h], "k_sel": model.cfg.selection.k,
                       **{f"tokens_{k}": v for k, v in tokens.items()}, "tflop": flops / 1e12}
                if not args.dry_run:
                    work = StepWork(cuda=args.device.startswith("cuda"))
                    loader = real_loader(cache, manifest, B, args.repeats + 1, args.loader_workers)
                    failure = None
                    try:
                        with work.installed():
                            row.update(time_steps(model, trainable, optimizer, loader, args.device))
                    except Exception as err:  # noqa: BLE001 - only running out of memory is a row
                        if not is_oom(err):
                            raise
                        failure = str(err).splitlines()[0] if str(err) else type(err).__name__
                    if failure is not None:  # outside the handler: the traceback's tensors are gone
                        log.warning("%s, checkpointing %s, B=%d: out of memory (%s)", kind,
                                    "on" if checkpointing else "off", B, failure)
                        row.update(oom=True, error=failure)
                        optimizer.zero_grad(set_to_none=True)
                    else:
                        calls = args.repeats + 1
                        seconds = row["step_s"]
                        row.update(mfu=flops / seconds / bm.PEAK_FLOPS if args.device.startswith("cuda") else None,
                                   decode_frac=work.seconds["decode"] / calls / seconds,
                                   preprocess_frac=work.seconds["preprocess"] / calls / seconds)
                    del loader
                    gc.collect()
                    if args.device.startswith("cuda"):
                        torch.cuda.empty_cache()
                rows.append(row)
                log.info("%s", row)
        model = optimizer = None  # free this teacher before the next one is built
        gc.collect()
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    return rows


# --- the mid-size CPU rows: activation checkpointing off and on --------------------------------------

MID_TEXT = dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=8, num_attention_heads=8,
                num_key_value_heads=2)
"""The language models of the ``--mid`` pair (student and teacher alike); head dim 64."""
MID_VISION = dict(depth=2, hidden_size=128, intermediate_size=256, num_heads=2, patch_size=14, spatial_merge_size=2,
                  temporal_patch_size=2, window_size=112, fullatt_block_indexes=[1], tokens_per_second=2)
MID_MAX_PIXELS = 336 * 196
"""The teacher processor's pixel bound: a 448×252 frame becomes 336×168, 12×6 = 72 tokens."""


def build_mid_models(root: Path) -> tuple[Path, Path]:
    """The ``--mid`` student and teacher, random (seeded) weights, saved under ``root`` with the
    tiny tokenizer and a Qwen2.5-VL processor; reused when already there."""
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2Config, Qwen2ForCausalLM, Qwen2VLImageProcessor, Qwen2VLVideoProcessor)

    from hfs.pipeline.model import tiny

    student_dir, teacher_dir = root / "mid-student", root / "mid-qwen2_5_vl"
    if (root / "done").exists():
        return student_dir, teacher_dir
    shutil.rmtree(root, ignore_errors=True)
    tokenizer = tiny.build_tiny_tokenizer()
    text = {**tiny._text_config_kwargs(len(tokenizer), tiny._token_ids(tokenizer)), **MID_TEXT}
    rope = {"rope_type": "default", "rope_theta": 1e6}
    student = tiny._seeded_model(Qwen2ForCausalLM, Qwen2Config(**text, tie_word_embeddings=True, rope_parameters=rope))
    tiny._save_quietly(student, student_dir)
    tokenizer.save_pretrained(student_dir)
    ids = tiny._token_ids(tokenizer)
    head_dim = MID_TEXT["hidden_size"] // MID_TEXT["num_attention_heads"]
    teacher_cfg = Qwen2_5_VLConfig(
        text_config={**text, "rope_parameters": {**rope, "mrope_section": [head_dim // 8, 3 * head_dim // 16,
                                                                           3 * head_dim // 16]}},
        vision_config={**MID_VISION, "out_hidden_size": MID_TEXT["hidden_size"]},
        image_token_id=ids[tiny.IMAGE_PAD], video_token_id=ids[tiny.VIDEO_PAD],
        vision_start_token_id=ids[tiny.VISION_START], vision_end_token_id=ids[tiny.VISION_END],
        tie_word_embeddings=False,
    )
    tiny._save_quietly(tiny._seeded_model(Qwen2_5_VLForConditionalGeneration, teacher_cfg), teacher_dir)
    common = dict(patch_size=14, temporal_patch_size=2, merge_size=2, min_pixels=56 * 56, max_pixels=MID_MAX_PIXELS)
    Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(**common), tokenizer=tokenizer,
                        video_processor=Qwen2VLVideoProcessor(**common),
                        chat_template=tiny.QWEN_CHAT_TEMPLATE).save_pretrained(teacher_dir)
    (root / "done").touch()
    return student_dir, teacher_dir


def _rss_mib() -> float:
    """This process's resident set now, MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def mid_child(args) -> None:
    """One ``--mid`` setting in this (fresh) process: the loop, then its peak memory and step times."""
    import resource

    from hfs.pipeline.model.hfs_model import HFSModel
    from hfs.stages.train import run

    root = Path(args.mid_root)
    student_dir, teacher_dir = root / "models" / "mid-student", root / "models" / "mid-qwen2_5_vl"
    after_build = {}
    build = HFSModel.build

    def timed_build(*a, **k):
        model = build(*a, **k)
        after_build["rss_mib"] = _rss_mib()
        after_build["parameters"] = sum(p.numel() for p in model.parameters())
        return model

    HFSModel.build = timed_build
    out = root / f"run_{args.mid_child}"
    shutil.rmtree(out, ignore_errors=True)
    status = run(cache=root / "data" / "cache", data=[root / "data" / "train.jsonl"], out=out, progress=False,
                 device="cpu", max_steps=args.steps, overrides=[
                     f"student.name_or_path={student_dir}", f"teacher.name_or_path={teacher_dir}",
                     "teacher.kind=qwen2_5_vl", "selection.k=16", "train.batch_size=1", "train.micro_batch_size=1",
                     "train.num_workers=0", "train.precision=fp32", f"train.checkpoint_every={args.steps}",
                     f"train.gradient_checkpointing={args.mid_child == 'on'}"])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    if status != 0:
        raise RuntimeError(f"hfs train exited with {status}")
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    Path(args.json).write_text(json.dumps({
        "gradient_checkpointing": args.mid_child == "on", "steps": args.steps, "threads": torch.get_num_threads(),
        "parameters": after_build["parameters"], "rss_after_build_mib": after_build["rss_mib"],
        "peak_rss_mib": peak, "peak_above_model_mib": peak - after_build["rss_mib"],
        "step_s": statistics.median(m["step_s"] for m in lines[1:]), "step_s_all": [m["step_s"] for m in lines],
        "total": [m["total"] for m in lines], "grad_norm": [m["grad_norm"] for m in lines],
    }))


def mid_rows(args) -> list[dict]:
    """``--mid``: checkpointing off, then on, each in its own process."""
    import subprocess

    root = WORK / "mid"
    build_mid_models(root / "models")
    make_cache(root / "data", 4, 128, (448, 252))
    rows = []
    for setting in ("off", "on"):
        out = root / f"row_{setting}.json"
        out.unlink(missing_ok=True)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--mid-child", setting, "--mid-root", str(root),
               "--steps", str(args.steps), "--json", str(out)]
        t0 = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"--mid {setting} failed:\n{res.stderr[-3000:]}")
        rows.append({**json.loads(out.read_text()), "wall_s": time.perf_counter() - t0})
        log.info("%s", rows[-1])
    return rows


# --- tables ------------------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def print_cpu(rows: list[dict], prep: list[dict], title: str) -> None:
    print(f"\n### {title}\n")
    print("| workers | samples/s | step s | data wait | JPEG decode | preprocess | outside model compute |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['workers']} | {r['samples_per_s']:.2f} | {r['step_s']:.3f} | {_pct(r['data_wait_frac'])} | "
              f"{_pct(r['decode_frac'])} | {_pct(r['preprocess_frac'])} | {_pct(r['outside_compute_frac'])} |")
    if prep:
        print("\n| teacher | frames | tensor path ms | PIL + HF processor ms | speed-up |")
        print("|---|---|---|---|---|")
        for p in prep:
            print(f"| {p['teacher']} | {p['frames']} | {1e3 * p['tensor_s']:.1f} | {1e3 * p['hf_processor_s']:.1f} | "
                  f"{p['speedup']:.1f}x |")
    best = min(r["data_wait_frac"] for r in rows) if rows else None
    if best is not None:
        print(f"\ngoal data wait < 5 % of the step: {'met' if best < 0.05 else 'NOT met'} (best {_pct(best)})")


def print_real(rows: list[dict], title: str) -> None:
    print(f"\n### {title}\n")
    print("| teacher | checkpointing | B | teacher tok | TFLOP | step ms | data wait | peak GiB | MFU | decode | "
          "preprocess |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        timed = "step_s" in r
        cells = [r["teacher"], "on" if r["gradient_checkpointing"] else "off", str(r["micro_batch"]),
                 str(r["tokens_teacher_lm"]), f"{r['tflop']:.3g}",
                 f"{1e3 * r['step_s']:.0f}" if timed else ("out of memory" if r.get("oom") else "-"),
                 _pct(r["data_wait_frac"]) if timed else "-", f"{r['peak_gib']:.1f}" if timed else "-",
                 _pct(r["mfu"]) if timed and r["mfu"] is not None else "-",
                 _pct(r["decode_frac"]) if timed else "-", _pct(r["preprocess_frac"]) if timed else "-"]
        print("| " + " | ".join(cells) + " |")


def print_mid(rows: list[dict], title: str) -> None:
    print(f"\n### {title}\n")
    print("| activation checkpointing | peak RSS MiB | above the built models MiB | step s | loss, step 1 |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {'on' if r['gradient_checkpointing'] else 'off'} | {r['peak_rss_mib']:.0f} | "
              f"{r['peak_above_model_mib']:.0f} | {r['step_s']:.2f} | {r['total'][0]:.6f} |")
    if len(rows) == 2:
        off, on = rows
        print(f"\ncheckpointing: peak above the models x{on['peak_above_model_mib'] / off['peak_above_model_mib']:.2f}, "
              f"step time x{on['step_s'] / off['step_s']:.2f}; same losses: {on['total'] == off['total']}")


def bm_peak_flops() -> float:
    """The peak the MFU column divides by (bench_model.py's)."""
    import bench_model as bm

    return bm.PEAK_FLOPS


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", action="store_true", help="paper sizes on a GPU (random bf16 weights), one optimiser step")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda[:i] with --real")
    ap.add_argument("--dry-run", action="store_true", help="--real: build on the meta device, count tokens and FLOPs")
    ap.add_argument("--teachers", nargs="+", default=["qwen2_5_vl", "internvl"], choices=["qwen2_5_vl", "internvl"])
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 2, 4], help="--real: micro-batch sizes")
    ap.add_argument("--checkpointing", choices=["off", "on", "both"], default="both",
                    help="--real: activation checkpointing (train.gradient_checkpointing) off, on, or both in turn")
    ap.add_argument("--loader-workers", type=int, default=2,
                    help="--real: DataLoader workers feeding the steps (train.num_workers' default)")
    ap.add_argument("--frame-size", nargs=2, type=int, default=[448, 252], metavar=("W", "H"),
                    help="--real: teacher JPEG size in the synthetic cache (the cache's default longest side is 448)")
    ap.add_argument("--tiny", action="store_true", help="--real: the tiny preset's models instead of the paper's "
                                                        "(the --real code path on the CPU)")
    ap.add_argument("--work", type=Path, default=WORK, help="--real: folder for the synthetic cache")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats (after one warm-up)")
    ap.add_argument("--steps", type=int, default=16, help="CPU: optimiser steps per row (2 of them warm-up)")
    ap.add_argument("--workers", nargs="+", type=int, default=[0, 2], help="CPU: DataLoader workers, one row each")
    ap.add_argument("--videos", type=int, default=24, help="CPU: videos in the synthetic cache")
    ap.add_argument("--quick", action="store_true", help="CPU: 6 steps, 8 videos, workers 2 only")
    ap.add_argument("--json", type=Path, default=None, help="write the result here")
    ap.add_argument("--mid", action="store_true", help="CPU: a mid-size random pair, activation checkpointing off "
                                                      "and on (peak memory, step time), --steps 3 unless given")
    ap.add_argument("--mid-child", choices=["off", "on"], help=argparse.SUPPRESS)
    ap.add_argument("--mid-root", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.mid_child:
        mid_child(args)
        return {"mid_child": args.mid_child}
    if args.mid:
        if "--steps" not in (argv if argv is not None else sys.argv):
            args.steps = 3
        result = {"bench": "train_mid", "device": "cpu", "threads": torch.get_num_threads(),
                  "torch": torch.__version__, "text_model": MID_TEXT, "vision": MID_VISION,
                  "frames": 128, "k_sel": 16, "frame_size": [448, 252], "micro_batch": 1}
        result["rows"] = rows = mid_rows(args)
        write_json(args.json, result)
        print_mid(rows, f"bench_train --mid (CPU, {torch.get_num_threads()} threads)")
        return result
    if args.real and not args.dry_run and not args.device.startswith("cuda") and not args.tiny:
        ap.error("--real needs --device cuda (the 7-8B teachers do not fit a CPU run); use --dry-run to count, "
                 "or --tiny for the code path on the CPU")
    args.checkpointing = {"off": [False], "on": [True], "both": [False, True]}[args.checkpointing]
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("--device cuda but torch sees no GPU")
    result: dict = {"bench": "train", "real": args.real, "dry_run": args.dry_run, "device": args.device}
    if args.real:
        result["device_name"] = (torch.cuda.get_device_name(0) if args.device.startswith("cuda") else
                                 "meta (dry run)" if args.dry_run else f"cpu, {torch.get_num_threads()} threads")
        result.update(models="tiny" if args.tiny else "paper", peak_flops=bm_peak_flops(),
                      loader_workers=args.loader_workers, repeats=args.repeats)
        result["rows"] = rows = real_rows(args)
        write_json(args.json, result)
        print_real(rows, f"bench_train --real ({result['device_name']})")
        return result
    if args.quick:
        args.steps, args.videos, args.workers = 6, 8, [2]
    cache, manifest = make_cache(WORK / f"data_{args.videos}", args.videos, 128, (448, 252))
    result["rows"] = rows = []
    for workers in args.workers:
        rows.append(loop_row(cache, manifest, workers, args.steps))
        write_json(args.json, result)
    from hfs.cache import FeatureCache

    with FeatureCache(cache) as fc:
        frames = fc.frames(fc.video_ids()[0], range(0, 128, 8))
    result["preprocessing"] = [preprocessing_comparison(frames, kind, args.repeats) for kind in args.teachers]
    write_json(args.json, result)
    print_cpu(rows, result["preprocessing"], f"bench_train (tiny preset, CPU, {torch.get_num_threads()} threads)")
    return result


if __name__ == "__main__":
    sys.exit(main() and 0)
