"""The demo teacher as a critic: on each training question of the ablations' task, its answer CE
on 6 random 16-frame sets without any answer-bearing frame and 6 with one (numpy seed 0), read
through the run's model (``benchmarks/_work/ablations/runs/full_model_s3``; the teacher is frozen,
so any run gives the same teacher). Prints the mean CEs, the per-question gap (miss − hit) and the
spread of the CE among misses: how much the score-function estimator's reward tells it.

    python benchmarks/probe_reward_gap.py [WORK [RUN]]   # after bench_ablations.py has prepared _work/ablations
"""
import statistics

import numpy as np
import torch

np.random.seed(0)
from pathlib import Path
from hfs.cache import FeatureCache
from hfs.pipeline.train.data import training_samples, QADataset, collate
from hfs.pipeline.evaluation.recall import read_ground_truth
from hfs.pipeline.model.hfs_model import HFSModel
from hfs.pipeline.train.checkpoint import run_model_dir
import sys

W = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/_work/ablations")
RUN = sys.argv[2] if len(sys.argv) > 2 else "full_model_s3"
task = W / "task"
truth = read_ground_truth(task / "train/ground_truth.jsonl")
cache = FeatureCache(W / "cache")
man = [task / "train/train.json"]
samples, _ = training_samples(man, cache, man[0].parent)
ds = QADataset(samples, W / "cache")
model = HFSModel.load(run_model_dir(W / "runs" / RUN), device="cpu").eval()
hit_ce, miss_ce, gaps, miss_sd = [], [], [], []
with torch.no_grad():
    for i in range(0, len(ds)):
        b = collate([ds[i]]).batch
        hits = list(truth[b.sample_ids[0]].grid_hits)
        others = [j for j in range(128) if j not in hits]
        sets = []
        for r in range(6):
            miss = sorted(np.random.choice(others, 16, replace=False).tolist())
            sets.append((0, miss))
            h = sorted(set(np.random.choice(others, 15, replace=False).tolist()) | {hits[0]})
            sets.append((1, h))
        many = __import__("hfs.pipeline.model.hfs_model", fromlist=["_repeat_batch"])._repeat_batch(b, len(sets))
        idx = torch.tensor([s for _, s in sets])
        out = model._teacher(many, idx, torch.ones(len(sets), 16), answers=True)
        ce = model._answer_ce(out, many).tolist()
        h = [c for (f, _), c in zip(sets, ce) if f]; m = [c for (f, _), c in zip(sets, ce) if not f]
        hit_ce += h; miss_ce += m; gaps.append(statistics.mean(m) - statistics.mean(h)); miss_sd.append(statistics.stdev(m))
print(f"questions {len(gaps)}: CE hit {statistics.mean(hit_ce):.3f}, miss {statistics.mean(miss_ce):.3f}; per-question gap mean {statistics.mean(gaps):.3f}, "
      f"gap>0 in {sum(g>0 for g in gaps)}/{len(gaps)}, median gap {statistics.median(gaps):.3f}; sd of CE among misses {statistics.mean(miss_sd):.3f}")
ids = samples.column("sample_id").to_pylist()
bad = [ids[i] for i, g in enumerate(gaps) if g <= 0]
from collections import Counter
print("no gap:", Counter((truth[s].kind, truth[s].events[0].colour if truth[s].kind == "colour" else truth[s].events[0].shape) for s in bad))
print("all:", Counter(truth[s].kind for s in ids))
by = {}
for i, g in enumerate(gaps):
    by.setdefault(truth[ids[i]].events[0].colour, []).append(g)
print("gap by event colour:", {c: (len(v), round(statistics.mean(v), 2), sum(x > 0 for x in v)) for c, v in sorted(by.items())})
