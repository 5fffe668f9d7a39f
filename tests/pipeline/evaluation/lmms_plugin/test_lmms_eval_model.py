"""lmms-eval's model `hfs` end to end, on a tiny Qwen2.5-VL: registered under its name by the entry
point, a question of the selections file gets exactly the frames shown at its times (decoded by
hfs), a question without a selection gets lmms-eval's own sampling, the answers come back in the
requests' order. Runs only where lmms-eval is installed (`pip install -e '.[lmms-eval]'`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

pytest.importorskip("lmms_eval", reason="lmms-eval is not installed (pip install -e '.[lmms-eval]'; "
                                        "make install leaves it out: it needs av<16 and filelock<4)")
pytest.importorskip("qwen_vl_utils", reason="qwen-vl-utils is not installed (pip install -e '.[lmms-eval]')")

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]  # one a second
SELECTED = (0.5, 2.5)  # red, blue


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> tuple[Path, Path]:
    """A four-second video of four colours under Video-MME's ``data/`` and a selections file
    holding one of its two questions."""
    from hfs.pipeline.demo.videos import solid, write_scene_video

    root = tmp_path_factory.mktemp("lmms_eval")
    video = root / "videomme" / "data" / "abc.mp4"
    video.parent.mkdir(parents=True)
    write_scene_video(video, [(10, solid(c)) for c in COLOURS], fps=10, size=(64, 48))
    selections = root / "sel.jsonl"
    selections.write_text(json.dumps({
        "sample_id": "001-1", "video_id": "abc", "benchmark": "videomme", "view": "parquet", "question_id": "001-1",
        "video_path": "data/abc.mp4", "n_frames": 8, "duration_s": 4.0, "selector": "hfs", "k": 2,
        "indices": [1, 5], "timestamps_s": list(SELECTED), "scores": None}) + "\n")
    return video, selections


def colours(frames) -> list[tuple[int, int, int]]:
    """The nearest of COLOURS to each frame's centre pixel (the codec moves them a little)."""
    out = []
    for frame in frames:
        pixel = frame.getpixel((frame.width // 2, frame.height // 2))
        out.append(min(COLOURS, key=lambda c: sum((a - b) ** 2 for a, b in zip(c, pixel))))
    return out


def test_model_hfs_feeds_the_selected_frames(layout, monkeypatch, caplog):
    import lmms_eval.models.chat.qwen2_5_vl as lmms_qwen
    from lmms_eval.api.instance import Instance
    from lmms_eval.models import get_model

    from hfs.pipeline.evaluation.lmms_plugin.lmms_eval_model import HfsQwen2_5_VL
    from hfs.pipeline.model.tiny import tiny_model_path

    video, selections = layout
    assert get_model("hfs") is HfsQwen2_5_VL  # the lmms_eval.models entry point of pyproject.toml
    model = HfsQwen2_5_VL.create_from_arg_string(
        f"pretrained={tiny_model_path('tiny-qwen2_5_vl')},selections={selections},device=cpu,device_map=cpu,"
        "min_pixels=3136,max_pixels=12544,max_num_frames=4")
    docs = [{"question_id": "001-1", "videoID": "abc"}, {"question_id": "001-2", "videoID": "abc"}]
    model.task_dict = {"videomme": {"test": docs}}

    def doc_to_messages(doc):  # as lmms-eval's task builds them from doc_to_visual and doc_to_text
        return [{"role": "user", "content": [{"type": "video", "url": str(video)},
                                             {"type": "text", "text": f"Question {doc['question_id']}?"}]}]

    videos = []  # what reaches qwen-vl-utils: hfs's frames, or the path lmms-eval samples from
    seen = lmms_qwen.process_vision_info

    def spy(messages, **kwargs):
        videos.extend(part["video"] for conversation in messages for message in conversation
                      for part in message["content"] if part.get("type") == "video")
        return seen(messages, **kwargs)

    monkeypatch.setattr(lmms_qwen, "process_vision_info", spy)
    requests = [Instance("generate_until", (f"ctx {i}", doc_to_messages, {"max_new_tokens": 3, "temperature": 0}, i,
                                            "videomme", "test"), i, {"task": "videomme", "doc_id": i, "repeats": 1})
                for i in range(len(docs))]
    with caplog.at_level(logging.INFO, logger="hfs.pipeline.evaluation.lmms_plugin.lmms_eval_model"):
        answers = model.generate_until(requests)

    assert len(answers) == 2 and all(isinstance(a.text, str) for a in answers)
    frames = [v for v in videos if isinstance(v, list)]
    assert len(frames) == 1 and colours(frames[0]) == [COLOURS[0], COLOURS[2]]  # the frames at 0.5 s and 2.5 s
    assert [v for v in videos if isinstance(v, str)] == [str(video)]  # question 001-2: lmms-eval's sampling
    assert model.fps is None  # lmms-eval's setting is back
    assert "videomme doc 1 (video" in caplog.text and "no selection in" in caplog.text
    assert "hfs frames for 1 of 2 questions (videomme 1/2); 1 without a selection" in caplog.text


def test_model_hfs_refuses_a_missing_selections_file(tmp_path):
    from hfs.pipeline.evaluation.lmms_plugin.lmms_eval_model import HfsQwen2_5_VL
    from hfs.pipeline.evaluation.lmms_plugin.selections import SelectionsError

    with pytest.raises(SelectionsError, match="needs selections=FILE"):
        HfsQwen2_5_VL(pretrained="unused")
    with pytest.raises(SelectionsError, match=r"nope\.jsonl not found"):
        HfsQwen2_5_VL(pretrained="unused", selections=str(tmp_path / "nope.jsonl"))


TASK_YAML = """\
dataset_path: parquet
dataset_kwargs:
  data_files:
    test: {parquet}
task: videomme_local
test_split: test
output_type: generate_until
doc_to_visual: !function utils.videomme_doc_to_visual
doc_to_text: !function utils.videomme_doc_to_text
doc_to_target: "answer"
generation_kwargs:
  max_new_tokens: 4
  temperature: 0
  top_p: 1.0
  num_beams: 1
  do_sample: false
process_results: !function utils.videomme_process_results
metric_list:
  - metric: videomme_perception_score
    aggregation: !function utils.videomme_aggregate_results
    higher_is_better: true
lmms_eval_specific_kwargs:
  default:
    pre_prompt: ""
    post_prompt: "\\nAnswer with the option's letter from the given choices directly."
metadata:
  - version: 0.0
"""

TASK_UTILS = """\
from lmms_eval.tasks.videomme.utils import (videomme_aggregate_results, videomme_doc_to_text,  # noqa: F401
                                            videomme_doc_to_visual, videomme_process_results)
"""


def test_lmms_eval_command_line_with_model_hfs(layout, tmp_path):
    """`lmms-eval --model hfs` on a local copy of Video-MME's layout (its videos under
    $HF_HOME/videomme/data, its rows in a parquet; the task is lmms-eval's videomme with that
    parquet for the Hub dataset): lmms-eval's own figures, and the counts of the model's frames."""
    import os
    import subprocess
    import sys

    import pyarrow as pa
    import pyarrow.parquet as pq

    from hfs.pipeline.model.tiny import tiny_model_path

    video, selections = layout
    hf_home = tmp_path / "hf"
    (hf_home / "videomme" / "data").mkdir(parents=True)
    for name in ("abc", "def"):
        (hf_home / "videomme" / "data" / f"{name}.mp4").write_bytes(video.read_bytes())
    rows = [dict(video_id=q[:3], duration="short", domain="Knowledge", sub_category="Humanity & History", url="",
                 videoID=v, question_id=q, task_type="Counting Problem", question="Which colour comes first?",
                 options=["A. Red", "B. Green", "C. Blue", "D. White"], answer="A")
            for v, q in (("abc", "001-1"), ("abc", "001-2"), ("def", "002-1"))]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "test.parquet")
    task = tmp_path / "tasks" / "videomme_local"
    task.mkdir(parents=True)
    (task / "videomme_local.yaml").write_text(TASK_YAML.format(parquet=tmp_path / "test.parquet"))
    (task / "utils.py").write_text(TASK_UTILS)

    model_args = (f"pretrained={tiny_model_path('tiny-qwen2_5_vl')},selections={selections},device_map=cpu,"
                  "min_pixels=3136,max_pixels=12544,max_num_frames=4")
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "lmms_eval", "--model", "hfs", "--model_args", model_args,
                          "--tasks", "videomme_local", "--include_path", str(tmp_path / "tasks"), "--device", "cpu",
                          "--batch_size", "1", "--output_path", str(tmp_path / "out")],
                         env=env, capture_output=True, text=True, timeout=600)
    output = res.stdout + res.stderr
    assert res.returncode == 0, output[-4000:]
    assert "hfs frames for 1 of 3 questions (videomme_local 1/3); 2 without a selection" in output
    results = json.loads(next((tmp_path / "out").rglob("*_results.json")).read_text())["results"]
    assert 0 <= results["videomme_local"]["videomme_perception_score,none"] <= 100
