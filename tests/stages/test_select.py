"""`hfs select`: questions from a manifest or a benchmark folder, every selector, the JSONL layout,
reruns that keep what is written, and the refusals (exit 2, a message naming the problem)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from benchmark_layouts import Layout, write_layout
from colour_task import N_FRAMES
from typer.testing import CliRunner

from hfs.stages.cli import app

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.xdist_group("select")]  # its fixtures are built once, on one worker; other modules run beside it

SELECTORS = ["uniform", "random", "clip", "hfs", "hfs-set"]
FIELDS = ["sample_id", "video_id", "selector", "k", "indices", "timestamps_s", "scores"]
K = 4
BENCH_FRAMES = 16  # frames per video in the benchmark test's cache


def invoke(args: list[str], expect: int = 0) -> str:
    from hfs.stages.console import console

    # rich wraps at the console's width, fixed when it was made (80 under pytest-xdist, which sets COLUMNS)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(console, "_width", 500)
        res = CliRunner().invoke(app, args)
    assert res.exit_code == expect, res.output + repr(res.exception)
    return " ".join(res.output.split())


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, one_thread) -> Path:
    """A saved tiny HFSModel: the folder form of `--run` (a run folder is tested by test_evaluate)."""
    import torch

    from hfs.pipeline.model.hfs_model import HFSConfig, HFSModel

    torch.manual_seed(0)
    return HFSModel.build(HFSConfig.tiny(), device="cpu").save(tmp_path_factory.mktemp("select_run") / "model")


def select_args(cache: Path, out: Path, selector: str, run: Path | None, *questions: str, k: int = K) -> list[str]:
    return ["select", "--cache", str(cache), "--out", str(out), "--selector", selector, "--k", str(k),
            "--no-progress", "--device", "cpu", *questions, *(["--run", str(run)] if run is not None else [])]


def check_lines(records: list[dict], selector: str, cache, n: int) -> None:
    """The JSONL layout: one line per question with k distinct ascending frames and their times."""
    for r in records:
        assert list(r) == FIELDS
        assert (r["selector"], r["k"]) == (selector, K)
        idx = r["indices"]
        assert len(idx) == K and idx == sorted(set(idx)) and 0 <= idx[0] and idx[-1] < n
        times = cache.timestamps(r["video_id"])
        assert r["timestamps_s"] == [round(float(times[i]), 4) for i in idx]
        if selector in ("uniform", "random"):
            assert r["scores"] is None
        else:
            assert len(r["scores"]) == n and np.isfinite(r["scores"]).all()


# --------------------------------------------------------------------------- questions from a manifest


@pytest.mark.parametrize("selector", SELECTORS)
def test_select_from_a_manifest(colour_task, saved_model, tmp_path, selector):
    from hfs.cache import FeatureCache
    from hfs.manifests import read_manifests

    out = tmp_path / "sel" / f"{selector}.jsonl"  # its folder is made
    run = saved_model if selector.startswith("hfs") else None
    output = invoke(select_args(colour_task.cache, out, selector, run, "--manifest", str(colour_task.manifest)))

    samples = read_manifests([str(colour_task.manifest)]).samples
    records = read_jsonl(out)
    assert [(r["sample_id"], r["video_id"]) for r in records] == [(s.sample_id, s.video_id) for s in samples]
    check_lines(records, selector, FeatureCache(colour_task.cache), N_FRAMES)
    assert f"{selector}: {len(samples)} questions → {out}" in output
    if selector == "uniform":
        assert {tuple(r["indices"]) for r in records} == {(1, 3, 5, 7)}  # 4 of 8 at segment centres
    if selector in ("clip", "hfs"):  # the k best-scored frames
        for r in records:
            assert min(r["scores"][i] for i in r["indices"]) >= max(
                s for i, s in enumerate(r["scores"]) if i not in r["indices"])


def test_a_rerun_keeps_the_lines_already_written_and_selects_the_rest(colour_task, tmp_path):
    records = json.loads(colour_task.manifest.read_text())
    first = tmp_path / "first.json"
    first.write_text(json.dumps(records[:6]))
    out = tmp_path / "random.jsonl"
    invoke(select_args(colour_task.cache, out, "random", None, "--manifest", str(first)))
    before = read_jsonl(out)
    assert len(before) == 6
    before[0]["indices"] = [0, 1, 2, 3]  # not what random draws for it: shows the line is kept, not redone
    before[0]["timestamps_s"] = ["kept"]
    out.write_text("".join(json.dumps(r) + "\n" for r in before))

    output = invoke(select_args(colour_task.cache, out, "random", None, "--manifest", str(colour_task.manifest)))

    after = read_jsonl(out)
    assert after[:6] == before
    assert len(after) == len(records) == len({r["sample_id"] for r in after})
    fresh = tmp_path / "fresh.jsonl"
    invoke(select_args(colour_task.cache, fresh, "random", None, "--manifest", str(colour_task.manifest)))
    assert after[1:] == read_jsonl(fresh)[1:]  # the rest is what one uninterrupted run selects
    assert f"random: {len(records)} questions" in output


def test_a_rerun_into_a_file_of_another_selector_or_k_is_refused(colour_task, tmp_path):
    out = tmp_path / "uniform.jsonl"
    invoke(select_args(colour_task.cache, out, "uniform", None, "--manifest", str(colour_task.manifest)))
    written = out.read_text()
    output = invoke(select_args(colour_task.cache, out, "random", None, "--manifest", str(colour_task.manifest)),
                    expect=2)
    assert f"{out} holds selections of 'uniform'; choose another --out" in output
    output = invoke(select_args(colour_task.cache, out, "uniform", None, "--manifest", str(colour_task.manifest),
                                k=2), expect=2)
    assert f"{out} holds selections of 4 frames, not --k 2" in output
    assert out.read_text() == written


def test_manifest_questions_that_cannot_be_selected_for_are_counted_by_reason(colour_task, tmp_path):
    records = json.loads(colour_task.manifest.read_text())
    extra = [dict(records[0], id="elsewhere", video="videos/not_extracted.mp4"), {"id": "broken"}]
    manifest = tmp_path / "more.json"
    manifest.write_text(json.dumps(records[:2] + extra))
    out = tmp_path / "uniform.jsonl"
    output = invoke(select_args(colour_task.cache, out, "uniform", None, "--manifest", str(manifest)))
    assert [r["sample_id"] for r in read_jsonl(out)] == [r["id"] for r in records[:2]]
    assert "uniform: 2 questions" in output
    assert "1 skipped: video not in the cache" in output and "1 skipped: unreadable record" in output


# --------------------------------------------------------------------------- questions from a benchmark folder


@pytest.fixture(scope="module")
def bench_cache(tmp_path_factory) -> tuple[Layout, Path]:
    """A NExT-QA folder (3 questions on 2 videos, a bad row, a missing video) and a cache of only its
    first video, so the second one's question is 'not in the cache'."""
    from hfs.manifests.benchmarks import get_benchmark
    from hfs.pipeline.demo.videos import shape, solid, write_scene_video
    from hfs.pipeline.extract.config import ExtractConfig
    from hfs.pipeline.extract.run import extract

    root = tmp_path_factory.mktemp("select_bench")
    video = root / "src.mp4"
    write_scene_video(video, [(10, solid((220, 40, 40))), (10, shape("circle", (40, 200, 40)))], fps=10,
                      size=(64, 48))
    layout = write_layout("nextqa", "parquet", root / "data", [video])
    data = get_benchmark("nextqa").read(layout.root)
    first = [v for v in data.videos if v.key == "NExTVideo/101.mp4"]
    cfg = ExtractConfig(frames=BENCH_FRAMES, preset="tiny", pretrained="none", teacher_frame_size=64)
    assert extract(first, root / "cache", cfg, workers=0, progress=False).ok == 1
    return layout, root / "cache"


