"""The model and extract benchmarks' own logic: a row that runs out of memory is
a result (not a crash), and the extract table's speed-ups are against 1 worker."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_extract  # noqa: E402
import bench_model  # noqa: E402


@pytest.mark.xdist_group("models")
def test_a_row_out_of_memory_is_recorded_and_the_run_goes_on(monkeypatch, tmp_path, capsys):
    real_measure = bench_model.measure
    calls = []

    def measure(fn, device, repeats):
        calls.append(fn)
        if len(calls) == 1:  # the first row (train, B=1): as a GPU that is too small would
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 920.00 MiB.")
        return real_measure(fn, device, repeats)

    monkeypatch.setattr(bench_model, "measure", measure)
    out = tmp_path / "model.json"
    bench_model.main(["--quick", "--teachers", "qwen2_5_vl", "--batch-sizes", "1", "--json", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [(r["path"], r.get("oom", False), "seconds" in r) for r in rows] == [("train", True, False), ("select", False, True)]
    table = capsys.readouterr().out
    assert "| qwen2_5_vl | train | 1 |" in table and "out of memory" in table


def _row(workers: int, wall: float) -> dict:
    return {"workers": workers, "videos": 8, "startup_s": 16.0, "wall_s": wall, "videos_per_min": round(480 / wall, 2),
            "frames_per_s": round(1024 / wall, 1)}


def test_extract_report_gives_speedups_over_one_worker():
    text, speedup = bench_extract.report([_row(1, 9.9), _row(2, 4.5), _row(4, 3.3)], "ViT-B-32 on cuda, 8 videos")
    assert speedup == pytest.approx(2.2)
    assert "| 2 | 8 | 16.0 | 4.5 | 106.67 | 227.6 | 2.20 |" in text
    assert "| 4 | 8 | 16.0 | 3.3 | 145.45 | 310.3 | 3.00 |" in text
    assert "**2.20×** (goal ≥ 1.8×: met)" in text
    _, slow = bench_extract.report([_row(1, 10.0), _row(2, 7.0)], "t")
    assert slow == pytest.approx(10 / 7)


def test_extract_report_without_a_one_worker_row_claims_no_goal():
    text, speedup = bench_extract.report([_row(2, 4.5), _row(4, 3.3)], "t")
    assert speedup is None and "goal" not in text
    assert "| 2 | 8 | 16.0 | 4.5 | 106.67 | 227.6 | - |" in text
