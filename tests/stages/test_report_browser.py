"""`hfs report` end to end: the verb on files as the stages write them, its refusals (exit 2, the
file named), and the page in a real browser: headless Chromium (Debian's `chromium`, installed
by the session fixture when missing and when running as root) driven by Playwright, with no
console errors, no network request, one section per question, every selector's frames
marked, every thumbnail decoded, and a full-page screenshot kept as a test artifact
(``$HFS_TEST_ARTIFACTS``, default ``tests/artifacts/``, git-ignored)."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hfs.stages.cli import app

N, K, QUESTIONS = 128, 16, 4  # the paper's grid and k
SELECTORS = ("uniform", "clip", "hfs")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(os.environ.get("HFS_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "artifacts"))


def invoke(args: list[str], expect: int = 0) -> str:
    from hfs.stages.console import console

    with pytest.MonkeyPatch.context() as mp:  # rich wraps at the console's width; a long path must stay whole
        mp.setattr(console, "_width", 500)
        res = CliRunner().invoke(app, args)
    assert res.exit_code == expect, res.output + repr(res.exception)
    return " ".join(res.output.split())


# --------------------------------------------------------------------------- inputs as the stages write them


def _frame(q: int, j: int) -> bytes:
    """Frame j of video q, 160×90: a colour drifting over time and a block moving across; the
    answer-bearing frames (40..43) show a yellow disc."""
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (160, 90), (30 + 50 * q, 60 + j, 200 - j))
    draw = ImageDraw.Draw(im)
    x = int(j / N * 140)
    draw.rectangle((x, 50, x + 20, 80), fill=(240, 240, 240))
    if 40 <= j < 44:
        draw.ellipse((60, 15, 100, 55), fill=(250, 220, 0))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85)
    return buf.getvalue()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """A cache of QUESTIONS videos × N frames, one `hfs select` file per selector, a manifest with
    the questions, the synthetic task's ground truth and a run folder with metrics.jsonl."""
    from hfs.cache import VideoResult, plan_extraction, write_shard
    from hfs.manifests.records import VideoItem, make_video_id
    from hfs.pipeline.evaluation.recall import EventTruth, QuestionTruth

    root = tmp_path_factory.mktemp("report_inputs")
    (root / "videos").mkdir()
    videos = [VideoItem(make_video_id(f"videos/v{q}.mp4"), str(root / f"videos/v{q}.mp4"), f"videos/v{q}.mp4")
              for q in range(QUESTIONS)]
    cache = root / "cache"
    plan, _ = plan_extraction(cache, videos, {"frames": N, "size": 224, "model": "test", "pretrained": "none"},
                              shard_size=2)
    times = (np.arange(N, dtype=np.float32) + 0.5) * 0.25  # a 32 s video
    for shard in plan.shards:
        write_shard(cache, shard.name, [
            VideoResult(v["video_id"], v["path"], features=np.zeros((N, 8), np.float16), timestamps=times,
                        frames=[_frame(int(v["key"][8]), j) for j in range(N)], duration=32.0, fps=25.0,
                        width=160, height=90, frames_decoded=N, distinct_frames=N)
            for v in shard.videos], {"frames": N, "embed_dim": 8, "size": 224, "model": "test", "pretrained": "none",
                                     "teacher_frames": True})

    rng = np.random.default_rng(0)
    records = []
    for q, v in enumerate(videos):
        records.append({"id": f"q{q}", "video": v.key, "conversations": [
            {"from": "human", "value": f"<video>\nWhat colour is the disc in video {q}?\nA. yellow\nB. red\nC. blue"},
            {"from": "gpt", "value": "A"}]})
    (root / "questions.json").write_text(json.dumps(records))
    files = {}
    for selector in SELECTORS:
        lines = []
        for q, v in enumerate(videos):
            scores = None if selector == "uniform" else rng.random(N).round(6)
            if scores is not None and selector == "hfs":
                scores[40:44] += 1.0  # hfs finds the disc
            indices = (list(range(4, N, N // K)) if scores is None else sorted(np.argsort(-scores)[:K].tolist()))
            lines.append({"sample_id": f"q{q}", "video_id": v.video_id, "selector": selector, "k": K,
                          "indices": indices, "timestamps_s": [round(float(times[i]), 4) for i in indices],
                          "scores": None if scores is None else scores.tolist()})
        files[selector] = root / f"{selector}.jsonl"
        files[selector].write_text("".join(json.dumps(r) + "\n" for r in lines))
    truth = [QuestionTruth(f"q{q}", "train", None, v.key, "colour", "DO", "What colour is the disc?",
                           ("yellow", "red", "blue"), 0, 32.0, 25.0, 800, N,
                           (EventTruth("yellow", "circle", 10.0, 11.0, 250, 275, (40, 41, 42, 43)),)).to_json()
             for q, v in enumerate(videos)]
    (root / "ground_truth.jsonl").write_text("".join(json.dumps(t) + "\n" for t in truth))
    run = root / "runs" / "tiny"
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text("".join(json.dumps(
        {"step": s, "total": 1.6 - 0.01 * s, "ce": 1.6 - 0.01 * s, "kl": 0.05, "set_objective": 2.0, "relevance": 8.0,
         "coverage": 9.8, "redundancy": 45.0, "sep": 0.01, "tau": max(0.5, 2.0 * 0.999 ** s),
         "lambda_kl": min(1.0, 0.1 + 0.9 * s / 20), "lambda_set": 1e-4, "lambda_sep": 0.01, "lr": 1e-5,
         "grad_norm": 1.0}) + "\n" for s in range(1, 41)))
    (run / "config.json").write_text(json.dumps({"train": {"lr": 1e-5}}))
    return {"cache": cache, "manifest": root / "questions.json", "truth": root / "ground_truth.jsonl", "run": run,
            **files}


def report_args(inputs: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["report", "--cache", str(inputs["cache"]), "--out", str(out),
            *[a for s in SELECTORS for a in ("--selections", str(inputs[s]))],
            "--manifest", str(inputs["manifest"]), "--truth", str(inputs["truth"]), "--run", str(inputs["run"]), *extra]


# --------------------------------------------------------------------------- the verb


def test_report_verb_writes_the_page_and_prints_its_path(inputs, tmp_path):
    out = tmp_path / "sub" / "report.html"
    printed = invoke(report_args(inputs, out))
    assert f"report: {QUESTIONS} questions, 3 selectors (uniform, clip, hfs)" in printed
    assert str(out) in printed and out.is_file()
    text = out.read_text()
    assert text.count('<section class="question"') == QUESTIONS
    assert "What colour is the disc in video 3?" in text  # the manifest's question text

    printed = invoke(report_args(inputs, tmp_path / "two.html", "--max-questions", "2"))
    assert f"report: 2 of {QUESTIONS} questions" in printed


def test_every_report_option_has_help():
    import typer

    command = typer.main.get_command(app).commands["report"]
    assert [p.name for p in command.params if not p.help] == []
    assert {"cache", "out", "selections", "predictions", "run", "bench", "data", "manifest", "truth",
            "max_questions"} <= {p.name for p in command.params}


@pytest.mark.parametrize("case, message", [
    ("nothing", "error: nothing to report: give --selections FILE"),
    ("missing", "missing.jsonl: no such file (an `hfs select` JSONL file)"),
    ("garbled", "garbled.jsonl:2: not valid JSON"),
    ("predictions", "uniform.jsonl:1: missing field(s) prediction, correct"),
    ("cache", "--cache {tmp}/nocache: no such folder"),
    ("run", "{tmp}: no metrics.jsonl there or in its parent folders"),
    ("truth", "garbled.jsonl:2: not valid JSON"),
    ("bench", "--bench nextqa needs --data DIR"),
])
def test_report_refuses_with_exit_2_naming_the_file(inputs, tmp_path, case, message):
    garbled = tmp_path / "garbled.jsonl"
    garbled.write_text(inputs["uniform"].read_text().splitlines()[0] + "\n{not json\n")
    base = ["report", "--cache", str(inputs["cache"]), "--out", str(tmp_path / "r.html")]
    sel = ["--selections", str(inputs["uniform"])]
    args = {
        "nothing": base,
        "missing": base + ["--selections", str(tmp_path / "missing.jsonl")],
        "garbled": base + ["--selections", str(garbled)],
        "predictions": base + ["--predictions", str(inputs["uniform"])],
        "cache": ["report", "--cache", str(tmp_path / "nocache"), "--out", str(tmp_path / "r.html")] + sel,
        "run": base + sel + ["--run", str(tmp_path)],
        "truth": base + sel + ["--truth", str(garbled)],
        "bench": base + sel + ["--bench", "nextqa"],
    }[case]
    printed = invoke(args, expect=2)
    assert message.format(tmp=tmp_path) in printed
    assert not (tmp_path / "r.html").exists()


# --------------------------------------------------------------------------- the page in Chromium


def _install_chromium() -> str | None:
    """Debian's chromium via apt-get (root only); None and the reason printed when it cannot be had."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "chromium"]
    for commands in ([install], [["apt-get", "update"], install]):  # the package lists may be missing or stale
        if all(subprocess.run(c, env=env, capture_output=True, timeout=900).returncode == 0 for c in commands):
            break
    return shutil.which("chromium")


@pytest.fixture(scope="session")
def chromium() -> str:
    """The path of a headless-capable Chromium: Debian's package, installed when missing."""
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        try:
            path = _install_chromium()
        except (OSError, subprocess.TimeoutExpired) as err:
            pytest.skip(f"chromium is not installed and apt-get failed: {err}")
        if path is None:
            why = ("installing it needs root" if os.geteuid() != 0 else "`apt-get install chromium` did not provide it")
            pytest.skip(f"chromium is not installed and {why}; install Debian's `chromium` package to run this test")
    return path


COUNT_MARKS = """() => Array.from(document.querySelectorAll('section.question')).map(s => ({
    id: s.id,
    frames: s.querySelectorAll('li.frame').length,
    truth: s.querySelectorAll('li.frame.truth').length,
    marks: Object.fromEntries(%s.map(name => [name, s.querySelectorAll(`.selected[data-selector="${name}"]`).length])),
    plot: s.querySelector('figure.scores svg').getBoundingClientRect().width,
}))""" % json.dumps(list(SELECTORS))

BROKEN_IMAGES = "() => Array.from(document.images).filter(im => !im.complete || im.naturalWidth === 0).length"


@pytest.mark.xdist_group("browser")
def test_report_in_headless_chromium(chromium, inputs, tmp_path):
    from playwright.sync_api import sync_playwright

    out = tmp_path / "report.html"
    invoke(report_args(inputs, out))
    problems, requests = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            tmp_path / "profile", executable_path=chromium, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 900})
        try:
            page = browser.new_page()
            page.on("console", lambda m: m.type in ("error", "warning")
                    and problems.append(f"console {m.type}: {m.text}"))
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(out.as_uri(), wait_until="load")

            assert page.title() == "hfs report: frame selections"
            sections = page.evaluate(COUNT_MARKS)
            assert [s["id"] for s in sections] == [f"q-q{q}" for q in range(QUESTIONS)]
            for s in sections:
                assert s["frames"] == N and s["truth"] == 4 and s["plot"] > 300
                assert s["marks"] == {name: K for name in SELECTORS}
            assert page.evaluate(BROKEN_IMAGES) == 0  # every WebP thumbnail decoded
            assert page.locator("img").count() == QUESTIONS * N
            assert page.locator("#training svg").count() == 1
            assert page.locator("table.summary th[data-selector]").count() == len(SELECTORS)

            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert problems == []
    assert [u for u in requests if not u.startswith("data:")] == [out.as_uri()]  # nothing but the file itself
    assert shot.stat().st_size > 10_000
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "report.png")
    shutil.copy(out, ARTIFACTS / "report.html")
