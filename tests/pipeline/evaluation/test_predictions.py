"""Tests of hfs.pipeline.evaluation.predictions.PredictionLog: the settings every record carries,
resuming with the same settings and refusing a folder predicted with others."""

from __future__ import annotations

import json

import pytest

from hfs.pipeline.evaluation.predictions import PredictionLog, PredictionSettingsError

SETTINGS = {"k": 16, "teacher": "tiny-qwen2.5-vl", "run": None, "seed": 0}


def record(sample_id, selector="uniform", **extra):
    return {"sample_id": sample_id, "selector": selector, "prediction": "A", "correct": True, **extra}


def test_records_carry_the_settings_and_the_same_settings_resume(tmp_path):
    log = PredictionLog(tmp_path, settings=SETTINGS)
    log.write(record("q1"))
    log.write(record("q1", subtitles=True))
    (line, _) = [json.loads(x) for x in (tmp_path / "predictions.rank-0.jsonl").read_text().splitlines()]
    assert {k: line[k] for k in SETTINGS} == SETTINGS

    log.merge()
    again = PredictionLog(tmp_path, settings=dict(SETTINGS))
    assert again.done == {("uniform", "q1", False), ("uniform", "q1", True)}


@pytest.mark.parametrize(("change", "held", "asked"), [
    ({"k": 8}, "k=16", "k=8"),
    ({"teacher": "Qwen/Qwen2.5-VL-7B-Instruct"}, "teacher='tiny-qwen2.5-vl'", "teacher='Qwen/Qwen2.5-VL-7B-Instruct'"),
    ({"run": "/runs/a/checkpoints/step-200/model"}, "run=None", "run='/runs/a/checkpoints/step-200/model'"),
    ({"k": 8, "seed": 1}, "k=16, seed=0", "k=8, seed=1"),
])
def test_a_folder_predicted_with_other_settings_is_refused_naming_the_file_and_both_values(
        tmp_path, change, held, asked):
    log = PredictionLog(tmp_path, rank=1, settings=SETTINGS)
    log.write(record("q1"))

    with pytest.raises(PredictionSettingsError) as info:
        PredictionLog(tmp_path, settings={**SETTINGS, **change})

    path = tmp_path / "predictions.rank-1.jsonl"
    assert str(info.value) == f"{path} holds predictions made with {held}, not {asked} as asked"
    assert info.value.path == path and set(info.value.differences) == set(change)
    assert not (tmp_path / "predictions.rank-0.jsonl").exists()  # nothing written by the refused log


def test_predictions_without_recorded_settings_are_not_resumed(tmp_path):
    """Records written before the settings were recorded could have been made with any k."""
    (tmp_path / "predictions.jsonl").write_text(json.dumps(record("q1")) + "\n")
    with pytest.raises(PredictionSettingsError, match="made with k='not recorded'"):
        PredictionLog.check_settings(tmp_path, SETTINGS)
    PredictionLog.check_settings(tmp_path / "absent", SETTINGS)  # nothing predicted yet: nothing to refuse


def test_records_from_before_the_protocol_was_recorded_are_hfs_ones(tmp_path):
    """`protocol` was recorded later; every record without it was made with the hfs protocol."""
    (tmp_path / "predictions.jsonl").write_text(json.dumps({**record("q1"), **SETTINGS}) + "\n")
    PredictionLog.check_settings(tmp_path, {**SETTINGS, "protocol": "hfs"})
    with pytest.raises(PredictionSettingsError,
                       match="made with protocol='hfs', max_new_tokens='not recorded', not protocol='lmms-eval'"):
        PredictionLog.check_settings(tmp_path, {**SETTINGS, "protocol": "lmms-eval", "max_new_tokens": 16})


def test_generating_answerer_asks_lmms_evals_prompt():
    from hfs.manifests import QASample
    from hfs.pipeline.evaluation.lmms_prompts import VIDEOMME_NO_SUBTITLES, videomme_prompt
    from hfs.pipeline.evaluation.predictions import GeneratingAnswerer

    class NoModel:
        video_input_refusal = None

        def eval(self):
            return self

    class NoVideo(NoModel):
        video_input_refusal = "no video input here"

    with pytest.raises(ValueError, match="no video input here"):  # lmms-eval's wrappers take the frames as a video
        GeneratingAnswerer(NoVideo(), None, "videomme", 16)
    options = ("Seven.", "Eight.")
    with_file = QASample("q", "", "How many?", options, options[0], 0, "", {"subtitle_path": "/s/v.srt"})
    without = QASample("q", "", "How many?", options, options[0], 0, "", {"subtitle_path": None})
    answerer = GeneratingAnswerer(NoModel(), None, "videomme", 16)
    doc = {"question": "How many?", "options": ["A. Seven.", "B. Eight."]}
    assert answerer.prompt(with_file) == videomme_prompt(doc)
    assert answerer.prompt(with_file, ["hello"]) == videomme_prompt(doc, ["hello"], with_subtitles=True)
    assert VIDEOMME_NO_SUBTITLES in answerer.prompt(without, [])  # no subtitle file: lmms-eval says so
    assert answerer.frames_as_in(False) == answerer.frames_as_in(True) == "video"
    with pytest.raises(ValueError, match="no lmms-eval protocol for benchmark 'nope'"):
        GeneratingAnswerer(NoModel(), None, "nope", 16)


def test_generating_answerer_asks_longvideobench_val_i_with_subtitles(tmp_path):
    """With subtitles, LongVideoBench's text is longvideobench_val_i's: the interleaving at the task's own
    frame times (whatever the lines given), then the question; its frames go in as images before the text."""
    from hfs.manifests import QASample
    from hfs.pipeline.evaluation.predictions import GeneratingAnswerer

    class NoModel:
        video_input_refusal = None

        def eval(self):
            return self

    path = tmp_path / "v_en.json"
    path.write_text(json.dumps([{"timestamp": [0.2, 0.6], "text": "hello"}, {"timestamp": [1.6, 1.9], "text": "bye"}]),
                    encoding="utf-8")
    meta = {"subtitle_path": str(path), "duration_s": 2.0, "subtitle_offset_s": 0.0}
    sample = QASample("q", "", "What?", ("x", "y"), "x", 0, "", meta)
    answerer = GeneratingAnswerer(NoModel(), None, "longvideobench", 32)
    post = "Answer with the option's letter from the given choices directly.\n"
    # frames at 0 and 1 s; "hello" 0.2–0.6 s (midpoint 0.4: frame 0 first), widened to -0.1–0.9 s, which holds
    # frame 0: kept; "bye" 1.6–1.9 s (midpoint 1.75: frame 1 first), widened to 1.25–2.25 s, no frame: left out
    assert answerer.prompt(sample, ["ignored"]) == "<image>\nhello\n<image>\nWhat?\nA. x\nB. y\n" + post
    assert answerer.prompt(sample) == "What?\nA. x\nB. y\n" + post
    assert (answerer.frames_as_in(False), answerer.frames_as_in(True)) == ("video", "images_first")
