"""Qwen2.5-VL as the teacher (transformers' `Qwen2_5_VLForConditionalGeneration`).

Each frame is its own image (grid t=1 after duplicating the still frame over
the temporal patch), so it gets its own contiguous run of `<|image_pad|>`
tokens, `t·h·w / merge²` long, between `<|vision_start|>` and `<|vision_end|>`.
Gated features are handed to the model's own precomputed-features path
(`mm_encoder_outputs`) together with `input_ids`, `mm_token_type_ids` and
`image_grid_thw`, so the model computes its 3-D M-RoPE positions itself with
`get_rope_index`; passing `inputs_embeds` alone would fall back to 1-D positions.

Frames become pixel values as `Qwen2VLImageProcessor` (torchvision backend)
makes them, but as tensor ops on the frames' device: `smart_resize` to
multiples of patch·merge within [min_pixels, max_pixels], antialiased resize,
fused rescale + normalise in float32, and the flattened patch layout
[t·h·w, 3·T·P·P] with the still frame repeated over the temporal patch T.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from hfs.pipeline.model.frames import check_frames, rescale_and_normalize, resize_frames, size_field
from hfs.pipeline.model.teachers.base import EncodedSample, Teacher, register_teacher, token_runs


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen2-VL's target size (pixels) for a height x width frame: both sides multiples of
    `factor` (patch·merge), area within [min_pixels, max_pixels], aspect kept as closely as
    possible. Same arithmetic as transformers' `smart_resize` (Python's round, half to even)."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"frame aspect ratio must be below 200, got {max(height, width) / min(height, width)}")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def patchify(pixels: Tensor, patch: int, merge: int, temporal: int) -> Tensor:
    """float [k, C, H, W] -> [k·(H/P)·(W/P), C·T·P·P]: each frame's patches in merge-window order
    (a merge x merge block of patches is contiguous), each still patch repeated T times."""
    k, channels, height, width = pixels.shape
    grid_h, grid_w = height // patch, width // patch
    patches = pixels.reshape(k, channels, grid_h // merge, merge, patch, grid_w // merge, merge, patch)
    # [k, h/merge, w/merge, merge, merge, C, P, P]
    patches = patches.permute(0, 2, 5, 3, 6, 1, 4, 7)
    patches = patches.unsqueeze(6).expand(-1, -1, -1, -1, -1, -1, temporal, -1, -1)
    return patches.reshape(k * grid_h * grid_w, channels * temporal * patch * patch)


@register_teacher("qwen2_5_vl")
class QwenVLTeacher(Teacher):
    """Qwen2.5-VL-7B-Instruct teacher; LoRA on `model.language_model`, `model.visual` frozen."""

    model_type = "qwen2_5_vl"
    default_model = "Qwen/Qwen2.5-VL-7B-Instruct"

    @staticmethod
    def model_class_loader():
        from transformers import Qwen2_5_VLForConditionalGeneration

        return Qwen2_5_VLForConditionalGeneration

    def preprocess_frames(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """uint8 frames [k, 3, H, W] -> (pixel_values [k·h·w, 3·T·P·P] float32 on the frames'
        device, image_grid_thw [k, 3] int64 on the CPU, rows (1, h, w) in patches).

        Every parameter comes from the loaded image processor's config.
        """
        check_frames(frames)
        ip = self.image_processor
        patch, merge, temporal = ip.patch_size, ip.merge_size, ip.temporal_patch_size
        frames = frames.contiguous()
        if ip.do_resize:
            min_pixels = size_field(ip.size, "shortest_edge") or getattr(ip, "min_pixels", None)
            max_pixels = size_field(ip.size, "longest_edge") or getattr(ip, "max_pixels", None)
            if not min_pixels or not max_pixels:
                raise ValueError(f"the Qwen image processor config has no min/max pixels (size={ip.size})")
            height, width = smart_resize(*frames.shape[-2:], patch * merge, min_pixels, max_pixels)
            frames = resize_frames(frames, height, width, ip.resample)
        pixels = rescale_and_normalize(
            frames, ip.do_rescale, ip.rescale_factor, ip.do_normalize, ip.image_mean, ip.image_std
        )
        height, width = pixels.shape[-2:]
        if height % (patch * merge) or width % (patch * merge):
            raise ValueError(f"frames of {width}x{height} pixels do not split into {patch * merge}-pixel merge windows")
        grid = torch.tensor([[1, height // patch, width // patch]] * len(frames), dtype=torch.long)
        return patchify(pixels, patch, merge, temporal), grid

    def token_type_ids(self, ids: Tensor) -> Tensor:
        """`mm_token_type_ids` [L] as the processor marks tokens: 1 image, 2 video, 0 text
        (M-RoPE gives image tokens their 3-D positions from it)."""
        types = torch.zeros_like(ids)
        for value, token_ids in ((1, self.processor.image_token_ids), (2, self.processor.video_token_ids)):
            token_ids = [i for i in token_ids if i is not None]
            if token_ids:
                types[torch.isin(ids, torch.tensor(token_ids, dtype=ids.dtype))] = value
        return types

    def encode_sample(self, chat_text: str, frames: Tensor) -> EncodedSample:
        """One sample from uint8 frames [k, 3, H, W]: each `<|image_pad|>` of the chat text becomes
        t·h·w/merge² of them, as `Qwen2_5_VLProcessor` writes it; frame j's tokens are the j-th run."""
        pixel_values, grid = self.preprocess_frames(frames)
        processor = self.processor
        per_frame = (grid.prod(dim=-1) // self.image_processor.merge_size**2).tolist()
        text = self.expand_image_placeholders(
            chat_text, processor.image_token, [processor.image_token * n for n in per_frame]
        )
        ids = self.tokenize_prompt(text)
        merge = self.hf_model.config.vision_config.spatial_merge_size
        expected = (grid.prod(dim=-1) // merge**2).tolist()
        spans = token_runs(ids, self.hf_model.config.image_token_id)
        if [end - start for start, end in spans] != expected:
            raise RuntimeError(
                f"image token runs {[e - s for s, e in spans]} do not match image_grid_thw {expected} "
                "(a frame's tokens must be one contiguous run)"
            )
        return EncodedSample(
            input_ids=ids,
            prompt_len=len(ids),
            frame_spans=spans,
            vision={"pixel_values": pixel_values, "image_grid_thw": grid},
            extra={"mm_token_type_ids": self.token_type_ids(ids)},
            units_per_frame=[1] * len(frames),
        )

    def image_features(self, vision: dict[str, Tensor], units_per_frame: list[int], gates: Tensor):
        """Per-image merged patch embeddings from the frozen vision tower, each times its gate."""
        with torch.no_grad():
            outputs = self.hf_model.model.get_image_features(
                vision["pixel_values"], vision["image_grid_thw"], return_dict=True
            )
        features = outputs.pooler_output
        gates = gates.to(features[0].dtype)
        return tuple(f * g for f, g in zip(features, gates))

    def language_model_inputs(self, batch: dict[str, Tensor], vision: dict[str, Tensor]) -> dict:
        """`image_grid_thw` lets the model build 3-D positions from input_ids and mm_token_type_ids."""
        return {"image_grid_thw": vision["image_grid_thw"]}
