"""The HTML report (`hfs.pipeline.evaluation.report`): one section per question with the N-frame strip and
every selector's frames marked, truth shading, score and training plots, the summary, a
self-contained file, and clear errors for inputs it cannot use. A tiny cache is written
directly with the cache writer (real JPEG frames, no video, no torch)."""

from __future__ import annotations

import io
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hfs.cache import VideoResult, plan_extraction, write_shard
from hfs.manifests.benchmarks import BenchmarkData
from hfs.manifests.records import QASample, VideoItem, make_video_id
from hfs.pipeline.evaluation.recall import EventTruth, QuestionTruth, TruthError, event_recall, read_ground_truth
from hfs.pipeline.evaluation.report.inputs import (
    Question,
    ReportError,
    RunLog,
    read_predictions,
    read_run,
    read_selection_files,
    read_selections,
)
from hfs.pipeline.evaluation.report.page import render_report, write_evaluation_report

N = 16  # frames per video in the tiny cache (paper: 128)
K = 4
VIDEOS = 3
OPTIONS = ("red", "green", "blue")
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


# --------------------------------------------------------------------------- a tiny cache and records


def _jpeg(i: int, j: int) -> bytes:
    """Frame j of video i: 64×36, its colour from (i, j), so thumbnails differ."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 36), (40 + 60 * i, 8 * j, 255 - 8 * j)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    """A cache of VIDEOS videos × N frames: features, timestamps 0.25 + 0.5·j s, teacher JPEGs."""
    root = tmp_path_factory.mktemp("report_cache")
    videos = [VideoItem(make_video_id(f"v{i}.mp4"), f"/data/v{i}.mp4", f"v{i}.mp4") for i in range(VIDEOS)]
    plan, _ = plan_extraction(root, videos, {"frames": N, "size": 224, "model": "test", "pretrained": "none"},
                              shard_size=2)
    for shard in plan.shards:
        results = [VideoResult(v["video_id"], v["path"], features=np.zeros((N, 8), np.float16),
                               timestamps=np.arange(N, dtype=np.float32) * 0.5 + 0.25,
                               frames=[_jpeg(int(v["key"][1]), j) for j in range(N)], duration=N * 0.5, fps=10.0,
                               width=64, height=36, frames_decoded=N * 5, distinct_frames=N)
                   for v in shard.videos]
        write_shard(root, shard.name, results, {"frames": N, "embed_dim": 8, "size": 224, "model": "test",
                                                "pretrained": "none", "teacher_frames": True})
    return root


def video_id(i: int) -> str:
    return make_video_id(f"v{i}.mp4")


HFS_PICKS = {0: [2, 3, 4, 10], 1: [0, 7, 8, 15], 2: [5, 6, 12, 13]}
UNIFORM = [2, 6, 10, 14]


def selection(selector: str, i: int) -> dict:
    """An `hfs select` line: hfs scores frames (its picks score highest), uniform does not."""
    indices = HFS_PICKS[i] if selector == "hfs" else UNIFORM
    scores = None
    if selector == "hfs":
        scores = [round(0.1 + 0.01 * j, 6) for j in range(N)]
        for j in indices:
            scores[j] = 0.9
    return {"sample_id": f"q{i}", "video_id": video_id(i), "selector": selector, "k": K, "indices": indices,
            "timestamps_s": [0.25 + 0.5 * j for j in indices], "scores": scores}


def prediction(selector: str, i: int, letter: str, answer_index: int = 0) -> dict:
    """An `hfs evaluate` line (predictions.jsonl): `frame_scores` instead of `scores`."""
    record = selection(selector, i)
    scores = record.pop("scores")
    record.pop("k")
    return {"type": "DO", "sample_id": record["sample_id"], "selector": selector, "prediction": letter,
            "correct": "ABC".index(letter) == answer_index, "answer_index": answer_index, **record,
            "option_logits": [0.0, 0.0, 0.0], "frame_scores": scores}


def truth(i: int) -> QuestionTruth:
    """One event over frames 3..5 of the grid (seconds 1.5 .. 3.0), answer red (A)."""
    return QuestionTruth(sample_id=f"q{i}", split="test", qid=0, video=f"v{i}.mp4", kind="colour", type="DO",
                         question=f"What colour flashes in video {i}?", options=OPTIONS, answer_index=0,
                         duration_s=N * 0.5, fps=10.0, n_frames=N * 5, grid_n=N,
                         events=(EventTruth("red", "square", 1.5, 3.0, 15, 30, (3, 4, 5)),))


QUESTIONS = {  # the three forms render_report takes
    "q0": Question("Which colour is video 0?", OPTIONS, 0),
    "q1": ("Which colour is video 1?", OPTIONS, 0),
    "q2": QASample("q2", make_video_id("v2.mp4"), "Which colour is video 2?", OPTIONS, "red", 0),
}
METRICS = [{"step": s, "total": 2.0 / s, "ce": 1.5 / s, "kl": 0.1, "set_objective": 1.0 + s, "relevance": 1.0,
            "coverage": 2.0, "redundancy": 0.5, "sep": None, "tau": 2.0 * 0.999 ** s, "lambda_kl": 0.1 * s,
            "lambda_set": 1e-4, "lambda_sep": 0.01, "lr": 1e-5, "grad_norm": 1.0} for s in range(1, 6)]


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


# --------------------------------------------------------------------------- reading the page


class Node:
    def __init__(self, tag: str, attrs: dict, parent: "Node | None" = None):
        self.tag, self.attrs, self.parent, self.children = tag, attrs, parent, []
        self.parts: list["Node | str"] = []  # children and text, in document order

    def text(self) -> str:
        return " ".join("".join(p if isinstance(p, str) else p.text() for p in self.parts).split())

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    def find_all(self, tag: str | None = None, cls: str | None = None, **attrs) -> list["Node"]:
        out = []
        for child in self.children:
            if ((tag is None or child.tag == tag) and (cls is None or cls in child.classes)
                    and all(child.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())):
                out.append(child)
            out += child.find_all(tag, cls, **attrs)
        return out


class Tree(HTMLParser):
    """The page as a tree of Nodes; fails on a closing tag that does not match the open one."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.root = self.top = Node("#root", {})
        self.feed(text)
        self.close()
        assert self.top is self.root, f"<{self.top.tag}> never closed"

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), self.top)
        self.top.children.append(node)
        self.top.parts.append(node)
        if tag not in VOID:
            self.top = node

    def handle_startendtag(self, tag, attrs):
        node = Node(tag, dict(attrs), self.top)
        self.top.children.append(node)
        self.top.parts.append(node)

    def handle_endtag(self, tag):
        assert tag == self.top.tag, f"</{tag}> closes <{self.top.tag}>"
        self.top = self.top.parent

    def handle_data(self, data):
        self.top.parts.append(data)


