"""Is the query-aware task's fitted teacher a good critic? Its answer CE by what it is shown.

    python benchmarks/probe_query_critic.py --work benchmarks/_work/ablations_query [--teacher DIR]
        [--fit-steps 1200 --no-evidence-share 0.25 --out DIR] [--json out.json]

``--work`` is a folder ``bench_ablations.py --task query`` prepared (task, cache). The teacher is
``--teacher`` (default: the folder's ``teacher/``), or, with ``--fit-steps``, a new fit of the
demo's (`stages.demo.TEACHER_FIT["query"]`) with that many steps and ``--no-evidence-share``,
written to ``--out``. On each of the 48 training questions, k = 2 cached frames:

* **by kind** (3 draws each): two frames of the named pair, two of one distractor pair, two quiet
  frames, one named + one distractor, one named + one quiet. Mean CE and the share answered
  right (p > ½). The score-function estimator learns from the differences: a distractor pair
  that costs more than quiet frames teaches a student that is not yet reading the question to
  avoid every event (benchmarks/RESULTS.md, 2026-12-08).
* **by pair** (2 draws of two frames per pair, averaged): where the named pair ranks among the
  video's five pairs by CE; rank 0 on every question means the reward points at the named pair.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

from _common import write_json

KINDS = ("named", "distractor", "quiet", "named+distractor", "named+quiet")


def fill(picked, quiet, k: int, rng: random.Random) -> list[int]:
    """``picked`` frames (duplicates dropped, at most k) topped up with quiet ones to k, in time order."""
    picked = list(dict.fromkeys(picked))[:k]
    return sorted(picked + rng.sample([q for q in quiet if q not in picked], k - len(picked)))


def frame_sets(named, pairs, quiet, k: int, rng: random.Random, kinds=KINDS, draws: int = 3):
    """``draws`` × ``kinds`` sets of k frames of one question, as (kind, frames): each draw picks one
    distractor pair of ``pairs`` (lists of grid frames), then per kind (`KINDS`) frames of the named
    pair, of that pair, none (quiet), or one of each, topped up with ``quiet`` frames (`fill`)."""
    pick = {
        "named": lambda pair: rng.sample(named, min(len(named), k)),
        "distractor": lambda pair: rng.sample(pair, min(len(pair), k)),
        "quiet": lambda pair: [],
        "named+distractor": lambda pair: [rng.choice(named), rng.choice(pair)],
        "named+quiet": lambda pair: [rng.choice(named)],
    }
    sets = []
    for _ in range(draws):
        pair = rng.choice(pairs)
        sets += [(kind, fill(pick[kind](pair), quiet, k, rng)) for kind in kinds]
    return sets


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="a folder bench_ablations.py --task query prepared")
    ap.add_argument("--teacher", type=Path, default=None, help="teacher folder (default: WORK/teacher)")
    ap.add_argument("--fit-steps", type=int, default=None, help="fit a new teacher with this many steps instead")
    ap.add_argument("--no-evidence-share", type=float, default=None,
                    help="no_evidence_share of the new fit (default: the demo's)")
    ap.add_argument("--out", type=Path, default=None, help="where the new fit is written (with --fit-steps)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch

    from hfs.cache import FeatureCache
    from hfs.manifests import read_manifests
    from hfs.pipeline.demo.teacher import fit_teacher
    from hfs.pipeline.evaluation.recall import read_ground_truth
    from hfs.pipeline.model.frames import decode_jpegs
    from hfs.pipeline.model.losses import answer_ce
    from hfs.pipeline.model.teachers import load_teacher
    from hfs.stages.demo import TEACHER_FIT, task_config

    result: dict = {"bench": "probe_query_critic", "work": str(args.work)}
    if args.fit_steps:
        if args.out is None:
            ap.error("--fit-steps needs --out")
        fit = dict(TEACHER_FIT["query"])
        if args.no_evidence_share is not None:
            fit["no_evidence_share"] = args.no_evidence_share
        t0 = time.perf_counter()
        teacher_dir = fit_teacher(task_config("query"), args.out, steps=args.fit_steps, seed=0, **fit)
        result["fit"] = {"steps": args.fit_steps, **{k: v for k, v in fit.items() if k != "k_schedule"},
                         "wall_s": round(time.perf_counter() - t0, 1)}
    else:
        teacher_dir = args.teacher or args.work / "teacher"
    result["teacher"] = str(teacher_dir)
    teacher = load_teacher("qwen2_5_vl", str(teacher_dir), lora_r=0).eval()
    cache = FeatureCache(args.work / "cache")
    truth = read_ground_truth(args.work / "task/train/ground_truth.jsonl")
    samples = [s for s in read_manifests([str(args.work / "task/train/train.json")],
                                         video_root=str(args.work / "task/train")).samples if s.sample_id in truth]
    k, rng = 2, random.Random(0)
    ce: dict[str, list[float]] = {kind: [] for kind in KINDS}
    ranks: list[int] = []
    margins: list[float] = []

    def critic_ce(sample, index_sets) -> list[float]:
        stamps = cache.timestamps(sample.video_id)
        frames = [decode_jpegs(cache.frames(sample.video_id, idx)) for idx in index_sets]
        n = len(index_sets)
        z = teacher(frames, torch.ones(n, k), [sample.question] * n, [list(sample.options)] * n,
                    [[float(stamps[i]) for i in idx] for idx in index_sets]).option_logits
        return answer_ce(z, torch.full((n,), sample.answer_index)).tolist()

    with torch.no_grad():
        for s in samples:
            t = truth[s.sample_id]
            named = list(t.grid_hits)
            pairs = list({tuple(e.grid_hits): list(e.grid_hits) for e in t.distractors if e.grid_hits}.values())
            busy = set(named) | {j for p in pairs for j in p}
            quiet = [j for j in range(t.grid_n) if j not in busy]

            sets = frame_sets(named, pairs, quiet, k, rng)
            for (kind, _), value in zip(sets, critic_ce(s, [idx for _, idx in sets])):
                ce[kind].append(value)
            by_pair = [named] + pairs
            draws = [fill(rng.sample(p, min(len(p), k)), quiet, k, rng) for p in by_pair for _ in range(2)]
            values = critic_ce(s, draws)
            per_pair = [statistics.mean(values[2 * i: 2 * i + 2]) for i in range(len(by_pair))]
            ranks.append(sorted(per_pair).index(per_pair[0]))
            margins.append(min(per_pair[1:]) - per_pair[0])
    result["questions"] = len(samples)
    result["mean_ce"] = {kind: round(statistics.mean(v), 3) for kind, v in ce.items()}
    result["answered_right"] = {kind: round(sum(c < 0.6931 for c in v) / len(v), 3) for kind, v in ce.items()}
    result["named_pair_rank"] = {str(r): ranks.count(r) for r in sorted(set(ranks))}
    result["named_pair_margin_mean"] = round(statistics.mean(margins), 3)
    result["named_pair_margin_min"] = round(min(margins), 3)
    print(f"teacher {teacher_dir}: {len(samples)} training questions, k = {k}")
    for kind in KINDS:
        print(f"  {kind:<18} CE {result['mean_ce'][kind]:.2f}   answered right {result['answered_right'][kind]:.2f}")
    print(f"  named pair's rank among the video's pairs by CE: {result['named_pair_rank']} "
          f"(margin to the cheapest other pair: mean {result['named_pair_margin_mean']:.2f}, "
          f"min {result['named_pair_margin_min']:.2f})")
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    sys.exit(main() and 0)
