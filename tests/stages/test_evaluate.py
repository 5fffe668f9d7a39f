"""`hfs evaluate` end to end with the tiny preset on generated videos: every published layout of
the four benchmarks (both views where two exist), every selector, the benchmark's own breakdown
with skipped questions counted by reason, the printed table, Video-MME and LongVideoBench with subtitles, and
resuming after a SIGKILL to the predictions of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from benchmark_layouts import LAYOUTS, Layout, write_layout
from typer.testing import CliRunner

from hfs.stages.cli import app

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.xdist_group("evaluate")]  # its fixtures are built once, on one worker; other modules run beside it

SELECTORS = ["uniform", "random", "clip", "hfs", "hfs-set"]
K = 4
N = 128  # frames per video in the cache `hfs evaluate --preset tiny` makes
SKIPPED = {"bad row": 1, "missing video": 1}  # every layout has one malformed row and one missing video

# Per layout: where the benchmark's grouped breakdown sits in a selector's aggregate, and
# (scored, skipped) per group (the missing video's question counts as skipped in its group).
BREAKDOWN = {
    ("nextqa", "parquet"): (("by_group",), {"causal": (1, 0), "temporal": (1, 0), "descriptive": (1, 1)}),
    ("videomme", "parquet"): (("without_subtitles", "by_duration"), {"short": (2, 0), "medium": (0, 1), "long": (1, 0)}),
    ("longvideobench", "json"): (("without_subtitles", "by_duration_group"),
                                 {"15": (2, 0), "60": (1, 0), "3600": (0, 1)}),
    ("longvideobench", "parquet"): (("without_subtitles", "by_duration_group"),
                                    {"15": (2, 0), "60": (1, 0), "3600": (0, 1)}),
    ("mlvu", "json"): (("by_task",), {"plotQA": (2, 0), "needle": (1, 1)}),
    ("mlvu", "parquet"): (("by_task",), {"plotQA": (2, 0), "count": (1, 0), "anomaly_reco": (0, 1)}),
}
TOP_LEVEL = {
    "nextqa": {"overall", "by_group", "by_type", "by_official_type"},
    "videomme": {"without_subtitles"},
    "longvideobench": {"without_subtitles"},
    "mlvu": {"m_avg", "by_task", "mean_over_questions"},
}
TITLES = {"nextqa": "NExT-QA", "videomme": "Video-MME", "longvideobench": "LongVideoBench", "mlvu": "MLVU"}


def invoke(args: list[str], expect: int = 0) -> str:
    from hfs.stages.console import console

    # rich wraps at the console's width, fixed when it was made (80 under pytest-xdist, which sets COLUMNS)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(console, "_width", 500)
        res = CliRunner().invoke(app, args)
    assert res.exit_code == expect, res.output + repr(res.exception)
    return res.output


def evaluate_args(layout: Layout, out: Path, run: Path, *extra: str, selectors=SELECTORS) -> list[str]:
    return ["evaluate", "--bench", layout.bench, "--data", str(layout.root), "--out", str(out), "--preset", "tiny",
            "--workers", "0", "--no-progress", "--device", "cpu", "--run", str(run), "--k", str(K),
            *[a for s in selectors for a in ("--selector", s)], *extra]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def table_rows(output: str) -> list[list[str]]:
    """The cells of every line of a rich table in ``output`` (header and body)."""
    rows = []
    for line in output.splitlines():
        for sep in ("┃", "│"):
            if line.count(sep) >= 2:
                rows.append([c.strip() for c in line.strip().strip(sep).split(sep)])
    return rows


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def source_videos(tmp_path_factory) -> list[Path]:
    """Three short 64×48 videos (2–3 s at 10 fps) of coloured screens and shapes."""
    from hfs.pipeline.demo.videos import shape, solid, write_scene_video

    root = tmp_path_factory.mktemp("source_videos")
    scenes = [
        [(15, solid((220, 40, 40))), (15, shape("circle", (40, 200, 40)))],
        [(10, solid((50, 80, 230))), (10, shape("square", (250, 250, 250)))],
        [(20, shape("triangle", (240, 220, 30), background=(20, 20, 60)))],
    ]
    paths = []
    for i, scene in enumerate(scenes):
        write_scene_video(root / f"src{i}.mp4", scene, fps=10, size=(64, 48))
        paths.append(root / f"src{i}.mp4")
    return paths


@pytest.fixture(scope="module")
def hfs_run(colour_task, tmp_path_factory) -> Path:
    """A tiny run trained for 2 steps (its student serves hfs / hfs-set, its teacher answers)."""
    out = tmp_path_factory.mktemp("hfs_run") / "run"
    res = CliRunner().invoke(app, colour_task.train_args(out, "--max-steps", "2", "--set", "train.checkpoint_every=2"))
    assert res.exit_code == 0, res.output + repr(res.exception)
    return out


@dataclass
class Evaluated:
    """One finished `hfs evaluate` run and what it wrote."""

    layout: Layout
    out: Path
    output: str
    records: list[dict]
    scores: dict

    @property
    def cache(self):
        from hfs.cache import FeatureCache

        return FeatureCache(self.out / "cache")

    @property
    def samples(self) -> dict:
        from hfs.manifests.benchmarks import get_benchmark

        return {s.sample_id: s for s in get_benchmark(self.layout.bench).read(self.layout.root).samples}


class Evaluations:
    """Each layout written and evaluated once per module, on first use."""

    def __init__(self, root: Path, videos: list[Path], run: Path) -> None:
        self.root, self.videos, self.run, self.done = root, videos, run, {}

    def get(self, bench: str, view: str) -> Evaluated:
        if (bench, view) not in self.done:
            layout = write_layout(bench, view, self.root / f"{bench}-{view}" / "data", self.videos)
            out = self.root / f"{bench}-{view}" / "out"
            output = invoke(evaluate_args(layout, out, self.run))
            print(f"\n== hfs evaluate, {bench} ({view} view)\n{output}")  # the tables, for `pytest -s`
            self.done[bench, view] = Evaluated(layout, out, output, read_jsonl(out / "predictions.jsonl"),
                                               json.loads((out / "scores.json").read_text()))
        return self.done[bench, view]


@pytest.fixture(scope="module")
def evaluations(tmp_path_factory, source_videos, hfs_run) -> Evaluations:
    return Evaluations(tmp_path_factory.mktemp("evaluate"), source_videos, hfs_run)


@pytest.fixture(scope="module", params=LAYOUTS, ids=[f"{b}-{v}" for b, v in LAYOUTS])
def evaluated(request, evaluations) -> Evaluated:
    return evaluations.get(*request.param)


# --------------------------------------------------------------------------- every layout, every selector


def test_every_selector_answers_every_question_once_from_valid_frames(evaluated):
    layout, records, samples, cache = evaluated.layout, evaluated.records, evaluated.samples, evaluated.cache
    keys = [(r["selector"], r["sample_id"], bool(r.get("subtitles", False))) for r in records]
    assert len(keys) == len(set(keys))
    assert sorted(k[:2] for k in keys) == sorted((s, q) for s in SELECTORS for q in layout.answerable)
    assert set(samples) == set(layout.answerable)
    assert not list(evaluated.out.glob("predictions.rank-*.jsonl"))  # merged into predictions.jsonl
    for r in records:
        sample = samples[r["sample_id"]]
        idx = r["indices"]
        assert len(idx) == K and idx == sorted(set(idx)) and 0 <= idx[0] and idx[-1] < N, r
        assert r["video_id"] == sample.video_id
        times = cache.timestamps(sample.video_id)
        assert r["timestamps_s"] == [round(float(times[i]), 4) for i in idx]
        assert len(r["option_logits"]) == len(sample.options)
        assert r["prediction"] == "ABCDE"[int(np.argmax(r["option_logits"]))]
        assert r["answer_index"] == sample.answer_index
        assert r["correct"] == (r["prediction"] == "ABCDE"[sample.answer_index])
        scores = r["frame_scores"]
        if r["selector"] in ("uniform", "random"):
            assert scores is None
        else:
            assert len(scores) == N
            if r["selector"] in ("clip", "hfs"):  # the k best-scored frames
                assert min(scores[i] for i in idx) >= max(s for i, s in enumerate(scores) if i not in idx)
        if r["selector"] == "uniform":
            assert idx == [16, 48, 80, 112]
    # a selector's frames follow the question: the same (seeded) draw as the selector alone
    from hfs.pipeline.evaluation.predictions import query_of
    from hfs.pipeline.evaluation.selectors import SelectorContext, get_selector

    for r in records:
        if r["selector"] == "random":
            query = query_of(samples[r["sample_id"]], cache)
            assert r["indices"] == get_selector("random")(query, SelectorContext(k=K, seed=0)).indices


def test_scores_have_the_benchmarks_breakdown_and_count_skipped_questions_by_reason(evaluated, hfs_run):
    layout, scores = evaluated.layout, evaluated.scores
    assert scores["benchmark"] == layout.bench and scores["title"] == TITLES[layout.bench]
    assert list(scores["selectors"]) == SELECTORS and list(scores["headline"]) == SELECTORS
    assert (scores["k"], scores["questions"], scores["run"]) == (K, 3, str(hfs_run))
    assert scores["teacher"].endswith("(LoRA-tuned)")  # the run's teacher answers
    path, groups = BREAKDOWN[layout.bench, layout.view]
    for selector in SELECTORS:
        aggregate = scores["selectors"][selector]
        assert set(aggregate) == TOP_LEVEL[layout.bench]
        headline = scores["headline"][selector]
        mine = [r for r in evaluated.records if r["selector"] == selector]
        assert (headline["n"], headline["skipped"], headline["skipped_by_reason"]) == (3, 2, SKIPPED)
        assert headline["of"] == 5  # N: every question in the benchmark's files, scored or not
        if layout.bench != "mlvu":  # MLVU's headline is M-Avg, a mean of per-task accuracies
            assert headline["correct"] == sum(r["correct"] for r in mine)
            assert headline["accuracy"] == pytest.approx(headline["correct"] / 3)
        cells = aggregate
        for key in path:
            cells = cells[key]
        for group, (n, skipped) in groups.items():
            assert (cells[group]["n"], cells[group]["skipped"]) == (n, skipped), (selector, group, cells[group])
            if skipped:
                assert cells[group]["skipped_by_reason"] == {"missing video": 1}
    if layout.bench == "mlvu":
        m_avg = scores["selectors"]["uniform"]["m_avg"]
        scored = [g for g, (n, _) in groups.items() if n]
        assert m_avg["groups_scored"] == len(scored)
        by_task = scores["selectors"]["uniform"]["by_task"]
        assert m_avg["accuracy"] == pytest.approx(np.mean([by_task[g]["accuracy"] for g in scored]))
    if layout.bench == "nextqa":
        by_type = scores["selectors"]["uniform"]["by_type"]
        assert [t for t in by_type] == ["CW", "TN", "DC", "DL"] and by_type["DL"]["n"] == 0


def test_the_printed_table_shows_the_selectors_side_by_side(evaluated):
    from hfs.pipeline.evaluation.scoring import comparison_rows, headline_lines

    output = evaluated.output
    layout = evaluated.layout
    title = TITLES[layout.bench]
    assert f"{title} ({layout.view} view): 3 questions, 1 skipped: bad row, 1 skipped: missing video" in output
    assert f"{title}: accuracy % (questions scored)" in output
    header, rows = comparison_rows(evaluated.scores)
    printed = table_rows(output)
    assert [""] + header[1:] in printed
    for row in rows:
        assert row in printed, (row, output)
    assert ["skipped", *["2"] * len(SELECTORS)] in printed
    lines = headline_lines(evaluated.scores)
    assert [line.split(" % ")[1] for line in lines] == [
        "over 3 of 5 questions (2 skipped: 1 bad row, 1 missing video)"] * len(SELECTORS)
    for line in lines:
        assert line in output
    if layout.bench == "mlvu":  # 2 or 3 of MLVU's 7 tasks: the M-Avg is not the published one
        assert "note: uniform: M-Avg is the mean over " in output and "of 7 tasks" in output
    else:
        assert "note:" not in output
    assert f"predictions: {evaluated.out / 'predictions.jsonl'}" in output


# --------------------------------------------------------------------------- subtitles, rerun, resume


@pytest.mark.parametrize(("bench", "view", "group", "setting_keys"), [
    ("videomme", "parquet", ("by_duration", "short"),
     {"overall", "by_duration", "by_task_type", "by_domain", "by_sub_category"}),
    ("longvideobench", "json", ("by_duration_group", "15"),
     {"overall", "by_duration_group", "by_question_category"}),
])
def test_with_subtitles_both_settings_are_answered_in_batches_and_scored_apart(
        evaluations, hfs_run, tmp_path, monkeypatch, bench, view, group, setting_keys):
    from hfs.pipeline.evaluation.predictions import TeacherAnswerer

    base = evaluations.get(bench, view)
    calls = []
    answer = TeacherAnswerer.__call__

    def recording(self, samples, indices, timestamps, subtitles=None):
        calls.append((len(samples), subtitles is not None))
        return answer(self, samples, indices, timestamps, subtitles)

    monkeypatch.setattr(TeacherAnswerer, "__call__", recording)
    out = tmp_path / "subs"
    output = invoke(evaluate_args(base.layout, out, hfs_run, "--subtitles", "--cache", str(base.out / "cache"),
                                  selectors=["uniform", "hfs"]))
    assert not (out / "cache").exists()  # the given cache was used (and held every video already)
    records = read_jsonl(out / "predictions.jsonl")
    with_subs = {(r["selector"], r["sample_id"]): r for r in records if r.get("subtitles")}
    without = {(r["selector"], r["sample_id"]): r for r in records if not r.get("subtitles")}
    assert set(with_subs) == set(without) == {(s, q) for s in ("uniform", "hfs") for q in base.layout.answerable}
    for key, r in with_subs.items():
        assert r["indices"] == without[key]["indices"]  # the same frames in both settings
        has_file = r["sample_id"] in base.layout.subtitled
        assert (r["subtitle_lines"] > 0) == has_file, r  # every frame of those videos has a cue
        assert "subtitle_lines" not in without[key]
    # the 3 questions of a selector go to the teacher together, one batch per setting
    assert sorted(calls) == [(3, False), (3, False), (3, True), (3, True)]
    scores = json.loads((out / "scores.json").read_text())
    for selector in ("uniform", "hfs"):
        aggregate = scores["selectors"][selector]
        assert set(aggregate) == {"without_subtitles", "with_subtitles"}
        for name, flag in (("without_subtitles", False), ("with_subtitles", True)):
            setting = aggregate[name]
            assert set(setting) == setting_keys
            assert (setting["overall"]["n"], setting["overall"]["skipped_by_reason"]) == (3, SKIPPED)
            assert setting["overall"]["correct"] == sum(
                r["correct"] for r in records if r["selector"] == selector and bool(r.get("subtitles")) == flag)
            assert setting[group[0]][group[1]]["n"] == 2
        assert scores["headline"][selector] == {**aggregate["without_subtitles"]["overall"], "of": 5}
    printed = table_rows(output)
    assert any(row[0] == "overall (w/ subs)" for row in printed)
    assert any(row[0] == "overall (w/o subs)" for row in printed)


def test_a_finished_evaluation_rerun_answers_nothing_again(evaluations, hfs_run, monkeypatch):
    from hfs.pipeline.evaluation.predictions import TeacherAnswerer

    done = evaluations.get("nextqa", "parquet")

    def fail(*args, **kwargs):
        raise AssertionError("a finished question was answered again")

    monkeypatch.setattr(TeacherAnswerer, "__call__", fail)
    invoke(evaluate_args(done.layout, done.out, hfs_run))
    assert read_jsonl(done.out / "predictions.jsonl") == done.records
    assert json.loads((done.out / "scores.json").read_text()) == done.scores


def test_every_prediction_records_the_settings_it_was_made_with(evaluations, hfs_run):
    from hfs.pipeline.train.checkpoint import run_model_dir

    done = evaluations.get("nextqa", "parquet")
    model = run_model_dir(hfs_run).resolve()
    for r in done.records:
        assert (r["k"], r["teacher"], r["run"], r["seed"]) == (K, f"{model} (LoRA-tuned)", str(model), 0)
    assert done.scores["teacher"] == f"{model} (LoRA-tuned)"


@pytest.mark.parametrize(("change", "held", "asked"), [
    ("k", "k=4", "k=2"),
    ("seed", "seed=0", "seed=1"),
    ("teacher", "LoRA-tuned", "teacher='tiny-qwen2_5_vl'"),
    ("run", "run=", "run_copy"),
])
def test_a_rerun_with_other_settings_into_the_same_out_is_refused(evaluations, hfs_run, tmp_path, monkeypatch,
                                                                  change, held, asked):
    """Resuming is keyed on selector, question and subtitles: predictions made with another k,
    teacher, run or seed must not be reused and labelled with the new settings."""
    import shutil

    from hfs.pipeline.evaluation.predictions import TeacherAnswerer

    done = evaluations.get("nextqa", "parquet")
    out = tmp_path / "out"
    out.mkdir()
    shutil.copyfile(done.out / "predictions.jsonl", out / "predictions.jsonl")
    run, extra = hfs_run, ["--cache", str(done.out / "cache")]
    if change == "run":  # the same weights in another folder: another run as far as the records can tell
        run = tmp_path / "run_copy"
        shutil.copytree(hfs_run, run)
    elif change == "teacher":
        extra += ["--teacher", "qwen2.5-vl"]
    else:
        extra += [f"--{change}", {"k": "2", "seed": "1"}[change]]

    def fail(*args, **kwargs):
        raise AssertionError("a question was answered")

    monkeypatch.setattr(TeacherAnswerer, "__call__", fail)
    output = " ".join(invoke(evaluate_args(done.layout, out, run, *extra), expect=2).split())
    assert f"{out / 'predictions.jsonl'} holds predictions made with" in output, output
    assert held in output and asked in output, output
    assert "choose another --out, or delete that file" in output
    assert (out / "predictions.jsonl").read_text() == (done.out / "predictions.jsonl").read_text()
    assert not (out / "scores.json").exists()


def comparable(records: list[dict]) -> dict:
    return {(r["selector"], r["sample_id"], bool(r.get("subtitles"))): r for r in records}


def test_a_killed_evaluation_resumes_to_the_predictions_of_an_uninterrupted_run(evaluations, hfs_run, tmp_path):
    reference = evaluations.get("nextqa", "parquet")
    out = tmp_path / "out"
    args = evaluate_args(reference.layout, out, hfs_run, "--batch-size", "1")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}  # the child's tiny models land here
    with open(tmp_path / "stderr.txt", "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "hfs.stages.cli", *args], stdout=subprocess.DEVNULL,
                                stderr=stderr, env=env)
        partial = out / "predictions.rank-0.jsonl"
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            if partial.exists() and partial.read_text().count("\n") >= 2:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "stderr.txt").read_text()[-3000:]
    text = partial.read_text()
    written = text[: text.rfind("\n") + 1].splitlines()  # complete lines (the kill may have torn the last)
    assert 2 <= len(written) < len(reference.records) and not (out / "predictions.jsonl").exists()
    # a kill in the middle of a write leaves a torn last line: the rerun must not lose a record to it
    with open(partial, "a") as f:
        f.write('{"type": "DC", "group": "descriptive", "qid": 0, "sample_id": "102_0", "sel')

    invoke(args)

    records = read_jsonl(out / "predictions.jsonl")
    keys = [(r["selector"], r["sample_id"], bool(r.get("subtitles"))) for r in records]
    assert len(keys) == len(set(keys)), "a question was answered twice"
    resumed, uninterrupted = comparable(records), comparable(reference.records)
    assert resumed.keys() == uninterrupted.keys()
    for key, r in uninterrupted.items():
        for field in ("prediction", "correct", "indices", "timestamps_s", "option_logits"):
            assert resumed[key][field] == r[field], (key, field)
        # batch 1 here, 4 there: the student's padded batch agrees up to float rounding (see the next test)
        np.testing.assert_allclose(np.array(resumed[key]["frame_scores"], dtype=float),
                                   np.array(r["frame_scores"], dtype=float), rtol=0, atol=1e-5)
    for line in written:  # what was written before the kill was kept, not redone
        record = json.loads(line)
        assert resumed[record["selector"], record["sample_id"], False] == record
    scores = json.loads((out / "scores.json").read_text())
    assert scores["selectors"] == reference.scores["selectors"]


def test_the_student_scores_a_batch_of_questions_as_it_scores_each_alone(evaluations, hfs_run, tmp_path):
    """--batch-size 1 against the default 4: the hfs selectors' frames are the same, their scores
    equal up to float rounding (the questions differ in length, so the batch is padded)."""
    reference = evaluations.get("nextqa", "parquet")
    assert len({len(s.question) for s in reference.samples.values()}) > 1
    out = tmp_path / "out"
    invoke(evaluate_args(reference.layout, out, hfs_run, "--batch-size", "1", selectors=["hfs", "hfs-set"]))
    one_at_a_time, batched = comparable(read_jsonl(out / "predictions.jsonl")), comparable(reference.records)
    assert len(one_at_a_time) == 6
    for key, r in one_at_a_time.items():
        assert (r["indices"], r["timestamps_s"]) == (batched[key]["indices"], batched[key]["timestamps_s"]), key
        np.testing.assert_allclose(r["frame_scores"], batched[key]["frame_scores"], rtol=0, atol=1e-5)


def test_two_processes_answer_their_shares_and_the_first_merges(evaluations, hfs_run, tmp_path):
    """`torchrun --nproc-per-node 2` on the CPU (gloo): the same predictions and scores as one process."""
    reference = evaluations.get("nextqa", "parquet")
    out = tmp_path / "out"
    args = evaluate_args(reference.layout, out, hfs_run, "--cache", str(reference.out / "cache"))
    args[args.index("--run")] = "--run-dir"  # torchrun's own argparse would take --run for its --run-path
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "hfs.stages.cli", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert not list(out.glob("predictions.rank-*.jsonl")), "the per-process files were not merged"
    records = read_jsonl(out / "predictions.jsonl")
    merged, single = comparable(records), comparable(reference.records)
    assert merged.keys() == single.keys() and len(records) == len(merged)
    for key, r in single.items():
        for field in ("prediction", "indices", "timestamps_s", "frame_scores"):
            assert merged[key][field] == r[field], (key, field)
        assert merged[key]["option_logits"] == pytest.approx(r["option_logits"], abs=1e-4)
    assert json.loads((out / "scores.json").read_text())["selectors"] == reference.scores["selectors"]


# --------------------------------------------------------------------------- refusals


@pytest.fixture(scope="module")
def small_layout(tmp_path_factory, source_videos) -> Layout:
    return write_layout("nextqa", "parquet", tmp_path_factory.mktemp("small") / "data", source_videos)


@pytest.mark.parametrize(("extra", "message"), [
    (["--selector", "hfs"], "selector(s) hfs need a trained run: pass --run"),
    (["--selector", "nope"], "unknown selector 'nope'; known: uniform, random, clip, hfs, hfs-set"),
    (["--bench", "nope"], "unknown benchmark 'nope'; known: nextqa, videomme, longvideobench, mlvu"),
    (["--subtitles"], "--subtitles: nextqa has no subtitles"),
    (["--max-new-tokens", "4"], "--max-new-tokens: only --protocol lmms-eval generates"),
    (["--protocol", "nope"], "--protocol nope: unknown; known: hfs, lmms-eval"),
])
def test_evaluate_refuses_what_it_cannot_do_with_exit_2(small_layout, tmp_path, extra, message):
    args = ["evaluate", "--bench", "nextqa", "--data", str(small_layout.root), "--out", str(tmp_path / "out"),
            "--preset", "tiny", "--workers", "0", "--no-progress", "--device", "cpu", *extra]
    output = invoke(args, expect=2)
    assert message in " ".join(output.split()), output
    assert not (tmp_path / "out" / "cache").exists()  # refused before extracting anything


def test_strict_stops_at_a_bad_row_and_a_missing_video_naming_them(small_layout, tmp_path):
    args = ["evaluate", "--bench", "nextqa", "--data", str(small_layout.root), "--out", str(tmp_path / "out"),
            "--preset", "tiny", "--workers", "0", "--no-progress", "--device", "cpu", "--strict"]
    output = " ".join(invoke(args, expect=2).split())
    parquet = small_layout.root / "MC" / "test-00000-of-00001.parquet"
    assert (f"--strict: 2 question(s) cannot be scored: bad row {parquet}:4: 'answer' is 7, out of range for 5 "
            f"options; question '103_0': missing video {small_layout.root / 'NExTVideo' / '103.mp4'}.") in output
    assert "or run without --strict to score the rest" in output
    assert not (tmp_path / "out" / "cache").exists()  # stopped before extracting anything


@pytest.fixture()
def clean_nextqa(tmp_path, source_videos) -> Path:
    """NExT-QA with three good rows on two videos: nothing for --strict to stop at."""
    from benchmark_layouts import NEXTQA_SCHEMA, nextqa_row, write_parquet

    root = tmp_path / "clean"
    write_parquet(root, "MC/test-00000-of-00001.parquet",
                  [nextqa_row(101, 0, "CW", 1), nextqa_row(101, 1, "TN", 2), nextqa_row(102, 0, "DC", 0)],
                  NEXTQA_SCHEMA)
    for name, video in (("101", source_videos[0]), ("102", source_videos[1])):
        (root / "NExTVideo").mkdir(exist_ok=True)
        (root / "NExTVideo" / f"{name}.mp4").write_bytes(video.read_bytes())
    return root


def test_strict_on_a_clean_benchmark_scores_every_question(clean_nextqa, tmp_path):
    out = tmp_path / "out"
    output = invoke(["evaluate", "--bench", "nextqa", "--data", str(clean_nextqa), "--out", str(out), "--preset", "tiny",
                     "--workers", "0", "--no-progress", "--device", "cpu", "--k", str(K), "--strict"])
    headline = json.loads((out / "scores.json").read_text())["headline"]["uniform"]
    assert (headline["n"], headline["skipped"], headline["of"]) == (3, 0, 3)
    assert any(line.startswith("uniform: overall ") and line.endswith(" % over 3 of 3 questions")
               for line in output.splitlines()), output  # nothing skipped, so no "(… skipped: …)"


def test_strict_stops_at_a_video_that_failed_extraction(clean_nextqa, tmp_path):
    (clean_nextqa / "NExTVideo" / "102.mp4").write_bytes(b"not a video")
    args = ["evaluate", "--bench", "nextqa", "--data", str(clean_nextqa), "--out", str(tmp_path / "out"),
            "--preset", "tiny", "--workers", "0", "--no-progress", "--device", "cpu", "--k", str(K)]
    output = " ".join(invoke([*args, "--strict"], expect=2).split())
    assert "--strict: 1 question(s) cannot be scored: question '102_0': extraction error." in output, output
    assert not (tmp_path / "out" / "predictions.jsonl").exists()
    output = invoke(args)  # without --strict: skipped, counted, and the rest scored
    assert "uniform: overall" in output and "over 2 of 3 questions (1 skipped: 1 extraction error)" in output


def test_evaluate_without_the_data_folder_is_exit_2(tmp_path):
    output = invoke(["evaluate", "--bench", "mlvu", "--data", str(tmp_path / "absent"), "--out", str(tmp_path / "o"),
                     "--preset", "tiny", "--workers", "0", "--no-progress", "--device", "cpu"], expect=2)
    assert "absent: no such folder" in " ".join(output.split())


# --------------------------------------------------------------------------- --protocol lmms-eval


@pytest.mark.parametrize(("bench", "view", "max_new_tokens"), [("nextqa", "parquet", "3"), ("mlvu", "parquet", None)])
def test_lmms_eval_protocol_generates_parses_and_records_the_response(tmp_path, source_videos, bench, view,
                                                                      max_new_tokens):
    """The plumbing (the tiny teacher's random weights make the accuracy meaningless): lmms-eval's
    prompt, greedy generation, its parser; each record keeps the response beside the parsed letter."""
    from hfs.manifests.benchmarks import get_benchmark
    from hfs.pipeline.evaluation.lmms_parsers import parse_answer

    layout = write_layout(bench, view, tmp_path / "data", source_videos)
    out = tmp_path / "out"
    args = ["evaluate", "--bench", bench, "--data", str(layout.root), "--out", str(out), "--preset", "tiny",
            "--workers", "0", "--no-progress", "--device", "cpu", "--k", "2", "--protocol", "lmms-eval"]
    output = invoke(args + (["--max-new-tokens", max_new_tokens] if max_new_tokens else []))
    expected_tokens = int(max_new_tokens) if max_new_tokens else 16  # mlvu_dev.yaml's max_new_tokens
    samples = {s.sample_id: s for s in get_benchmark(bench).read(layout.root).samples}
    records = read_jsonl(out / "predictions.jsonl")
    assert {r["sample_id"] for r in records} == set(layout.answerable)
    for r in records:
        assert (r["protocol"], r["max_new_tokens"], r["option_logits"]) == ("lmms-eval", expected_tokens, None)
        assert r["frames_as"] == "video"  # the frames went in as one video, as lmms-eval's Qwen2.5-VL gets them
        assert isinstance(r["response"], str) and isinstance(r["random_fallback"], bool)
        sample = samples[r["sample_id"]]
        if not r["random_fallback"]:
            assert r["parsed"] == parse_answer(bench, r["response"], sample.options).letter
        assert r["prediction"] == (r["parsed"] or None)
        assert r["correct"] == (r["parsed"] != "" and "ABCDE".index(r["parsed"]) == sample.answer_index)
    scores = json.loads((out / "scores.json").read_text())
    assert (scores["protocol"], scores["max_new_tokens"]) == ("lmms-eval", expected_tokens)
    assert TITLES[bench] in output
    # the same folder under the other protocol is refused, not mixed in
    refused = " ".join(invoke(args[:-2] + ["--protocol", "hfs"], expect=2).split())
    assert "protocol='lmms-eval'" in refused


def test_lmms_eval_protocol_refuses_an_internvl_teacher_before_any_work(tmp_path, source_videos):
    layout = write_layout("nextqa", "parquet", tmp_path / "data", source_videos)
    out = tmp_path / "out"
    output = invoke(["evaluate", "--bench", "nextqa", "--data", str(layout.root), "--out", str(out), "--preset",
                     "tiny", "--workers", "0", "--no-progress", "--device", "cpu", "--k", "2", "--protocol",
                     "lmms-eval", "--teacher", "internvl3"], expect=2)
    assert "--protocol lmms-eval is not implemented for InternVL" in " ".join(output.split())
    assert not (out / "cache").exists()  # refused before any video was extracted


LVB_TASK_POST_PROMPT = "Answer with the option's letter from the given choices directly.\n"
LVB_VAL_I_TEXTS = {  # longvideobench_val_i's text of each question of the LongVideoBench json layout, by hand:
    # lvbVidA (3 s, so frames at 0, 1, 2 s, one a second): "a red screen" 0–1.5 s, midpoint 0.75, frame 0 first,
    # frame 1 inside; "then a circle" 1.5–end (null: the duration, 3 s), midpoint 2.25, frames 1, 2 first,
    # frame 2 inside. "<image>" stays in the text: the chat wrapper shows the images before it
    "lvbVidA_0": ("<image>\na red screen\n<image>\n<image>\nthen a circle\n"
                  "In the scene where ..., what happens? (lvbVidA_0)\n"
                  "A. opt a\nB. opt b\nC. opt c\nD. opt d\nE. opt e\n" + LVB_TASK_POST_PROMPT),
    "lvbVidA_1": ("<image>\na red screen\n<image>\n<image>\nthen a circle\n"
                  "In the scene where ..., what happens? (lvbVidA_1)\n"
                  "A. opt a\nB. opt b\nC. opt c\nD. opt d\n" + LVB_TASK_POST_PROMPT),
    # lvbVidB (2 s: frames at 0, 1 s): "a blue screen" 0.5–1.2 s, midpoint 0.85, frame 0 first; shorter than
    # 1 s, so widened to 0.35–1.35 s, where frame 1 lies: kept; frame 1 closes the list
    "lvbVidB_0": ("<image>\na blue screen\n<image>\n"
                  "In the scene where ..., what happens? (lvbVidB_0)\n"
                  "A. opt a\nB. opt b\nC. opt c\nD. opt d\nE. opt e\n" + LVB_TASK_POST_PROMPT),
}
LVB_FRAMES_AS = {"without_subtitles": "video", "with_subtitles": "images_first"}


def test_lmms_eval_protocol_lvb_with_subtitles_shows_the_frames_as_images_before_the_interleaved_text(
        tmp_path, source_videos, monkeypatch):
    """longvideobench_val_i under lmms-eval 0.7.3's Qwen2.5-VL chat wrapper: the selector's k frames as k
    separate images, in the selected order, before the task's text (its frames and subtitles interleaved at
    its own frame times, then the question); the setting without subtitles (longvideobench_val_v) keeps the
    frames as one video. Before, this combination was refused."""
    import torch

    from hfs.cache import FeatureCache
    from hfs.pipeline.model.frames import decode_jpegs
    from hfs.pipeline.model.teachers.base import Teacher
    from hfs.pipeline.model.teachers.qwen_vl import QwenVLTeacher

    layout = write_layout("longvideobench", "json", tmp_path / "data", source_videos)
    (layout.root / "subtitles" / "lvbVidB_en.json").write_text(
        json.dumps([{"start": "00:00:00.500", "end": "00:00:01.200", "line": "a blue screen"}]))
    calls, chats = [], []
    generate, encode = Teacher.generate, QwenVLTeacher.encode_images_first_sample

    def recording_generate(self, frames, texts, max_new_tokens, frames_as=None):
        calls.append(([f.cpu().clone() for f in frames], list(texts), frames_as))
        return generate(self, frames, texts, max_new_tokens, frames_as=frames_as)

    def recording_encode(self, chat_text, frames):
        chats.append(chat_text)
        return encode(self, chat_text, frames)

    monkeypatch.setattr(Teacher, "generate", recording_generate)
    monkeypatch.setattr(QwenVLTeacher, "encode_images_first_sample", recording_encode)
    out = tmp_path / "out"
    args = ["evaluate", "--bench", "longvideobench", "--data", str(layout.root), "--out", str(out), "--preset",
            "tiny", "--workers", "0", "--no-progress", "--device", "cpu", "--k", "3", "--protocol", "lmms-eval",
            "--subtitles", "--max-new-tokens", "2", "--selector", "uniform", "--selector", "random"]
    invoke(args)

    records = read_jsonl(out / "predictions.jsonl")
    assert {(r["selector"], r["sample_id"], r.get("subtitles", False)) for r in records} == {
        (sel, q, sub) for sel in ("uniform", "random") for q in layout.answerable for sub in (False, True)}
    by_key = {(r["selector"], r["sample_id"], r.get("subtitles", False)): r for r in records}
    for r in records:
        assert (r["protocol"], r["frames_as"], r["max_new_tokens"]) == ("lmms-eval", LVB_FRAMES_AS, 2)
    cache = FeatureCache(out / "cache")
    shown = {}
    for frames, texts, frames_as in calls:
        assert frames_as == ("images_first" if texts[0] in LVB_VAL_I_TEXTS.values() else "video")
        for sample_frames, text in zip(frames, texts):
            shown.setdefault(text, []).append(sample_frames)
    without = {qid: text[text.index("In the scene"):] for qid, text in LVB_VAL_I_TEXTS.items()}  # val_v's text
    for (selector, qid, with_subs), r in by_key.items():
        text = LVB_VAL_I_TEXTS[qid] if with_subs else without[qid]  # the exact text, whatever frames were selected
        if with_subs:
            assert r["subtitle_lines"] == {"lvbVidA_0": 2, "lvbVidA_1": 2, "lvbVidB_0": 1}[qid]  # the cues kept
        assert len(r["indices"]) == 3
        selected = decode_jpegs(cache.frames(r["video_id"], r["indices"]))
        # the k selected frames in the selected order (as k images before the text with subtitles)
        assert any(f.shape == selected.shape and torch.equal(f, selected) for f in shown[text]), (selector, qid)
    assert set(shown) == {*LVB_VAL_I_TEXTS.values(), *without.values()}
    assert sum(len(t) for t in shown.values()) == 12  # 2 selectors x 3 questions x 2 settings, each once
    # the chat the teacher tokenizes: 3 image slots, then the text as it is
    for chat in chats:
        text = next(t for t in LVB_VAL_I_TEXTS.values() if t in chat)
        assert chat.count("<|vision_start|><|image_pad|><|vision_end|>") == 3
        assert chat.rindex("<|vision_end|>") < chat.index(text)
    assert len(chats) == 6
    scores = json.loads((out / "scores.json").read_text())
    assert set(scores["selectors"]["uniform"]) == {"without_subtitles", "with_subtitles"}
    assert scores["selectors"]["uniform"]["with_subtitles"]["overall"]["n"] == 3

    # a rerun with the same settings answers nothing again; one into a folder whose records showed the frames
    # otherwise (as LongVideoBench's were before: all as one video) is refused, naming both values
    monkeypatch.setattr(Teacher, "generate", lambda *a, **k: pytest.fail("a finished question was answered again"))
    invoke(args)
    older = tmp_path / "older"
    older.mkdir()
    (older / "predictions.jsonl").write_text("".join(json.dumps({**r, "frames_as": "video"}) + "\n"
                                                     for r in records))
    refused = " ".join(invoke([*args[:6], str(older), *args[7:]], expect=2).split())
    assert f"{older / 'predictions.jsonl'} holds predictions made with frames_as='video', not frames_as=" in refused
    assert "'with_subtitles': 'images_first'" in refused


def test_lmms_eval_protocol_lvb_with_subtitles_refuses_a_question_without_a_subtitle_file(tmp_path, source_videos):
    """lmms-eval's longvideobench_val_i reads every question's subtitle file (lvbVidB has none here)."""
    layout = write_layout("longvideobench", "json", tmp_path / "data", source_videos)
    out = tmp_path / "out"
    output = invoke(["evaluate", "--bench", "longvideobench", "--data", str(layout.root), "--out", str(out),
                     "--preset", "tiny", "--workers", "0", "--no-progress", "--device", "cpu", "--protocol",
                     "lmms-eval", "--subtitles"], expect=2)
    assert ("--protocol lmms-eval --subtitles: lmms-eval's longvideobench_val_i reads every question's subtitle "
            "file, and 1 cannot be read: question 'lvbVidB_0': no subtitle file") in " ".join(output.split())
    assert not (out / "cache").exists()  # refused before any video was extracted