def page(path: Path) -> tuple[str, Node]:
    text = path.read_text(encoding="utf-8")
    return text, Tree(text).root


def table_rows(table: Node) -> dict[str, list[str]]:
    """A table's body rows: first cell's text → the other cells' texts."""
    rows = {}
    for tr in table.find_all("tr"):
        cells = [c for c in tr.children if c.tag in ("th", "td")]
        rows[cells[0].text()] = [c.text() for c in cells[1:]]
    return rows


def assert_self_contained(text: str) -> None:
    assert "http://" not in text and "https://" not in text
    assert "<script" not in text and "@import" not in text
    root = Tree(text).root
    for node in root.find_all():
        for name in ("src", "href"):
            value = node.attrs.get(name)
            if value is not None:
                assert value.startswith(("data:", "#")), f"<{node.tag} {name}={value[:40]}>"


# --------------------------------------------------------------------------- the page


def test_one_section_per_question_with_strip_marks_and_scores(cache_dir, tmp_path):
    records = [selection(s, i) for s in ("uniform", "hfs") for i in range(VIDEOS)]
    summary = render_report(tmp_path / "r.html", cache_dir, selections=records, questions=QUESTIONS)
    assert (summary.questions_shown, summary.questions_total, summary.selectors) == (3, 3, ("uniform", "hfs"))
    text, root = page(tmp_path / "r.html")
    assert_self_contained(text)
    assert summary.bytes == len(text.encode())
    assert not list(tmp_path.glob(".r.html.tmp-*"))  # written under a temporary name, renamed

    sections = root.find_all("section", cls="question")
    assert [s.attrs["id"] for s in sections] == ["q-q0", "q-q1", "q-q2"]
    assert [s.attrs["data-sample-id"] for s in sections] == ["q0", "q1", "q2"]
    for i, section in enumerate(sections):
        frames = section.find_all("li", cls="frame")
        assert [int(f.attrs["data-frame"]) for f in frames] == list(range(N))
        images = section.find_all("img")
        assert len(images) == N and all(img.attrs["src"].startswith("data:image/webp;base64,") for img in images)
        for selector, expected in (("uniform", UNIFORM), ("hfs", HFS_PICKS[i])):
            marks = section.find_all("i", cls="selected", data_selector=selector)
            assert sorted(int(m.parent.parent.attrs["data-frame"]) for m in marks) == expected
        picked = {int(f.attrs["data-frame"]) for f in frames if "picked" in f.classes}
        assert picked == set(UNIFORM) | set(HFS_PICKS[i])
        assert not section.find_all(cls="truth")
        options = section.find_all("ol", cls="options")[0].find_all("li")
        assert len(options) == 3 and "answer" in options[0].classes
        assert len(section.find_all("figure", cls="scores")[0].find_all("svg")) == 1  # hfs has scores
    assert not root.find_all("section", id="training")
    assert all(f"Which colour is video {i}?" in text for i in range(VIDEOS))


