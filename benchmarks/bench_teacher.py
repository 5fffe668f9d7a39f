"""Can the demo's stand-in teacher read shuffled options on videos it never saw?

    OMP_NUM_THREADS=1 python benchmarks/bench_teacher.py [--steps 1500] [--kinds colour shape] [--json out.json]

Makes the demo's test split (``--test-videos`` held-out videos, seed 0) and extracts it (tiny
CLIP), fits the tiny teacher as ``hfs demo`` does (``fit_teacher``: a stream of new videos of
another seed, frames rendered, k growing along ``K_SCHEDULE``, answers by ``--scoring``), then
asks it every held-out question shown the **oracle** frames (``oracle_indices``: the
answer-bearing grid frames filled up to k with segment centres) and, for contrast, uniform
frames; each question as listed and in ``--shuffles`` more random option orders. Goal (issue
22): oracle accuracy >= 0.8 on the held-out videos.
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


def by_kind(predictions, truth) -> dict:
    """Accuracy per question kind over every ask (as listed and reshuffled)."""
    right, total = {}, {}
    for p in predictions:
        kind = truth[p["sample_id"]].kind
        total[kind] = total.get(kind, 0) + 1
        right[kind] = right.get(kind, 0) + (p["predicted"] == p["answer"])
    return {kind: round(right[kind] / total[kind], 3) for kind in sorted(total)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--test-videos", type=int, default=24)
    ap.add_argument("--steps", type=int, default=1500, help="fitting steps")
    ap.add_argument("--batch", type=int, default=16, help="new videos per fitting step")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--scoring", default="option_text", help="answer_scoring of the fitted teacher")
    ap.add_argument("--kinds", nargs="+", default=["colour", "shape"])
    ap.add_argument("--n-events", type=int, default=None, help="events per query-kind video (TaskConfig)")
    ap.add_argument("--shuffles", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=WORK)
    ap.add_argument("--keep", action="store_true", help="reuse the work folder (videos, cache, teacher)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    from hfs.cache import FeatureCache
    from hfs.manifests.benchmarks import get_benchmark
    from hfs.pipeline.demo.task import TaskConfig, make_task
    from hfs.pipeline.demo.teacher import fit_teacher, teacher_accuracy
    from hfs.pipeline.evaluation.recall import oracle_indices, read_ground_truth
    from hfs.pipeline.evaluation.selectors.basic import uniform_indices
    from hfs.pipeline.extract.config import ExtractConfig
    from hfs.pipeline.extract.run import extract

    if not args.keep:
        shutil.rmtree(args.work, ignore_errors=True)
    extra = {} if args.n_events is None else {"n_events": args.n_events}
    config = TaskConfig(kinds=tuple(args.kinds), shuffle_options=True, **extra)
    timings = {}
    t = time.perf_counter()
    test_task = make_task(args.work / "task", n_train=0, n_test=args.test_videos, seed=args.seed, config=config)
    timings["task"] = time.perf_counter() - t
    t = time.perf_counter()
    test = get_benchmark("nextqa").read(test_task.test_dir)
    extract(test.videos, args.work / "cache", ExtractConfig(preset="tiny", pretrained="none"), workers=0,
            progress=False)
    timings["extract"] = time.perf_counter() - t
    cache = FeatureCache(args.work / "cache")
    t = time.perf_counter()
    teacher_dir = args.work / "teacher"
    if not (teacher_dir / "config.json").is_file():
        fit_teacher(config, teacher_dir, steps=args.steps, batch_size=args.batch, lr=args.lr,
                    answer_scoring=args.scoring, seed=args.seed)
    timings["fit_teacher"] = time.perf_counter() - t
    truth = read_ground_truth(test_task.test_truth)
    t = time.perf_counter()
    views = {
        "oracle_k16": lambda s: oracle_indices(truth[s.sample_id], 16),
        "oracle_k4": lambda s: oracle_indices(truth[s.sample_id], 4),
        "uniform_k16": lambda s: uniform_indices(len(cache.timestamps(s.video_id)), 16),
    }
    measured = {name: teacher_accuracy(teacher_dir, cache, test.samples, select, shuffles=args.shuffles,
                                       seed=args.seed) for name, select in views.items()}
    timings["measure"] = time.perf_counter() - t
    result = {"bench": "teacher", "machine": machine(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
              "settings": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                           "config": config.as_json()},
              "timings_s": {k: round(v, 1) for k, v in timings.items()},
              "accuracy": {name: {"questions": m["questions"], "as_listed": m["accuracy"],
                                  "shuffled": m["accuracy_shuffled"], "by_kind": by_kind(m["predictions"], truth)}
                           for name, m in measured.items()},
              "predictions": {name: m["predictions"] for name, m in measured.items()}}
    write_json(args.json, result)
    print(f"\n### bench_teacher ({args.steps} steps x {args.batch} new videos, answers by {args.scoring})\n")
    print("| frames shown | questions | accuracy (as listed) | accuracy (options reshuffled) | by kind (all asks) |")
    print("|---|---:|---:|---:|---|")
    for name, a in result["accuracy"].items():
        kinds = ", ".join(f"{k} {v:.2f}" for k, v in a["by_kind"].items())
        print(f"| {name} | {a['questions']} | {a['as_listed']:.2f} | {a['shuffled']:.2f} | {kinds} |")
    print("timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in result["timings_s"].items()))
    return result


if __name__ == "__main__":
    sys.exit(main() and 0)
