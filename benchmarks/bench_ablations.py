"""The paper's ablations (Tables 3–8) on the demo's synthetic task, where the answer-bearing
frames are known: event recall@k and answer accuracy of the trained `hfs` selector.

    python benchmarks/bench_ablations.py [--seeds 0 1] [--steps 500] [--only name,name] [--json out.json]
    python benchmarks/bench_ablations.py --on-top losses.use_set=false ...   # every row on another base

The task, the cache and the fitted tiny teacher are made once (``hfs demo``'s stages 1–3,
``stages/demo.py``, seed 0). Each configuration then trains the tiny preset with the same
steps and training seed and is evaluated on the 24 held-out questions; ``--seeds`` repeats
every configuration with other training seeds (the spread is the min–max over seeds).

Every row is the paper's full model plus the demo's scale settings (N = 128, k_sel = the task's
k: 16 on ``--task single``, 2 on ``--task query``; lr 1e-3, batch 4, 500 steps; the fitted teacher
frozen as the critic) with one change. Rows for k_sel report recall@k_sel (the selector picks
k_sel frames in training and test); the others recall@k of the task. ``uniform`` and ``clip`` need no training: their rows come from the
first seed's evaluation. ``--on-top`` adds overrides to every row (for instance the demo's
``losses.use_set=false``, so each component is measured on a base that learns); their runs
get folders of their own.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import time
from pathlib import Path

from _common import write_json

WORK = Path(__file__).resolve().parent / "_work" / "ablations"

BASE = ("train.lr=1e-3", "train.batch_size=4", "train.micro_batch_size=4", "train.num_workers=1", "teacher.lora_r=0")
"""The demo's scale settings and its frozen teacher; every row adds its change to these, after the
task's k (``selection.k``: `stages.demo.K`, 16 single-event, 2 query-aware)."""

ROWS: dict[str, tuple[str, tuple[str, ...], str]] = {
    # name: (paper table, overrides, what it tests)
    "full model": ("3", (), "CoT queries, F(m), KL, L_sep with the default score path and estimator"),
    "logit straight-through": ("-", ("selection.score_path=logit", "selection.estimator=straight_through"),
                        "keys c·ẑ + g, F and KL on σ(c·ẑ), straight-through (JSON label of 2026-12-07: \"default (logit)\")"),
    "paper σ path": ("-", ("selection.score_path=sigmoid", "selection.estimator=straight_through"),
                     "keys log σ(z) + g, F and KL on s, straight-through (the paper)"),
    "logit scale 1": ("-", ("selection.score_path=logit", "selection.estimator=straight_through", "selection.logit_scale=1.0"), "τ_s = 1"),
    "logit scale 4": ("-", ("selection.score_path=logit", "selection.estimator=straight_through", "selection.logit_scale=4.0"), "τ_s = 0.25"),
    "logit w/o KL": ("-", ("selection.score_path=logit", "selection.estimator=straight_through", "losses.use_kl=false"), "the logit path without the KL"),
    "logit w/o F": ("-", ("selection.score_path=logit", "selection.estimator=straight_through", "losses.use_set=false"), "the logit path without F"),
    "logit KL on keys": ("-", ("selection.score_path=logit", "selection.estimator=straight_through", "losses.kl_on=keys"), "KL on c·ẑ instead of σ(c·ẑ)"),
    "logit score function": ("-", ("selection.score_path=logit", "selection.estimator=score_function"),
                              "4 samples, leave-one-out REINFORCE on the ordered PL log-probability"),
    "logit score function w/o KL": ("-", ("selection.score_path=logit", "selection.estimator=score_function",
                                          "losses.use_kl=false"), "the score-function estimator without the KL"),
    "score function 8 samples": ("-", ("selection.samples=8",), "the defaults with 8 samples per question"),
    "σ path score function": ("-", ("selection.score_path=sigmoid", "selection.estimator=score_function"),
                               "the paper's keys with the score-function estimator"),
    "pseudo-label": ("7", ("losses.supervision=pseudo_label", "losses.use_kl=false", "train.frame_labels={train_truth}"),
                     "BCE of the scores against the training questions' answer-bearing frames (no teacher): what "
                     "the student learns with direct supervision"),
    "w/o CoT-Query": ("3", ("student.use_cot=false",), "task analyzer reads the question without the CoT prompt"),
    "w/o set objective (F off)": ("3, 5", ("losses.use_set=false",), "no −λ_set·F(m)"),
    "w/o KL": ("3, 7", ("losses.use_kl=false",), "no mutual-learning KL"),
    "w/o L_sep": ("3", ("losses.use_sep=false",), "no query separation loss"),
    "CE only": ("7", ("losses.use_kl=false", "losses.use_set=false", "losses.use_sep=false"), "answer CE alone"),
    "question-blind (control)": ("-", ("student.question_blind=true",),
                                 "the defaults reading no question (every question the same empty text): on the "
                                 "query-aware task, what reading the question adds"),
    "static query (baseline)": ("3", ("student.static_query=true", "losses.use_kl=false", "losses.use_set=false",
                                      "losses.use_sep=false"), "Table 3's baseline: CE only, no task queries"),
    "K=0": ("4", ("student.K=0",), "no task analyzer pass"),
    "K=1": ("4", ("student.K=1",), ""),
    "K=2": ("4", ("student.K=2",), ""),
    "K=4": ("4", ("student.K=4",), "(K=3 is the full model)"),
    "F w/o relevance": ("5", ("set_objective.terms=cov,red",), ""),
    "F w/o coverage": ("5", ("set_objective.terms=rel,red",), ""),
    "F w/o redundancy": ("5", ("set_objective.terms=rel,cov",), ""),
    "query_positions=question": ("-", ("student.query_positions=question",), "Eq. 5 over the question span"),
    "relaxation=successive_softmax": ("-", ("selection.relaxation=successive_softmax",), "m_i may exceed 1"),
    "θ3 trained": ("-", ("teacher.lora_r=8",), "the teacher's LoRA trains too (paper)"),
    "demo (F off)": ("-", ("losses.use_set=false",), "what `hfs demo` runs"),
    "k_sel=8": ("8", ("selection.k=8",), "recall@8"),
    "k_sel=32": ("8", ("selection.k=32",), "recall@32"),
}