def test_both_subtitle_settings(cache_dir, tmp_path):
    preds = [prediction("hfs", 0, "A"), {**prediction("hfs", 0, "B"), "subtitles": True},
             prediction("hfs", 1, "B"), {**prediction("hfs", 1, "A"), "subtitles": True}]
    render_report(tmp_path / "r.html", cache_dir, predictions=preds, questions=QUESTIONS)
    text, root = page(tmp_path / "r.html")
    rows = table_rows(root.find_all("table", cls="summary")[0])
    assert rows["accuracy"] == ["50.0 % (1/2)"] and rows["accuracy, with subtitles"] == ["50.0 % (1/2)"]
    assert table_rows(root.find_all("table", cls="index")[0])["1. q0"] == ["A ✓ · B sub ✗"]
    first = root.find_all("section", cls="question")[0].find_all("ol", cls="options")[0].find_all("li")
    assert [t.text() for t in first[0].find_all("span", cls="pred")] == ["hfs"]
    assert [t.text() for t in first[1].find_all("span", cls="pred")] == ["hfs +sub"]


def test_predictions_truth_and_run(cache_dir, tmp_path):
    preds = [prediction("uniform", 0, "A"), prediction("uniform", 1, "B"), prediction("uniform", 2, "C"),
             prediction("hfs", 0, "A"), prediction("hfs", 1, "A"), prediction("hfs", 2, "B")]
    truths = {f"q{i}": truth(i) for i in range(VIDEOS)}
    render_report(tmp_path / "r.html", cache_dir, predictions=preds, truth=truths,
                  run=RunLog("tiny-run", METRICS, {"train": {"lr": 1e-5}}))
    text, root = page(tmp_path / "r.html")
    assert_self_contained(text)

    rows = table_rows(root.find_all("table", cls="summary")[0])
    assert rows["accuracy"] == ["33.3 % (1/3)", "66.7 % (2/3)"]  # uniform: A B C, hfs: A A B; the answer is A
    assert rows["event recall@k (any answer-bearing frame)"] == ["0.0 %", "66.7 %"]
    assert rows["answer-bearing frames selected (mean)"] == ["0.00", "1.00"]  # hfs: 2 + 0 + 1 of frames 3..5
    recall = event_recall({f"q{i}": p for i, p in HFS_PICKS.items()}, truths)
    assert (recall.recall, recall.mean_hits) == (pytest.approx(2 / 3), pytest.approx(1.0))
    index = table_rows(root.find_all("table", cls="index")[0])
    assert index["2. q1"] == ["B ✗ · 0 hits", "A ✓ · 0 hits"]

    for i, section in enumerate(root.find_all("section", cls="question")):
        shaded = [int(f.attrs["data-frame"]) for f in section.find_all("li", cls="truth")]
        assert shaded == [3, 4, 5]
        assert f"What colour flashes in video {i}?" in text  # the truth's question text when no questions given
        tags = section.find_all("span", cls="pred")
        assert {t.attrs["data-selector"] for t in tags} == {"uniform", "hfs"}
        svg = section.find_all("figure", cls="scores")[0].find_all("svg")[0]
        assert svg.find_all("g") and "answer-bearing" in text

    training = root.find_all("section", id="training")
    assert len(training) == 1 and len(training[0].find_all("svg")) == 1
    panel_titles = "".join(text.split('id="training"')[1].split("</section>")[0])
    for title in ("CE (Eq. 17)", "τ (Gumbel-TopK)", "λ_KL", "F(m) (Eq. 15)"):
        assert title in panel_titles
    assert "L_sep" not in panel_titles  # null in every line: the term is off
    assert "config.json" in panel_titles


