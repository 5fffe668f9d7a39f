"""What answering by the option's text costs against answering by letter (`Teacher.answer_scoring`).

    OMP_NUM_THREADS=1 python benchmarks/bench_teacher_scoring.py [--batch 16] [--k 16] [--repeats 5] [--json out.json]

One forward and backward (CE on the option scores, gradient to the gates) of the tiny
Qwen2.5-VL teacher on ``--batch`` questions of ``--k`` random 96x72 frames and 5 options, in
three settings measured in the same run, interleaved: ``letter`` (one pass, the letters'
logits), ``option_text`` (one prompt pass, the option texts on its cached keys and values: the
default path) and ``option_text_rows`` (one whole row per option: what runs under activation
checkpointing in training). Median seconds over ``--repeats`` after one warm-up each, and the
ratio to ``letter``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from _common import machine, write_json


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=16, help="questions per pass")
    ap.add_argument("--k", type=int, default=16, help="frames per question")
    ap.add_argument("--repeats", type=int, default=5, help="timed passes per setting (after one warm-up)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args(argv)

    import torch

    from hfs.pipeline.model.teachers import load_teacher

    teacher = load_teacher("qwen2_5_vl", "tiny-qwen2_5_vl", lora_r=0)
    generator = torch.Generator().manual_seed(0)
    frames = [torch.randint(0, 256, (args.k, 3, 72, 96), dtype=torch.uint8, generator=generator)
              for _ in range(args.batch)]
    questions = ["What colour is the shape that briefly appears?"] * args.batch
    options = [["red", "green", "blue", "yellow", "magenta"]] * args.batch
    times = [[float(i) for i in range(args.k)]] * args.batch
    answers = torch.zeros(args.batch, dtype=torch.long)
    settings = {"letter": ("letter", True), "option_text": ("option_text", True),
                "option_text_rows": ("option_text", False)}

    def step(name: str) -> float:
        scoring, shared = settings[name]
        teacher.answer_scoring = scoring
        teacher._can_share_the_prompt = lambda: shared  # this teacher object only
        gates = torch.ones(args.batch, args.k, requires_grad=True)
        start = time.perf_counter()
        out = teacher(frames, gates, questions, options, times)
        torch.nn.functional.cross_entropy(out.option_logits, answers).backward()
        return time.perf_counter() - start

    seconds = {name: [] for name in settings}
    for name in settings:
        step(name)  # warm-up
    for _ in range(args.repeats):
        for name in settings:  # interleaved, so drifting machine load hits all three alike
            seconds[name].append(step(name))
    median = {name: statistics.median(s) for name, s in seconds.items()}
    result = {"bench": "teacher_scoring", "machine": machine(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
              "settings": {**vars(args), "json": str(args.json)}, "seconds": seconds,
              "median_s": median, "ratio_to_letter": {n: m / median["letter"] for n, m in median.items()}}
    write_json(args.json, result)
    print(f"\n### bench_teacher_scoring (batch {args.batch}, k {args.k}, 5 options, forward + backward)\n")
    print("| setting | median s | × letter |")
    print("|---|---:|---:|")
    for name, m in median.items():
        print(f"| {name} | {m:.3f} | {result['ratio_to_letter'][name]:.2f} |")
    return result


if __name__ == "__main__":
    sys.exit(main() and 0)
