"""The ``lmms-eval`` protocol's frame inputs on the tiny teachers: the selected frames as ONE video, as
lmms-eval's Qwen2.5-VL wrapper passes a video task's (`Teacher.generate(frames_as="video")`), and as k
images before the text, as it passes an image task's (``frames_as="images_first"``, LongVideoBench's
interleaved-subtitle task)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hfs.pipeline.model import prompts
from hfs.pipeline.model.teachers import load_teacher
from hfs.pipeline.model.teachers.base import token_runs

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.xdist_group("models")]

TEXT = "What is shown?\nA. a cat\nB. a dog\nAnswer with the option's letter from the given choices directly."


def _frames(seed: int, width: int, height: int, k: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (k, 3, height, width), dtype=np.uint8))


@pytest.fixture(scope="module")
def qwen():
    teacher = load_teacher("qwen2_5_vl", "tiny-qwen2_5_vl", lora_r=0).eval()
    # bounds under which a 112x56 frame is kept as it is by qwen-vl-utils' two resizes and the tiny
    # video processor's (56², 112²), so the processor can be called on the frames themselves below
    teacher.lmms_min_pixels, teacher.lmms_max_pixels = 56 * 56, 112 * 112
    return teacher


def _video_chat(teacher) -> str:
    return teacher.processor.apply_chat_template(prompts.teacher_video_messages(TEXT), add_generation_prompt=True,
                                                 tokenize=False)


@pytest.mark.parametrize("k", [3, 4])
def test_frames_are_one_video_placeholder_run_sized_by_the_frames(qwen, k):
    chat = _video_chat(qwen)
    assert chat.count(qwen.processor.video_token) == 1 and qwen.processor.image_token not in chat
    sample = qwen.encode_video_sample(chat, _frames(k, 112, 56, k))
    config = qwen.hf_model.config
    # an odd count is padded with the last frame (qwen-vl-utils), then T=2 frames share a token grid:
    # 4 frames of 112x56 -> grid (2, 4, 8) -> 2·4·8 / 2² = 16 tokens
    assert sample.vision["video_grid_thw"].tolist() == [[2, 4, 8]]
    assert token_runs(sample.input_ids, config.video_token_id) == sample.frame_spans
    assert [e - s for s, e in sample.frame_spans] == [16]
    assert not (sample.input_ids == config.image_token_id).any()
    assert sample.vision["second_per_grid_ts"].tolist() == [1.0]  # T / qwen-vl-utils' 2 fps of a frame list
    assert sample.extra["mm_token_type_ids"].tolist().count(2) == 16


def test_video_input_equals_the_hf_processor(qwen):
    # what lmms-eval's wrapper hands the processor after qwen-vl-utils: the clip, its metadata at 2 fps
    frames = _frames(0, 112, 56, 4)
    chat = _video_chat(qwen)
    ours = qwen.encode_video_sample(chat, frames)
    ref = qwen.processor(text=[chat], videos=[frames], return_tensors="pt",
                         video_metadata=[{"fps": 2.0, "frames_indices": list(range(4)), "total_num_frames": 4}])
    assert torch.equal(ours.input_ids, ref["input_ids"][0])
    assert torch.equal(ours.vision["video_grid_thw"], ref["video_grid_thw"])
    assert torch.equal(ours.extra["mm_token_type_ids"], ref["mm_token_type_ids"][0])
    assert ours.vision["second_per_grid_ts"].tolist() == list(ref["second_per_grid_ts"])
    assert (ours.vision["pixel_values_videos"] - ref["pixel_values_videos"]).abs().max().item() <= 1e-6


def test_default_lmms_eval_pixel_bounds_resize_twice_then_to_the_processor():
    # lmms-eval's min_pixels 256·28² lifts a 112x56 frame by sqrt(32) to ceil(22.6)·28 x ceil(11.3)·28 =
    # 644x336 (qwen-vl-utils' first resize; its second keeps it, 216384 px <= 768·28²); the tiny video
    # processor (at most 112² px) brings it down by sqrt(17.25) to floor(5.5)·28 x floor(2.9)·28 = 140x56:
    # 2 frames -> grid (1, 4, 10), 10 tokens
    teacher = load_teacher("qwen2_5_vl", "tiny-qwen2_5_vl", lora_r=0).eval()
    sample = teacher.encode_video_sample(_video_chat(teacher), _frames(1, 112, 56, 2))
    assert sample.vision["video_grid_thw"].tolist() == [[1, 4, 10]]
    assert [e - s for s, e in sample.frame_spans] == [10]


def test_generate_as_video_equals_transformers_generate(qwen):
    frames = [_frames(2, 112, 56, 3), _frames(3, 112, 56, 2)]
    responses = qwen.generate(frames, [TEXT, TEXT], max_new_tokens=5, frames_as="video")
    for sample_frames, response in zip(frames, responses):
        batch, vision = qwen.collate([qwen.encode_video_sample(_video_chat(qwen), sample_frames)])
        with torch.no_grad():
            out = qwen.hf_model.generate(**batch, **vision, max_new_tokens=5, do_sample=False,
                                         eos_token_id=[qwen.tokenizer.eos_token_id,
                                                       qwen.tokenizer.convert_tokens_to_ids("<|im_end|>")])
        assert response == qwen.tokenizer.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)


def _images_chat(teacher, k: int) -> str:
    return teacher.processor.apply_chat_template(prompts.teacher_messages(k, TEXT), add_generation_prompt=True,
                                                 tokenize=False)


@pytest.mark.parametrize(("width", "height", "grid"), [
    # lmms-eval's min_pixels 256·28² lifts a 112x56 frame (qwen-vl-utils keeps it: multiples of 28, within its
    # defaults [4·28², 16384·28²]) by sqrt(32) to ceil(22.6)·28 x ceil(11.3)·28 = 644x336: grid (1, 24, 46)
    (112, 56, [1, 24, 46]),
    # a 64x48 frame: qwen-vl-utils rounds it to 56x56 (3136 px, its lower bound), then the processor lifts
    # it by sqrt(64) = 8 to 448x448: grid (1, 32, 32)
    (64, 48, [1, 32, 32]),
])
def test_images_first_are_k_images_before_the_text_resized_by_lmms_evals_bounds(width, height, grid):
    teacher = load_teacher("qwen2_5_vl", "tiny-qwen2_5_vl", lora_r=0).eval()
    chat = _images_chat(teacher, 3)
    sample = teacher.encode_images_first_sample(chat, _frames(4, width, height, 3))
    assert sample.vision["image_grid_thw"].tolist() == [grid] * 3  # three separate images
    tokens = grid[1] * grid[2] // 4
    assert [e - s for s, e in sample.frame_spans] == [tokens] * 3
    assert token_runs(sample.input_ids, teacher.hf_model.config.image_token_id) == sample.frame_spans
    text_ids = teacher.tokenizer("What is shown?", add_special_tokens=False)["input_ids"]
    ids = sample.input_ids.tolist()
    text_at = next(i for i in range(len(ids)) if ids[i:i + len(text_ids)] == text_ids)
    assert sample.frame_spans[-1][1] < text_at  # every image before the text
    # the teacher's own input (the tiny processor's bounds, at most 112² px) keeps a 112x56 frame as it is
    own = teacher.encode_sample(chat, _frames(4, 112, 56, 3))
    assert own.vision["image_grid_thw"].tolist() == [[1, 4, 8]] * 3


def test_images_first_input_equals_the_hf_processor(qwen):
    # with the fixture's bounds (those of the tiny processor) a 112x56 frame is kept by both resizes, so
    # the processor on the frames themselves is what lmms-eval's wrapper hands it after qwen-vl-utils
    frames = _frames(5, 112, 56, 3)
    chat = _images_chat(qwen, 3)
    ours = qwen.encode_images_first_sample(chat, frames)
    ref = qwen.processor(text=[chat], images=list(frames), return_tensors="pt")
    assert torch.equal(ours.input_ids, ref["input_ids"][0])
    assert torch.equal(ours.vision["image_grid_thw"], ref["image_grid_thw"])
    assert torch.equal(ours.extra["mm_token_type_ids"], ref["mm_token_type_ids"][0])
    assert (ours.vision["pixel_values"] - ref["pixel_values"]).abs().max().item() <= 1e-6


def test_generate_images_first_equals_transformers_generate(qwen):
    frames = [_frames(6, 112, 56, 3), _frames(7, 112, 56, 2)]
    responses = qwen.generate(frames, [TEXT, TEXT], max_new_tokens=5, frames_as="images_first")
    for sample_frames, response in zip(frames, responses):
        batch, vision = qwen.collate([qwen.encode_images_first_sample(_images_chat(qwen, len(sample_frames)),
                                                                      sample_frames)])
        with torch.no_grad():
            out = qwen.hf_model.generate(**batch, **vision, max_new_tokens=5, do_sample=False,
                                         eos_token_id=[qwen.tokenizer.eos_token_id,
                                                       qwen.tokenizer.convert_tokens_to_ids("<|im_end|>")])
        assert response == qwen.tokenizer.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    with pytest.raises(ValueError, match="frames_as must be one of"):
        qwen.generate(frames, [TEXT, TEXT], max_new_tokens=1, frames_as="images")


def test_internvl_refuses_the_video_input():
    teacher = load_teacher("internvl", "tiny-internvl", lora_r=0)
    assert "InternVL3 wrapper" in teacher.video_input_refusal
    with pytest.raises(NotImplementedError, match="--protocol lmms-eval is not implemented for InternVL"):
        teacher.generate([_frames(0, 64, 48, 2)], [TEXT], max_new_tokens=2, frames_as="video")
    with pytest.raises(NotImplementedError, match="--protocol lmms-eval is not implemented for InternVL"):
        teacher.generate([_frames(0, 64, 48, 2)], [TEXT], max_new_tokens=2, frames_as="images_first")