log = logging.getLogger("bench_ablations")


def k_of(overrides: tuple[str, ...], default: int = 16) -> int:
    """The last ``selection.k=`` of ``overrides`` (what the run trains with), else ``default``."""
    return next((int(o.split("=")[1]) for o in reversed(overrides) if o.startswith("selection.k=")), default)


def train_recall(prepared, run_dir: Path, k: int) -> float:
    """Event recall@k of the run's `hfs` selector on its own training questions (the noise-free
    keys, as at test time): with the held-out figure it tells learning from generalisation."""
    import torch

    from hfs.cache import FeatureCache
    from hfs.manifests import read_manifests
    from hfs.pipeline.evaluation.recall import event_recall, read_ground_truth
    from hfs.pipeline.model.hfs_model import HFSModel
    from hfs.pipeline.train.checkpoint import run_model_dir

    task = prepared.task
    truth = read_ground_truth(task.train_truth)
    samples = read_manifests([str(task.train_manifest)], video_root=str(task.train_manifest.parent)).samples
    cache = FeatureCache(prepared.cache)
    model = HFSModel.load(run_model_dir(run_dir), device="cpu").eval()
    chosen = {}
    for s in samples:
        if s.sample_id not in truth:
            continue
        features = torch.from_numpy(cache.features(s.video_id)).float()
        chosen[s.sample_id] = model.select(features, s.question, list(s.options), k=k).indices[0].tolist()
    return event_recall(chosen, truth, k).recall


def run_row(prepared, work: Path, name: str, overrides: tuple[str, ...], seed: int, steps: int, first: bool,
            on_top: tuple[str, ...] = (), task_k: int = 16) -> dict:
    from hfs.stages.demo import train_and_evaluate

    slug = "".join(c if c.isalnum() else "_" for c in " ".join((name, *on_top)))
    run_dir, results = work / "runs" / f"{slug}_s{seed}", work / "results" / f"{slug}_s{seed}"
    shutil.rmtree(results, ignore_errors=True)
    base = (f"selection.k={task_k}", *BASE)
    k = k_of(base + on_top + overrides)
    overrides = tuple(o.replace("{train_truth}", str(prepared.task.train_truth)) for o in overrides)
    selectors = ("uniform", "clip", "oracle", "hfs") if first else ("hfs",)
    t0 = time.perf_counter()
    rows = train_and_evaluate(prepared, run_dir, results, steps, base + on_top + overrides, selectors=selectors,
                              seed=seed, progress=False, k=k)
    wall = round(time.perf_counter() - t0, 1)
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {"row": name, "seed": seed, "k": k, "wall_s": wall,
            "train_recall": train_recall(prepared, run_dir, k),
            "final_ce": statistics.mean(m["ce"] for m in metrics[-50:]),
            "selectors": {r.selector: {"event_recall": r.event_recall, "mean_hits": r.mean_hits, "accuracy": r.accuracy}
                          for r in rows}}


