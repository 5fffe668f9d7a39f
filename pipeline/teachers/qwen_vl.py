"""Qwen2.5-VL as the teacher (transformers' `Qwen2_5_VLForConditionalGeneration`).

Each frame is its own image (grid t=1 after duplicating the still frame over
the temporal patch), so it gets its own contiguous run of `<|image_pad|>`
tokens, `t·h·w / merge²` long, between `<|vision_start|>` and `<|vision_end|>`.
Gated features are handed to the model's own precomputed-features path
(`mm_encoder_outputs`) together with `input_ids`, `mm_token_type_ids` and
`image_grid_thw`, so the model computes its 3-D M-RoPE positions itself with
`get_rope_index`; passing `inputs_embeds` alone would fall back to 1-D positions.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hfs.pipeline.teachers.base import EncodedSample, Teacher, register_teacher, token_runs


@register_teacher("qwen2_5_vl")
class QwenVLTeacher(Teacher):
    """Qwen2.5-VL-7B-Instruct teacher; LoRA on `model.language_model`, `model.visual` frozen."""

    model_type = "qwen2_5_vl"
    default_model = "Qwen/Qwen2.5-VL-7B-Instruct"

    @staticmethod
    def model_class_loader():
        from transformers import Qwen2_5_VLForConditionalGeneration

        return Qwen2_5_VLForConditionalGeneration

    def encode_sample(self, chat_text: str, frames: list) -> EncodedSample:
        """Processor output of one sample; frame j's tokens are the j-th `<|image_pad|>` run."""
        inputs = self.processor(text=[chat_text], images=frames, return_tensors="pt")
        ids = inputs["input_ids"][0]
        grid = inputs["image_grid_thw"]
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
            vision={"pixel_values": inputs["pixel_values"], "image_grid_thw": grid},
            extra={"mm_token_type_ids": inputs["mm_token_type_ids"][0]},
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
