"""`hfs select`: questions from a manifest or a benchmark folder (whose missing videos it extracts),
every selector, the export format and the skipped file, batches that select what one question at a
time selects, reruns that keep what is written, and the refusals (exit 2, a message naming the problem)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from benchmark_layouts import Layout, write_layout
from colour_task import N_FRAMES
from typer.testing import CliRunner

from hfs.stages.cli import app

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.xdist_group("select")]  # its fixtures are built once, on one worker; other modules run beside it

SELECTORS = ["uniform", "random", "clip", "hfs", "hfs-set"]
FIELDS = ["sample_id", "video_id", "benchmark", "view", "question_id", "video_path", "n_frames", "duration_s",
          "selector", "k", "indices", "timestamps_s", "scores"]
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
            "--no-progress", "--device", "cpu", "--workers", "0", *questions,
            *(["--run", str(run)] if run is not None else [])]


def check_lines(records: list[dict], selector: str, cache, n: int) -> None:
    """The JSONL layout: one line per question with k distinct ascending frames and their times, N and
    the clip's duration."""
    for r in records:
        assert list(r) == FIELDS
        assert (r["selector"], r["k"], r["n_frames"]) == (selector, K, n)
        assert r["duration_s"] == pytest.approx(cache.row(r["video_id"])["duration"], abs=1e-4) and r["duration_s"] > 0
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
    written = {r["id"]: r["video"] for r in json.loads(colour_task.manifest.read_text())}
    for r in records:  # a manifest's question: its id, and its video path as the manifest wrote it
        assert (r["benchmark"], r["view"], r["question_id"]) == (None, None, r["sample_id"])
        assert r["video_path"] == written[r["sample_id"]]
    assert f"{selector}: {len(samples)} questions → {out}" in output
    assert (tmp_path / "sel" / f"{selector}.skipped.jsonl").read_text() == ""  # none skipped: an empty list
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


def test_a_rerun_selects_again_the_lines_written_before_the_export_format(colour_task, tmp_path, caplog):
    out = tmp_path / "uniform.jsonl"
    invoke(select_args(colour_task.cache, out, "uniform", None, "--manifest", str(colour_task.manifest)))
    current = read_jsonl(out)
    old = [{k: r[k] for k in ("sample_id", "video_id", "selector", "k", "indices", "timestamps_s", "scores")}
           for r in current]
    out.write_text("".join(json.dumps(r) + "\n" for r in old[:3]) + "".join(json.dumps(r) + "\n" for r in current[3:]))
    invoke(select_args(colour_task.cache, out, "uniform", None, "--manifest", str(colour_task.manifest)))
    assert sorted(read_jsonl(out), key=lambda r: r["sample_id"]) == sorted(current, key=lambda r: r["sample_id"])
    assert "3 line(s) written before the export format" in caplog.text


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
    skipped = read_jsonl(tmp_path / "uniform.skipped.jsonl")
    assert [(s["sample_id"], s["question_id"], s["video_path"], s["reason"]) for s in skipped] == [
        (None, None, None, "unreadable record"),
        ("elsewhere", "elsewhere", "videos/not_extracted.mp4", "video not in the cache")]
    assert str(manifest) in skipped[0]["source"]
    assert f"(listed in {tmp_path / 'uniform.skipped.jsonl'})" in output


# --------------------------------------------------------------------------- questions from a benchmark folder


@pytest.fixture(scope="module")
def bench_cache(tmp_path_factory) -> tuple[Layout, Path]:
    """A NExT-QA folder (3 questions on 2 videos, a bad row, a missing video) and a cache of only its
    first video, so `hfs select --bench` has the second one to extract (tests copy the cache)."""
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


def copy_cache(cache: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(cache, tmp_path / "cache"))