@pytest.mark.parametrize("selector", SELECTORS)
def test_select_from_a_benchmark_folder(bench_cache, saved_model, tmp_path, selector):
    from hfs.cache import FeatureCache

    layout, cache = bench_cache
    out = tmp_path / f"{selector}.jsonl"
    run = saved_model if selector.startswith("hfs") else None
    output = invoke(select_args(cache, out, selector, run, "--bench", "nextqa", "--data", str(layout.root)))
    records = read_jsonl(out)
    assert [r["sample_id"] for r in records] == ["101_0", "101_1"]
    check_lines(records, selector, FeatureCache(cache), BENCH_FRAMES)
    assert f"{selector}: 2 questions → {out}" in output
    for reason in ("video not in the cache", "bad row", "missing video"):
        assert f"1 skipped: {reason}" in output, output


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(("args", "message"), [
    (["--selector", "hfs"], "selector hfs needs a trained run: pass --run runs/NAME"),
    (["--selector", "hfs-set"], "selector hfs-set needs a trained run: pass --run runs/NAME"),
    (["--selector", "nope"], "unknown selector 'nope'; known: uniform, random, clip, hfs, hfs-set"),
    (["--bench", "nextqa", "--data", "DATA"],
     "give the questions with --manifest FILE or with --bench NAME --data DIR (one of them)"),
    ([], "give the questions with --manifest FILE or with --bench NAME --data DIR (one of them)"),
    (["--bench", "nextqa", "--no-manifest"], "--bench nextqa needs --data DIR"),
    (["--bench", "nope", "--data", "DATA", "--no-manifest"], "unknown benchmark 'nope'; known: nextqa"),
    (["--selector", "hfs", "--run", "RUNS/absent"], "RUNS/absent holds no checkpoint"),
])
def test_select_refuses_with_exit_2_and_says_why(colour_task, bench_cache, tmp_path, args, message):
    layout, _ = bench_cache
    args = [a.replace("DATA", str(layout.root)).replace("RUNS", str(tmp_path)) for a in args]
    questions = [] if "--no-manifest" in args or not args else ["--manifest", str(colour_task.manifest)]
    args = [a for a in args if a != "--no-manifest"]
    if "--selector" not in args:
        args += ["--selector", "uniform"]
    out = tmp_path / "out.jsonl"
    output = invoke(["select", "--cache", str(colour_task.cache), "--out", str(out), "--no-progress", "--device", "cpu",
                     *questions, *args], expect=2)
    assert message.replace("RUNS", str(tmp_path)) in output, output
    assert not out.exists()


def test_select_without_the_cache_says_how_to_make_it(colour_task, tmp_path):
    absent = tmp_path / "no_cache"
    output = invoke(select_args(absent, tmp_path / "out.jsonl", "uniform", None, "--manifest",
                                str(colour_task.manifest)), expect=2)
    assert f"--cache {absent}: no such folder; make it with `hfs extract --out {absent}`" in output
