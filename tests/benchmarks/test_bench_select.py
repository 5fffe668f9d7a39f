"""The selection benchmark at tiny scale: the CPU mode end to end (every selector timed, the
evaluate loop answered every question), and the --real path on a narrow student and on the
meta device (counting only)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_select  # noqa: E402

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.xdist_group("models")]


def test_cpu_mode_times_every_selector_and_the_evaluate_loop(tmp_path, capsys):
    out = tmp_path / "select.json"
    bench_select.main(["--videos", "3", "--k", "4", "--frame-size", "64", "36", "--work", str(tmp_path / "work"),
                       "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["bench"] == "select" and result["frames"] == 128 and result["k"] == 4
    assert [r["selector"] for r in result["latency"]] == list(bench_select.SELECTORS)
    for r in result["latency"]:
        assert r["questions"] == 3 and 0 < r["median_ms"] <= r["p90_ms"] and r["cache_read_ms"] > 0
    assert [r["selector"] for r in result["throughput"]] == list(bench_select.SELECTORS)
    for r in result["throughput"]:
        assert r["questions"] == 3 and r["questions_per_min"] > 0
    table = capsys.readouterr().out
    for name in bench_select.SELECTORS:
        assert f"| {name} | " in table
    # a second run reuses the cache and the tiny run it wrote
    cache_files = sorted(p.name for p in (tmp_path / "work").rglob("*.h5"))
    bench_select.main(["--videos", "3", "--k", "4", "--frame-size", "64", "36", "--work", str(tmp_path / "work"),
                       "--selectors", "uniform", "--no-throughput"])
    assert sorted(p.name for p in (tmp_path / "work").rglob("*.h5")) == cache_files


def test_real_path_on_a_narrow_student_times_select_and_its_parts(tmp_path, capsys):
    out = tmp_path / "real.json"
    bench_select.main(["--real", "--device", "cpu", "--student-width", "64", "--student-layers", "2",
                       "--batch-sizes", "1", "2", "--repeats", "1", "--work", str(tmp_path / "work"),
                       "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["student"]["layers"] == 2 and result["student"]["hidden_size"] == 64
    assert [(r["batch"], r["ms"] > 0) for r in result["rows"]] == [(1, True), (2, True)]
    for r in result["rows"]:  # data wait: the questions' features read from a cache; no MFU off a GPU
        assert r["data_wait_ms"] > 0 and 0 < r["data_wait_frac"] < 1 and r["peak_gib"] >= 0 and r["mfu"] is None
    assert [r["selector"] for r in result["selectors"]] == ["hfs", "hfs-set"]
    assert set(result["breakdown_ms"]) == {"eval_mode_switch", "question_tokens", "adapter_switch_x2",
                                           "pass_a_theta1", "pass_b_theta2", "heads_and_topk"}
    assert result["adapter_switch_x2_through_peft_ms"] > 0
    table = capsys.readouterr().out
    assert "goal" not in table  # a narrowed student says nothing about the paper-size goal
    assert "| HFSModel.select | 1 |" in table


def test_real_a_batch_out_of_memory_is_a_row_and_the_next_one_runs(monkeypatch, tmp_path, capsys):
    real_time_select = bench_select.time_select

    def time_select(model, cache, B, *args):
        if B == 2:  # as a GPU that is too small would
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.20 GiB.")
        return real_time_select(model, cache, B, *args)

    monkeypatch.setattr(bench_select, "time_select", time_select)
    out = tmp_path / "oom.json"
    bench_select.main(["--real", "--device", "cpu", "--student-width", "64", "--student-layers", "2",
                       "--batch-sizes", "2", "1", "--repeats", "1", "--work", str(tmp_path / "work"),
                       "--json", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [(r["batch"], r.get("oom", False), "ms" in r) for r in rows] == [(2, True, False), (1, False, True)]
    assert "out of memory" in rows[0]["error"]
    assert "| HFSModel.select | 2 | " in capsys.readouterr().out


def test_real_dry_run_counts_the_paper_size_student_on_the_meta_device(tmp_path):
    out = tmp_path / "dry.json"
    bench_select.main(["--real", "--dry-run", "--batch-sizes", "1", "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["student"]["layers"] == 28 and result["student"]["hidden_size"] == 1536
    assert 1.3e9 < result["student"]["matmul_params"] < 1.4e9  # Qwen2.5-1.5B without embeddings, with LoRA
    (row,) = result["rows"]
    assert row["tokens_pass_a"] > 0 and row["tokens_pass_b"] > 128  # pass B: 128 frames + question + K + 1
    tokens = row["tokens_pass_a"] + row["tokens_pass_b"]
    assert row["tflop"] == pytest.approx(2 * result["student"]["matmul_params"] * tokens / 1e12)
    assert 1.0 < row["tflop"] < 2.0 and "ms" not in row  # 2·P·T: about 1.5 TFLOP per question


def test_real_on_the_cpu_needs_a_narrow_student():
    with pytest.raises(SystemExit):
        bench_select.main(["--real", "--device", "cpu"])