def test_max_questions_caps_sections_not_the_summary(cache_dir, tmp_path):
    records = [selection("hfs", i) for i in range(VIDEOS)]
    summary = render_report(tmp_path / "r.html", cache_dir, selections=records, max_questions=2)
    text, root = page(tmp_path / "r.html")
    assert (summary.questions_shown, summary.questions_total) == (2, 3)
    assert len(root.find_all("section", cls="question")) == 2
    note = root.find_all("p", cls="cap")
    assert len(note) == 1 and "first 2 of 3 questions" in text
    assert "(question text not in the inputs)" in text


def test_jpeg_thumbnails_and_a_video_without_frames(cache_dir, tmp_path):
    records = [selection("uniform", 0), {**selection("uniform", 1), "video_id": "not-in-cache",
                                         "sample_id": "gone"}]
    render_report(tmp_path / "r.html", cache_dir, selections=records, thumb_format="jpeg", thumb_height=24)
    text, root = page(tmp_path / "r.html")
    first, second = root.find_all("section", cls="question")
    images = first.find_all("img")
    assert len(images) == N and images[0].attrs["src"].startswith("data:image/jpeg;base64,")
    assert images[0].attrs["height"] == "24"
    assert not second.find_all("img") and len(second.find_all("li", cls="frame")) == N
    assert len(second.find_all("i", cls="selected")) == K  # still marked
    assert "no thumbnails" in text and "not-in-cache" in text


def test_evaluation_report(cache_dir, tmp_path):
    from hfs.pipeline.evaluation.scoring import score_benchmark

    preds = [prediction(s, i, "A") for s in ("uniform", "hfs") for i in range(VIDEOS)]
    write_jsonl(tmp_path / "predictions.jsonl", preds)
    (tmp_path / "scores.json").write_text(json.dumps(score_benchmark("nextqa", preds)))
    samples = [QASample(f"q{i}", video_id(i), f"Which colour is video {i}?", OPTIONS, "red", 0) for i in range(VIDEOS)]
    data = BenchmarkData("nextqa", str(tmp_path), "parquet", samples=samples)
    run = tmp_path / "runs" / "r1"
    (run / "checkpoints" / "step-00000005" / "model").mkdir(parents=True)
    write_jsonl(run / "metrics.jsonl", METRICS)
    truth_file = write_jsonl(tmp_path / "ground_truth.jsonl", [truth(i).to_json() for i in range(VIDEOS)])

    summary = write_evaluation_report(tmp_path, cache_dir, data, truth=truth_file,
                                      run=run / "checkpoints" / "step-00000005" / "model")
    assert summary.path == tmp_path / "report.html"
    text, root = page(summary.path)
    assert_self_contained(text)
    assert len(root.find_all("section", cls="question")) == VIDEOS
    assert root.find_all("table", cls="benchmark") and "Other (DO)" in text  # the benchmark's own breakdown (eval_mc.py's columns)
    assert root.find_all("section", id="training")
    assert "Which colour is video 2?" in text and "NExT-QA" in text

    # a run given as a saved model with no metrics.jsonl nearby: no curves, no error
    summary = write_evaluation_report(tmp_path, cache_dir, data, run=tmp_path / "elsewhere")
    assert not page(summary.path)[1].find_all("section", id="training")


