"""The CLI surface: instant `--help`, every option documented."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from hfs.stages.cli import app

pytestmark = pytest.mark.xdist_group("clip")  # one test process imports open_clip (make test: --dist loadgroup)


def test_help_imports_nothing_heavy():
    code = ("import sys; from hfs.stages.cli import app; from typer.testing import CliRunner; "
            "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
            "heavy = [m for m in ('torch', 'transformers', 'open_clip', 'dask', 'distributed', 'av', 'h5py') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_verb_and_option_is_explained():
    cmd = typer.main.get_command(app)
    assert {"extract", "demo"} <= set(cmd.commands)
    for name, sub in cmd.commands.items():
        assert sub.help, f"hfs {name} has no help text"
        for p in sub.params:
            assert getattr(p, "help", None), f"hfs {name} {p.opts} has no help text"
        res = CliRunner().invoke(app, [name, "--help"])
        assert res.exit_code == 0 and "Usage" in res.output


def test_demo_task_is_a_choice(tmp_path):
    """An unknown --task is a usage error (exit 2) naming the tasks, before anything is made."""
    res = CliRunner().invoke(app, ["demo", "--task", "bogus", "--out", str(tmp_path / "d")])
    assert res.exit_code == 2 and "single" in res.output and "query" in res.output
    assert not (tmp_path / "d").exists()


def test_extract_requires_a_manifest():
    res = CliRunner().invoke(app, ["extract", "--out", "x"])
    assert res.exit_code != 0 and "--manifest" in res.output


def test_missing_manifest_file_is_a_clear_error(tmp_path):
    res = CliRunner().invoke(app, ["extract", "--manifest", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "c"),
                                   "--preset", "tiny", "--no-progress"])
    assert res.exit_code == 2 and "nope.jsonl" in res.output


def test_distributed_stays_quiet_in_this_process_and_its_workers():
    """distributed resets its loggers to INFO on import (in every worker process too); the CLI's
    logging set-up must hold them at ERROR in both, or cluster shutdown chatter reaches the console."""
    child = "import logging, distributed; print(logging.getLogger('distributed').level)"
    code = ("import logging, subprocess, sys; from hfs.stages.cli import _setup_logging; _setup_logging(0); "
            "import distributed; print(logging.getLogger('distributed').level); "
            f"print(subprocess.run([sys.executable, '-c', {child!r}], capture_output=True, text=True, check=True).stdout)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout.split()
    assert out == [str(logging.ERROR)] * 2


@pytest.mark.parametrize("args, says", [
    (["--backend", "nope"], "'nope' is not one of 'auto', 'pyav', 'ffmpeg'"),
    (["--device", "tpu"], "'tpu' is not one of 'cpu', 'cuda'"),
    (["--frames", "abc"], "error: --frames expects an integer or 'none', got 'abc'"),
    (["--teacher-frame-size", "-3"], "error: --teacher-frame-size must be >= 1, got -3"),
    (["--video-timeout", "soon"], "error: --video-timeout expects seconds or 'none', got 'soon'"),
    (["--shard-size", "0"], "Invalid value for '--shard-size'"),
    (["--size", "0"], "Invalid value for '--size'"),
    (["--workers", "-1"], "Invalid value for '--workers'"),
])
def test_extract_usage_errors_exit_2_with_one_message(tmp_path, args, says):
    """One convention: a value that cannot be used exits 2 before anything runs, and says why."""
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"video": "missing.mp4"}\n')
    res = CliRunner().invoke(app, ["extract", "--manifest", str(manifest), "--out", str(tmp_path / "c"),
                                   "--preset", "tiny", "--workers", "0", "--no-progress", *args])
    assert res.exit_code == 2, res.output
    assert says in " ".join(res.output.replace("│", " ").split())
    assert not (tmp_path / "c").exists()


def test_build_config_raises_a_usage_error_not_system_exit():
    from hfs.stages.extract import UsageError, build_config

    for bad in ({"backend": "nope"}, {"device": "tpu"}, {"frames": "x"}, {"size": 0}):
        with pytest.raises(UsageError):
            build_config(preset="tiny", **bad)
