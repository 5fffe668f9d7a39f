"""`make demo` as a new user runs it: wall time of each stage, and the selectors' table.

    python benchmarks/bench_demo.py [--json out.json] [hfs demo options, e.g. --steps 500]

Runs ``hfs demo`` in a fresh folder in its own process (what ``make demo`` runs, from
process start to exit), then reads the ``demo.json`` it wrote: the seconds of each stage
(task, extract, teacher, train, evaluate), event recall@k (the task's k), answer-bearing frames selected
and accuracy per selector, and whether hfs reached 2x uniform's event recall. Goal (issue
16): the whole demo within 10 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import write_json

WORK = Path(__file__).resolve().parent / "_work" / "demo"
GOAL_S = 600.0


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, default=None, help="write the result here")
    ap.add_argument("--work", type=Path, default=WORK, help="the demo's folder (emptied first)")
    args, demo_args = ap.parse_known_args(argv)
    shutil.rmtree(args.work, ignore_errors=True)
    hfs = Path(sys.executable).with_name("hfs")
    cmd = [str(hfs), "demo", "--out", str(args.work), "--no-progress", *demo_args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"hfs demo exited with {proc.returncode}")
    demo = json.loads((args.work / "demo.json").read_text())
    result = {"bench": "demo", "command": " ".join(["hfs", *cmd[1:]]), "wall_s": round(wall, 1),
              "goal_s": GOAL_S, **demo}
    write_json(args.json, result)
    print("\n### bench_demo (`hfs demo`, fresh folder, CPU)\n")
    print("| stage | seconds |")
    print("|---|---:|")
    for stage, seconds in demo["timings_s"].items():
        print(f"| {stage} | {seconds:.0f} |")
    print(f"| **whole command** (process start to exit) | **{wall:.0f}** |")
    print(f"\n| selector | questions | event recall@{demo['settings']['k']} | answer-bearing frames selected | accuracy |")
    print("|---|---:|---:|---:|---:|")
    for r in demo["selectors"]:
        print(f"| {r['selector']} | {r['questions']} | {r['event_recall']:.2f} | {r['mean_hits']:.2f} | "
              f"{r['accuracy']:.2f} |")
    print(f"\n{demo['goal']}")
    print(f"time goal (whole demo <= {GOAL_S / 60:.0f} min on 2 cores): {'met' if wall <= GOAL_S else 'NOT met'} "
          f"({wall / 60:.1f} min)")
    return result


if __name__ == "__main__":
    sys.exit(main() and 0)
