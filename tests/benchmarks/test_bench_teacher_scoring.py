"""The option-scoring cost benchmark at tiny scale: every setting timed, the JSON as written, and
the teacher class left as it was found."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_teacher_scoring  # noqa: E402

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.xdist_group("models")]


def test_times_letter_and_both_option_text_paths(tmp_path, capsys):
    from hfs.pipeline.model.teachers.qwen_vl import QwenVLTeacher

    out = tmp_path / "scoring.json"
    bench_teacher_scoring.main(["--batch", "2", "--k", "2", "--repeats", "2", "--json", str(out)])
    result = json.loads(out.read_text())
    assert set(result["seconds"]) == {"letter", "option_text", "option_text_rows"}
    assert all(len(s) == 2 and min(s) > 0 for s in result["seconds"].values())
    assert result["ratio_to_letter"]["letter"] == 1.0
    assert "_can_share_the_prompt" not in QwenVLTeacher.__dict__  # only the benchmark's teacher object is patched
    assert "option_text_rows" in capsys.readouterr().out
