"""The training benchmark's --real path: on the meta device (tokens and FLOPs of every row,
checkpointing off and on) and with the tiny models on the CPU (the timed fields of every
row: step time, data wait, peak memory, MFU), and a setting that runs out of memory is a
row, not a crash."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_train  # noqa: E402

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.xdist_group("models")]

TIMED = {"step_s", "data_wait_s", "data_wait_frac", "peak_gib", "mfu", "decode_frac", "preprocess_frac"}
TINY = ["--real", "--tiny", "--device", "cpu", "--teachers", "qwen2_5_vl", "--frame-size", "64", "36",
        "--repeats", "1", "--loader-workers", "0"]


def test_real_dry_run_counts_every_setting_on_the_meta_device(tmp_path, capsys):
    out = tmp_path / "dry.json"
    bench_train.main(["--real", "--dry-run", "--teachers", "qwen2_5_vl", "--batch-sizes", "1", "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["device_name"] == "meta (dry run)" and result["models"] == "paper"
    assert [(r["gradient_checkpointing"], r["micro_batch"]) for r in result["rows"]] == [(False, 1), (True, 1)]
    for r in result["rows"]:
        assert r["tflop"] > 50 and r["tokens_teacher_lm"] > 1000 and not TIMED & set(r)
    assert "| qwen2_5_vl | on | 1 |" in capsys.readouterr().out


def test_real_tiny_times_each_micro_batch_with_and_without_checkpointing(tmp_path, capsys):
    out = tmp_path / "tiny.json"
    bench_train.main([*TINY, "--batch-sizes", "1", "2", "--work", str(tmp_path / "work"), "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["models"] == "tiny" and result["loader_workers"] == 0
    rows = result["rows"]
    assert [(r["gradient_checkpointing"], r["micro_batch"]) for r in rows] == [
        (False, 1), (False, 2), (True, 1), (True, 2)]
    for r in rows:
        assert TIMED <= set(r) and "oom" not in r
        assert r["step_s"] > 0 and 0 < r["data_wait_frac"] < 1 and r["peak_gib"] >= 0
        assert r["mfu"] is None  # no MFU off a GPU
        assert r["timed_steps"] == 1 and len(r["step_s_all"]) == 2
    table = capsys.readouterr().out
    assert "| qwen2_5_vl | off | 2 |" in table and "| qwen2_5_vl | on | 1 |" in table


def test_real_a_setting_out_of_memory_is_a_row_and_the_next_one_runs(monkeypatch, tmp_path):
    real_time_steps = bench_train.time_steps
    calls = []

    def time_steps(model, *args):
        calls.append(model.student.lm.get_base_model().model.gradient_checkpointing)
        if len(calls) == 2:  # checkpointing off, B=2: as a GPU that is too small would
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.50 GiB.")
        return real_time_steps(model, *args)

    monkeypatch.setattr(bench_train, "time_steps", time_steps)
    out = tmp_path / "oom.json"
    bench_train.main([*TINY, "--batch-sizes", "1", "2", "--work", str(tmp_path / "work"), "--json", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert calls == [False, False, True, True]  # every setting ran, checkpointing switched on for the last two
    assert [r.get("oom", False) for r in rows] == [False, True, False, False]
    assert "out of memory" in rows[1]["error"] and not TIMED & set(rows[1])
    assert all(TIMED <= set(r) for r in rows if not r.get("oom"))


def test_is_oom_tells_allocation_failures_from_other_errors():
    assert bench_train.is_oom(torch.OutOfMemoryError("CUDA out of memory"))
    assert bench_train.is_oom(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate"))
    assert not bench_train.is_oom(RuntimeError("shape mismatch"))
    assert not bench_train.is_oom(ValueError("out of memory"))
