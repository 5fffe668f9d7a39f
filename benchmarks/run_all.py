"""`make bench`: run every benchmark; each run keeps its own raw JSON and tables.

    python benchmarks/run_all.py [--quick] [--only decode,extract,model,train,select,cache,demo]

Each benchmark is a standalone script that prints a markdown table and writes JSON. This
runner gives every run its own files, `benchmarks/results/<name>_<timestamp>.json` and
one `benchmarks/results/run_all_<timestamp>.md` with the tables, and never touches the
curated `benchmarks/RESULTS.md` (which quotes the runs it discusses). Figures are compared
as ratios within one run; absolute numbers depend on the machine, which is recorded.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = {"decode": "bench_decode.py", "extract": "bench_extract.py", "model": "bench_model.py",
           "train": "bench_train.py", "select": "bench_select.py", "cache": "bench_cache.py", "demo": "bench_demo.py"}
QUICK = {"cache": ["--rows", "20000", "--shards", "625"],
         "demo": ["--videos", "16", "--test-videos", "8", "--steps", "150", "--teacher-steps", "300"]}
"""What --quick means for the benchmarks without a --quick flag of their own."""


def machine() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="pass --quick to every benchmark")
    ap.add_argument("--only", default=",".join(BENCHES), help="comma-separated subset of " + ",".join(BENCHES))
    args = ap.parse_args()
    (HERE / "results").mkdir(exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    sections, status = [], 0
    for name in args.only.split(","):
        cmd = [sys.executable, str(HERE / BENCHES[name]), "--json", str(HERE / "results" / f"{name}_{stamp}.json")]
        cmd += QUICK.get(name, ["--quick"]) if args.quick else []
        print(f"== {' '.join(cmd)}", flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        sys.stdout.write(proc.stdout)
        if proc.returncode:
            sys.stderr.write(proc.stderr[-4000:])
            status = 1
        table = proc.stdout[proc.stdout.find("###"):] if "###" in proc.stdout else proc.stdout
        sections.append(f"## {name}\n\n`{' '.join(Path(c).name if c.startswith('/') else c for c in cmd[1:])}`"
                        f" (exit {proc.returncode})\n\n{table.strip()}\n")
    header = (f"# Benchmark run {stamp}\n\nWritten by `make bench` on {dt.date.today()} ({machine()}).\n"
              "Compare ratios within one run; absolute times depend on the machine.\n")
    out = HERE / "results" / f"run_all_{stamp}.md"
    out.write_text(header + "\n" + "\n".join(sections))
    print(f"wrote {out}")
    return status


if __name__ == "__main__":
    sys.exit(main())
