"""Does the demo's stand-in teacher answer videos it never saw, shown the right frames?

    OMP_NUM_THREADS=1 python benchmarks/bench_teacher.py [--steps 1000] [--task single|query] [--json out.json]

Makes the demo's test split (24 held-out videos, seed 0) and extracts it (tiny CLIP), fits the
tiny teacher as ``hfs demo`` does (``fit_teacher``: a stream of new questions of seed + 1000,
k growing 1 → 4 → 8), then asks it every held-out question through ``Teacher.forward`` shown
the **oracle** frames (``oracle_indices``: the answer-bearing grid frames filled up to k with
segment centres) and, for contrast, uniform and random frames; each question as listed and in
``--shuffles`` random option orders. Accuracy per question kind too. Goal (issue 22): oracle
accuracy >= 0.8 on the held-out videos.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from _common import machine, write_json

WORK = Path(__file__).resolve().parent / "_work" / "teacher"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--test-videos", type=int, default=24)
    ap.add_argument("--steps", type=int, default=1000, help="teacher fitting steps")
    ap.add_argument("--task", choices=["single", "query"], default="single", help="the demo's task (task_config)")
    ap.add_argument("--shuffle-options", action="store_true", help="fit and test with options in a random order")
    ap.add_argument("--shuffles", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=WORK)
    ap.add_argument("--keep", action="store_true", help="reuse the work folder (videos, cache, teacher)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    import dataclasses
    import random

    from hfs.cache import FeatureCache
    from hfs.manifests.benchmarks import get_benchmark
    from hfs.pipeline.demo.task import make_task
    from hfs.pipeline.demo.teacher import fit_teacher, teacher_accuracy
    from hfs.pipeline.evaluation.recall import oracle_indices, read_ground_truth
    from hfs.pipeline.evaluation.selectors.basic import uniform_indices
    from hfs.pipeline.extract.config import ExtractConfig
    from hfs.pipeline.extract.run import extract
    from hfs.stages.demo import TEACHER_SEED_OFFSET, task_config

    if not args.keep:
        shutil.rmtree(args.work, ignore_errors=True)
    config = dataclasses.replace(task_config(args.task), shuffle_options=args.shuffle_options)
    timings = {}
    t = time.perf_counter()
    test_task = make_task(args.work / "task", n_train=0, n_test=args.test_videos, seed=args.seed, config=config)
    timings["task"] = time.perf_counter() - t
    t = time.perf_counter()
    test = get_benchmark("nextqa").read(test_task.test_dir)
    extract_config = ExtractConfig(preset="tiny", pretrained="none")
    extract(test.videos, args.work / "cache", extract_config, workers=0, progress=False)
    timings["extract"] = time.perf_counter() - t
    cache = FeatureCache(args.work / "cache")
    t = time.perf_counter()
    teacher_dir = args.work / "teacher"
    if not (teacher_dir / "config.json").is_file():
        fit_teacher(config, teacher_dir, steps=args.steps, seed=args.seed + TEACHER_SEED_OFFSET,
                    frame_longest=extract_config.teacher_frame_size, jpeg_quality=extract_config.jpeg_quality)
    timings["fit_teacher"] = time.perf_counter() - t
    truth = read_ground_truth(test_task.test_truth)
    rng = random.Random(args.seed)
    t = time.perf_counter()
    views = {
        "oracle_k16": lambda s: oracle_indices(truth[s.sample_id], 16),
        "uniform_k16": lambda s: uniform_indices(len(cache.timestamps(s.video_id)), 16),
        "random_k16": lambda s: rng.sample(range(len(cache.timestamps(s.video_id))), 16),
    }
    measured = {name: teacher_accuracy(teacher_dir, cache, test.samples, select, shuffles=args.shuffles,
                                       seed=args.seed) for name, select in views.items()}
    timings["measure"] = time.perf_counter() - t
    kind_of = {s.sample_id: truth[s.sample_id].kind for s in test.samples}

    def by_kind(rows):
        kinds = sorted({kind_of[r["sample_id"]] for r in rows})
        return {k: sum(r["answer"] == r["predicted"] for r in rows if kind_of[r["sample_id"]] == k)
                / sum(kind_of[r["sample_id"]] == k for r in rows) for k in kinds}

    result = {"bench": "teacher", "machine": machine(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
              "settings": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                           "config": config.as_json()},
              "timings_s": {k: round(v, 1) for k, v in timings.items()},
              "accuracy": {name: {"questions": m["questions"], "as_listed": m["accuracy"],
                                  "shuffled": m["accuracy_shuffled"],
                                  "as_listed_by_kind": by_kind([r for r in m["predictions"] if not r["shuffled"]])}
                           for name, m in measured.items()},
              "predictions": {name: m["predictions"] for name, m in measured.items()}}
    write_json(args.json, result)
    print(f"\n### bench_teacher ({args.task} task, {args.steps} steps, options "
          f"{'shuffled' if args.shuffle_options else 'in a fixed order'})\n")
    print("| frames shown | questions | accuracy (as listed) | by kind | accuracy (options reshuffled) |")
    print("|---|---:|---:|---|---:|")
    for name, a in result["accuracy"].items():
        kinds = ", ".join(f"{k} {v:.2f}" for k, v in a["as_listed_by_kind"].items())
        shuffled = "-" if a["shuffled"] is None else f"{a['shuffled']:.2f}"
        print(f"| {name} | {a['questions']} | {a['as_listed']:.2f} | {kinds} | {shuffled} |")
    print("timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in result["timings_s"].items()))
    return result


if __name__ == "__main__":
    sys.exit(main() and 0)