# --------------------------------------------------------------------------- reading the inputs


def test_selection_files_keep_selectors_apart(tmp_path):
    a = write_jsonl(tmp_path / "run-a.jsonl", [selection("hfs", 0)])
    b = write_jsonl(tmp_path / "run-b.jsonl", [selection("hfs", 0)])
    u = write_jsonl(tmp_path / "uniform.jsonl", [selection("uniform", 0)])
    names = [r["selector"] for r in read_selection_files([a, b, u])]
    assert names == ["hfs (run-a)", "hfs (run-b)", "uniform"]


@pytest.mark.parametrize("content, message", [
    ('{"sample_id": "q0"}\n', "x.jsonl:1: missing field(s) video_id, selector, indices"),
    ('\n{"sample_id": "q0", "video_id": "v", "selector": "hfs", "indices": [1]}\n{"oops"\n',
     "x.jsonl:3: not valid JSON"),
    ("[1, 2]\n", "x.jsonl:1: a JSON list, expected an object"),
    ('{"sample_id": "q0", "video_id": "v", "selector": "hfs", "indices": []}\n', "'indices' must be a non-empty list"),
    ('{"sample_id": "q0", "video_id": "v", "selector": "hfs", "indices": [3], "scores": [0.1, 0.2]}\n',
     "index 3 is past the 2 frame scores"),
    ("", "x.jsonl: empty"),
])
def test_garbled_selection_files_are_named(tmp_path, content, message):
    (tmp_path / "x.jsonl").write_text(content)
    with pytest.raises(ReportError) as err:
        read_selections(tmp_path / "x.jsonl")
    assert message in str(err.value)


def test_other_bad_inputs(cache_dir, tmp_path):
    with pytest.raises(ReportError, match="no such file"):
        read_selections(tmp_path / "missing.jsonl")
    (tmp_path / "p.jsonl").write_text(json.dumps(selection("hfs", 0)) + "\n")
    with pytest.raises(ReportError, match=r"p.jsonl:1: missing field\(s\) prediction, correct"):
        read_predictions(tmp_path / "p.jsonl")
    (tmp_path / "gt.jsonl").write_text('{"sample_id": "q0"}\n')
    with pytest.raises(TruthError, match="gt.jsonl:1: not a ground-truth line"):
        read_ground_truth(tmp_path / "gt.jsonl")
    with pytest.raises(ReportError, match="no metrics.jsonl"):
        read_run(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"total": 1.0}\n')
    with pytest.raises(ReportError, match="metrics.jsonl:1: no integer 'step'"):
        read_run(tmp_path)

    out = tmp_path / "r.html"
    with pytest.raises(ReportError, match="nothing to report"):
        render_report(out, cache_dir, selections=[])
    other = {**selection("hfs", 0), "indices": [1, 2, 3, 4]}
    with pytest.raises(ReportError, match="hfs selected other frames for q0"):
        render_report(out, cache_dir, selections=[selection("hfs", 0)],
                      predictions=[{**prediction("hfs", 0, "A"), **other}])
    with pytest.raises(ReportError, match=f"selected frame {N} of question q0, but its video has {N} frames"):
        render_report(out, cache_dir, selections=[{**selection("uniform", 0), "indices": [1, N]}])
    with pytest.raises(ReportError, match=f"hfs scored {N + 1} frames of question q0, but its video has {N} frames"):
        render_report(out, cache_dir, selections=[{**selection("hfs", 0), "scores": [0.5] * (N + 1)}])
    with pytest.raises(ReportError, match="selection record 0: 'sample_id' must be a non-empty string"):
        render_report(out, cache_dir, selections=[{**selection("uniform", 0), "sample_id": 3}])
    with pytest.raises(ReportError, match="thumbnail format"):
        render_report(out, cache_dir, selections=[selection("uniform", 0)], thumb_format="gif")
    assert not out.exists()