@pytest.mark.parametrize("selector", SELECTORS)
def test_select_from_a_benchmark_folder(bench_cache, saved_model, tmp_path, selector):
    from hfs.cache import FeatureCache

    layout, cache = bench_cache
    cache = copy_cache(cache, tmp_path)
    out = tmp_path / f"{selector}.jsonl"
    run = saved_model if selector.startswith("hfs") else None
    output = invoke(select_args(cache, out, selector, run, "--bench", "nextqa", "--data", str(layout.root)))
    records = read_jsonl(out)
    assert [r["sample_id"] for r in records] == ["101_0", "101_1", "102_0"]  # 102's video extracted first
    check_lines(records, selector, FeatureCache(cache), BENCH_FRAMES)
    assert [(r["benchmark"], r["view"], r["question_id"], r["video_path"]) for r in records] == [
        ("nextqa", "parquet", 0, "NExTVideo/101.mp4"), ("nextqa", "parquet", 1, "NExTVideo/101.mp4"),
        ("nextqa", "parquet", 0, "NExTVideo/102.mp4")]  # NExT-QA's qid, the video relative to --data
    assert f"{selector}: 3 questions → {out}" in output
    assert "video not in the cache" not in output
    for reason in ("bad row", "missing video"):
        assert f"1 skipped: {reason}" in output, output
    skipped = read_jsonl(tmp_path / f"{selector}.skipped.jsonl")
    assert [(s["benchmark"], s["view"], s["sample_id"], s["question_id"], s["video_path"], s["reason"])
            for s in skipped] == [("nextqa", "parquet", None, None, None, "bad row"),
                                  ("nextqa", "parquet", "103_0", 0, "NExTVideo/103.mp4", "missing video")]
    assert "answer" in skipped[0]["source"]  # the row and why it could not be read


def test_select_bench_extracts_only_what_the_cache_lacks_and_skips_failed_videos(bench_cache, tmp_path):
    layout, cache = bench_cache
    cache = copy_cache(cache, tmp_path)
    out = tmp_path / "uniform.jsonl"
    invoke(select_args(cache, out, "uniform", None, "--bench", "nextqa", "--data", str(layout.root)))
    assert len(read_jsonl(out)) == 3
    # a second run with nothing new to extract leaves the cache as it is
    snapshot = {p.relative_to(cache): p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}
    output = invoke(select_args(cache, out, "uniform", None, "--bench", "nextqa", "--data", str(layout.root)))
    assert {p.relative_to(cache): p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()} == snapshot
    assert "uniform: 3 questions" in output

    # a video that fails extraction is skipped as such, and listed
    data = Path(shutil.copytree(layout.root, tmp_path / "data"))
    (data / "NExTVideo" / "102.mp4").write_bytes(b"not a video")
    fresh = copy_cache(bench_cache[1], tmp_path / "fresh")
    out = tmp_path / "after_failure.jsonl"
    output = invoke(select_args(fresh, out, "uniform", None, "--bench", "nextqa", "--data", str(data)))
    assert [r["sample_id"] for r in read_jsonl(out)] == ["101_0", "101_1"]
    assert "1 skipped: extraction error" in output
    reasons = {s["sample_id"]: s["reason"] for s in read_jsonl(tmp_path / "after_failure.skipped.jsonl")}
    assert reasons["102_0"] == "extraction error"


def test_batches_select_what_one_question_at_a_time_selects(colour_task, saved_model, tmp_path):
    """hfs and hfs-set, --batch-size 1 and 4, questions of very different lengths (padding matters).
    The colour task's frames are alike, so its standardised scores magnify float rounding: they agree
    to 1e-4 here (to 1e-5 on random features, test_selectors)."""
    records = json.loads(colour_task.manifest.read_text())
    fillers = ["", " Look closely at the whole video from the very beginning to the very end before you answer.",
               " Quickly.", " " + " ".join(["Think about every frame, one after the other."] * 6)]
    for i, r in enumerate(records):
        turn = r["conversations"][0]
        head, rest = turn["value"].split("\n", 2)[:2], turn["value"].split("\n", 2)[2]
        turn["value"] = f"{head[0]}\n{head[1]}{fillers[i % len(fillers)]}\n{rest}"
    manifest = tmp_path / "mixed.json"
    manifest.write_text(json.dumps(records))
    for selector in ("hfs", "hfs-set"):
        runs = {}
        for b in (1, 4):
            out = tmp_path / f"{selector}-b{b}.jsonl"
            invoke(select_args(colour_task.cache, out, selector, saved_model, "--manifest", str(manifest))
                   + ["--batch-size", str(b)])
            runs[b] = read_jsonl(out)
        assert len(runs[1]) == len(records)
        assert [r["indices"] for r in runs[4]] == [r["indices"] for r in runs[1]]
        for one, four in zip(runs[1], runs[4]):
            np.testing.assert_allclose(four["scores"], one["scores"], rtol=0, atol=1e-4)
            assert {k: v for k, v in four.items() if k != "scores"} == {k: v for k, v in one.items() if k != "scores"}


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
