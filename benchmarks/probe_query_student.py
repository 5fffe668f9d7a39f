"""Where the query-aware task stops: the critic, the frame features, the question, MLP_s.

    python benchmarks/probe_query_student.py [--work benchmarks/_work/ablations_query] [--run full_model_s0] [--json out.json]

After ``bench_ablations.py --task query`` has prepared ``--work`` (task, cache, teacher) and
trained ``--run``. Four measurements on its 48 training and 24 held-out questions:

* **critic**: the teacher's answer CE on each training question shown k frames: the named pair's,
  one distractor pair's, quiet ones, one of each (3 draws per question): what the score-function
  estimator's reward says about each kind of frame.
* **features**: a linear probe of "this frame shows colour c" on the cached CLIP features
  (trained on the training videos' frames, AUC on the held-out videos').
* **question**: a linear probe of the named colour from q̂_agg (Eq. 8), at initialisation (the
  run's seed) and after training (``--run``).
* **mlp**: what a plain two-layer GELU MLP on [W_v·feature; a learned embedding of the named
  colour], trained as the ``pseudo-label`` row trains (BCE on the answer-bearing frames of the
  standardised logits, 500 steps, batch 4, Adam 1e-3), reaches: event recall@k held-out.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path

from _common import write_json
from probe_query_critic import frame_sets

COLOURS = ["red", "green", "blue", "yellow", "magenta"]


def named_colour(question: str) -> str:
    """The colour a query_pair question names ("... together with the red shape?")."""
    return question.split(" the ")[1].split()[0]


def standardise(train, test):
    """``train`` and ``test`` [n, d] standardised by ``train``'s per-feature mean and deviation."""
    mu, sd = train.mean(0), train.std(0) + 1e-6
    return (train - mu) / sd, (test - mu) / sd


