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
                                        "make install leaves it out: it needs av<16)")
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

    from hfs.integrations.lmms_eval_model import HfsQwen2_5_VL
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
    with caplog.at_level(logging.INFO, logger="hfs.integrations.lmms_eval_model"):
        answers = model.generate_until(requests)

    assert len(answers) == 2 and all(isinstance(a.text, str) for a in answers)
    frames = [v for v in videos if isinstance(v, list)]
    assert len(frames) == 1 and colours(frames[0]) == [COLOURS[0], COLOURS[2]]  # the frames at 0.5 s and 2.5 s
    assert [v for v in videos if isinstance(v, str)] == [str(video)]  # question 001-2: lmms-eval's sampling
    assert model.fps is None  # lmms-eval's setting is back
    assert "videomme doc 1 (video" in caplog.text and "no selection in" in caplog.text
    assert "hfs frames for 1 of 2 questions (videomme 1/2); 1 without a selection" in caplog.text


def test_model_hfs_refuses_a_missing_selections_file(tmp_path):
    from hfs.integrations.lmms_eval_model import HfsQwen2_5_VL
    from hfs.integrations.selections import SelectionsError

    with pytest.raises(SelectionsError, match="needs selections=FILE"):
        HfsQwen2_5_VL(pretrained="unused")
    with pytest.raises(SelectionsError, match=r"nope\.jsonl not found"):
        HfsQwen2_5_VL(pretrained="unused", selections=str(tmp_path / "nope.jsonl"))