def summarise(results: list[dict]) -> list[dict]:
    """Mean and min–max over seeds of hfs's figures per row (uniform/clip: their one evaluation)."""
    out = []
    for name in dict.fromkeys(r["row"] for r in results):
        mine = [r for r in results if r["row"] == name]
        recall = [r["selectors"]["hfs"]["event_recall"] for r in mine]
        hits = [r["selectors"]["hfs"]["mean_hits"] for r in mine]
        acc = [r["selectors"]["hfs"]["accuracy"] for r in mine]
        out.append({"row": name, "table": ROWS[name][0], "k": mine[0]["k"], "seeds": len(mine),
                    "recall": statistics.mean(recall), "recall_min": min(recall), "recall_max": max(recall),
                    "mean_hits": statistics.mean(hits), "accuracy": statistics.mean(acc),
                    "accuracy_min": min(acc), "accuracy_max": max(acc)})
    return out


def print_table(summary: list[dict], baselines: dict) -> None:
    print("\n### bench_ablations (synthetic task, tiny preset, CPU)\n")
    print("| row | paper table | k | seeds | hfs event recall@k (min–max) | answer-bearing frames | accuracy (min–max) |")
    print("|---|---|---|---|---|---|---|")
    for s in summary:
        print(f"| {s['row']} | {s['table']} | {s['k']} | {s['seeds']} | {s['recall']:.2f} ({s['recall_min']:.2f}–"
              f"{s['recall_max']:.2f}) | {s['mean_hits']:.2f} | {s['accuracy']:.2f} ({s['accuracy_min']:.2f}–"
              f"{s['accuracy_max']:.2f}) |")
    for name, b in baselines.items():
        print(f"\n{name}: event recall@k {b['event_recall']:.2f}, answer-bearing frames {b['mean_hits']:.2f}, "
              f"accuracy {b['accuracy']:.2f} (no training)")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0], help="training seeds; each row runs once per seed")
    ap.add_argument("--steps", type=int, default=500, help="optimiser steps per run (the demo's)")
    ap.add_argument("--only", default=None, help="comma-separated row names (default: all): " + ", ".join(ROWS))
    ap.add_argument("--videos", type=int, default=48, help="training videos")
    ap.add_argument("--test-videos", type=int, default=24, help="held-out videos")
    ap.add_argument("--teacher-steps", type=int, default=None, help="steps fitting the tiny teacher (default: the demo's)")
    ap.add_argument("--task", choices=("single", "query"), default="single",
                    help="the demo's task: one event per video, or three with the question naming one")
    ap.add_argument("--on-top", nargs="+", default=[], metavar="KEY=VALUE",
                    help="config overrides added to every row (before the row's own)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here (after each run)")
    ap.add_argument("--work", type=Path, default=None,
                    help="folder for the task, cache, teacher and runs, reused (default: _work/ablations, "
                         "_work/ablations_query with --task query)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    names = args.only.split(",") if args.only else list(ROWS)
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        ap.error(f"unknown rows {unknown}; known: {', '.join(ROWS)}")
    from hfs.stages.demo import K, prepare

    work = args.work or (WORK if args.task == "single" else WORK.with_name("ablations_query"))
    prepared = prepare(work, args.videos, args.test_videos, args.teacher_steps, workers=2, seed=0,
                       progress=False, task_kind=args.task)
    on_top = tuple(args.on_top)
    task_k = K[args.task]
    result: dict = {"bench": "ablations", "task": args.task, "steps": args.steps, "seeds": args.seeds,
                    "base": [f"selection.k={task_k}", *BASE, *on_top],
                    "rows": {n: {"table": ROWS[n][0], "overrides": list(ROWS[n][1]), "tests": ROWS[n][2]} for n in names},
                    "runs": [], "baselines": {}}
    for seed in args.seeds:
        for name in names:
            first = not result["baselines"]
            r = run_row(prepared, work, name, ROWS[name][1], seed, args.steps, first, on_top, task_k)
            if first:
                result["baselines"] = {s: v for s, v in r["selectors"].items() if s != "hfs"}
            r["selectors"] = {"hfs": r["selectors"]["hfs"]}
            result["runs"].append(r)
            result["summary"] = summarise(result["runs"])
            write_json(args.json, result)
            log.warning("%s seed %d: recall %.2f, on its training questions %.2f (%.0f s)", name, seed,
                        r["selectors"]["hfs"]["event_recall"], r["train_recall"], r["wall_s"])
    print_table(result["summary"], result["baselines"])
    return result


if __name__ == "__main__":
    sys.exit(main() and 0)