def minimise(params, loss, steps: int, lr: float) -> None:
    """``steps`` Adam steps at ``lr`` on ``loss()`` (called afresh each step) over ``params``."""
    import torch

    opt = torch.optim.Adam(params, lr=lr)
    for _ in range(steps):
        value = loss()
        opt.zero_grad()
        value.backward()
        opt.step()


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path(__file__).resolve().parent / "_work" / "ablations_query")
    ap.add_argument("--run", default="full_model_s0")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from hfs.cache import FeatureCache
    from hfs.manifests import read_manifests
    from hfs.manifests.benchmarks import get_benchmark
    from hfs.pipeline.evaluation.recall import read_ground_truth
    from hfs.pipeline.model.hfs_model import HFSModel, _repeat_batch
    from hfs.pipeline.train.checkpoint import run_model_dir
    from hfs.pipeline.train.config import RunConfig
    from hfs.pipeline.train.data import QADataset, collate, training_samples

    work = args.work
    cache = FeatureCache(work / "cache")
    truth = {"train": read_ground_truth(work / "task/train/ground_truth.jsonl"),
             "test": read_ground_truth(work / "task/test/ground_truth.jsonl")}
    samples = {"train": [s for s in read_manifests([str(work / "task/train/train.json")],
                                                   video_root=str(work / "task/train")).samples
                         if s.sample_id in truth["train"]],
               "test": get_benchmark("nextqa").read(work / "task/test").samples}
    run_dir = work / "runs" / args.run
    trained = HFSModel.load(run_model_dir(run_dir), device="cpu").eval()
    k = trained.cfg.selection.k
    result: dict = {"bench": "probe_query_student", "work": str(work), "run": args.run, "k": k}

    # critic: the teacher's CE by what the k frames show
    rng = random.Random(0)
    manifest = [work / "task/train/train.json"]
    table, _ = training_samples(manifest, cache, manifest[0].parent)
    data = QADataset(table, work / "cache")
    ce = {"named": [], "distractor": [], "quiet": [], "named+distractor": []}
    with torch.no_grad():
        for i in range(len(data)):
            batch = collate([data[i]]).batch
            t = truth["train"][batch.sample_ids[0]]
            hits = list(t.grid_hits)
            pairs = [list(e.grid_hits) for e in t.distractors if e.grid_hits]
            busy = set(hits) | {j for p in pairs for j in p}
            quiet = [j for j in range(t.grid_n) if j not in busy]

            sets = frame_sets(hits, pairs, quiet, k, rng, kinds=tuple(ce))
            many = _repeat_batch(batch, len(sets))
            out = trained._teacher(many, torch.tensor([s for _, s in sets]), torch.ones(len(sets), k), answers=True)
            for (name, _), value in zip(sets, trained._answer_ce(out, many).tolist()):
                ce[name].append(value)
    result["critic_mean_ce"] = {n: round(statistics.mean(v), 3) for n, v in ce.items()}
    result["critic_right"] = {n: round(sum(c < float(np.log(2)) for c in v) / len(v), 3) for n, v in ce.items()}

    # features: "this frame shows colour c", linear, held-out AUC
    def frames_and_colours(split):
        x, y = [], []
        for s in samples[split]:
            t = truth[split][s.sample_id]
            labels = np.zeros((t.grid_n, len(COLOURS)))
            for e in (*t.events, *t.distractors):
                labels[list(e.grid_hits), COLOURS.index(e.colour)] = 1
            x.append(cache.features(s.video_id))
            y.append(labels)
        return torch.tensor(np.concatenate(x)).float(), torch.tensor(np.concatenate(y)).float()

    torch.manual_seed(0)
    (xtr, ytr), (xte, yte) = frames_and_colours("train"), frames_and_colours("test")
    xtr, xte = standardise(xtr, xte)
    w = torch.zeros(xtr.shape[1], len(COLOURS), requires_grad=True)
    b = torch.zeros(len(COLOURS), requires_grad=True)
    pos = ytr.mean(0)
    minimise([w, b], lambda: torch.nn.functional.binary_cross_entropy_with_logits(
        xtr @ w + b, ytr, pos_weight=(1 - pos) / pos), steps=500, lr=1e-2)
    with torch.no_grad():
        scores = xte @ w + b
        result["feature_colour_auc"] = {
            c: round(float((scores[yte[:, j] == 1, j][:, None] > scores[yte[:, j] == 0, j][None, :]).float().mean()), 3)
            for j, c in enumerate(COLOURS)}

    # question: the named colour from q̂_agg, at initialisation and trained
    def q_hat_probe(model) -> dict:
        def encode(split):
            x, y = [], []
            with torch.no_grad():
                for s in samples[split]:
                    f = torch.from_numpy(cache.features(s.video_id)).float()[None]
                    x.append(model.student(f, [s.question], [list(s.options)]).aggregated_query[0].float())
                    y.append(COLOURS.index(named_colour(s.question)))
            return torch.stack(x), torch.tensor(y)

        (qtr, ctr), (qte, cte) = encode("train"), encode("test")
        norm = float(qte.norm(dim=-1).mean())
        qtr, qte = standardise(qtr, qte)
        w = torch.zeros(qtr.shape[1], len(COLOURS), requires_grad=True)
        minimise([w], lambda: torch.nn.functional.cross_entropy(qtr @ w, ctr) + 1e-3 * (w ** 2).sum(),
                 steps=300, lr=1e-2)
        with torch.no_grad():
            return {"train": round(float((qtr @ w).argmax(1).eq(ctr).float().mean()), 3),
                    "test": round(float((qte @ w).argmax(1).eq(cte).float().mean()), 3),
                    "q_hat_norm": round(norm, 2)}

    cfg = RunConfig.from_dict(__import__("json").loads((run_dir / "config.json").read_text()))
    torch.manual_seed(cfg.train.seed)  # what hfs train does before building the model
    initial = HFSModel.build(cfg.model, device="cpu").eval()
    result["q_hat_named_colour"] = {"init": q_hat_probe(initial), "trained": q_hat_probe(trained)}
    f = torch.from_numpy(cache.features(samples["train"][0].video_id)).float()[None]
    with torch.no_grad():
        e_v = initial.student.frame_embeddings(f)[0]
    result["e_v_at_init"] = {"norm": round(float(e_v.norm(dim=-1).mean()), 3),
                             "spread_over_frames": round(float(e_v.std(0).norm()), 3)}

    # mlp: the plain concat MLP, trained as the pseudo-label row
    def split_tensors(split):
        f, q, y = [], [], []
        for s in samples[split]:
            t = truth[split][s.sample_id]
            labels = np.zeros(t.grid_n)
            labels[list(t.grid_hits)] = 1
            f.append(cache.features(s.video_id))
            q.append(COLOURS.index(named_colour(s.question)))
            y.append(labels)
        return torch.tensor(np.stack(f)).float(), torch.tensor(q), torch.tensor(np.stack(y)).float()

    (ftr, qtr, ytr), (fte, qte, yte) = split_tensors("train"), split_tensors("test")
    torch.manual_seed(0)
    d = initial.student.frame_proj.out_features
    proj, colour = torch.nn.Linear(ftr.shape[-1], d), torch.nn.Embedding(len(COLOURS), d)
    mlp = torch.nn.Sequential(torch.nn.Linear(2 * d, initial.student.cfg.mlp_hidden), torch.nn.GELU(),
                              torch.nn.Linear(initial.student.cfg.mlp_hidden, 1))

    def logits(f, q):
        return mlp(torch.cat([proj(f), colour(q)[:, None].expand(-1, f.shape[1], -1)], -1)).squeeze(-1)

    def pseudo_label_loss():  # a batch of 4 training questions, BCE on the standardised logits
        idx = torch.randint(0, len(ftr), (4,))
        z = logits(ftr[idx], qtr[idx])
        z = 2.0 * (z - z.mean(-1, keepdim=True)) / z.std(-1, keepdim=True)
        return torch.nn.functional.binary_cross_entropy_with_logits(z, ytr[idx])

    minimise([*proj.parameters(), *colour.parameters(), *mlp.parameters()], pseudo_label_loss, steps=500, lr=1e-3)
    with torch.no_grad():
        result["plain_mlp_recall"] = {
            name: round(float((y.gather(1, logits(f, q).topk(k, -1).indices).sum(1) > 0).float().mean()), 3)
            for name, f, q, y in (("train", ftr, qtr, ytr), ("test", fte, qte, yte))}
    for key, value in result.items():
        print(f"{key}: {value}")
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    sys.exit(main() and 0)
