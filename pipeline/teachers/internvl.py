"""InternVL3 as the teacher (transformers' `InternVLForConditionalGeneration`, the "-hf" checkpoints).

Frames are not tiled by default (`max_tiles = 1`): each frame is resized to
one 448-px tile, 256 tokens, which is how InternVL3 itself runs video (its
`load_video(..., max_num=1)`). The processor tiles images by default: a 16:9
frame becomes 2 tiles + a thumbnail, three times the tokens, and a training
step at the paper's sizes (16 frames) ran out of memory on a 141 GB H200
(benchmarks/RESULTS.md). `max_tiles > 1` tiles frames the image-chat way.

The processor writes each image as `<img>` + `<IMG_CONTEXT>`·(tiles·tokens per
tile) + `</img>` and does not return how many tiles each image got, so a
frame's span comes from its `<img>…</img>` pair and its tile count from the
span length. Image features come per tile; a frame's gate repeats over its
tiles. Gated features go through the model's `mm_encoder_outputs` path.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hfs.pipeline.teachers.base import EncodedSample, Teacher, register_teacher


@register_teacher("internvl")
class InternVLTeacher(Teacher):
    """InternVL3-8B-hf teacher; LoRA on `model.language_model`, vision tower and projector frozen."""

    model_type = "internvl"
    default_model = "OpenGVLab/InternVL3-8B-hf"

    @staticmethod
    def model_class_loader():
        from transformers import InternVLForConditionalGeneration

        return InternVLForConditionalGeneration

    def _frame_spans(self, ids: Tensor) -> list[tuple[int, int]]:
        """[start, end) of the `<IMG_CONTEXT>` tokens inside each `<img>…</img>` pair, in order."""
        starts = (ids == self.processor.start_image_token_id).nonzero().flatten().tolist()
        ends = (ids == self.processor.end_image_token_id).nonzero().flatten().tolist()
        if len(starts) != len(ends) or any(e <= s for s, e in zip(starts, ends)):
            raise RuntimeError(f"unbalanced image markers: <img> at {starts}, </img> at {ends}")
        spans = [(s + 1, e) for s, e in zip(starts, ends)]
        context_id = self.hf_model.config.image_token_id
        for start, end in spans:
            if not bool((ids[start:end] == context_id).all()):
                raise RuntimeError(f"tokens {start}..{end} between <img> and </img> are not all image tokens")
        return spans

    def encode_sample(self, chat_text: str, frames: list) -> EncodedSample:
        """Processor output of one sample; tiles per frame = span length / tokens per tile."""
        tiling = {"crop_to_patches": False} if self.max_tiles <= 1 else {"crop_to_patches": True, "max_patches": self.max_tiles}
        inputs = self.processor(text=[chat_text], images=frames, return_tensors="pt", **tiling)
        ids = inputs["input_ids"][0]
        spans = self._frame_spans(ids)
        per_tile = self.processor.image_seq_length
        tiles = [(end - start) // per_tile for start, end in spans]
        if any((end - start) % per_tile for start, end in spans) or sum(tiles) != len(inputs["pixel_values"]):
            raise RuntimeError(
                f"image spans {[e - s for s, e in spans]} do not split into {len(inputs['pixel_values'])} tiles "
                f"of {per_tile} tokens (vision image_size must equal the processor's tile size)"
            )
        return EncodedSample(
            input_ids=ids,
            prompt_len=len(ids),
            frame_spans=spans,
            vision={"pixel_values": inputs["pixel_values"]},
            extra={},
            units_per_frame=tiles,
        )

    def image_features(self, vision: dict[str, Tensor], units_per_frame: list[int], gates: Tensor):
        """Projected tile features [tiles, tokens, dh] from the frozen encoder, times their frame's gate."""
        with torch.no_grad():
            features = self.hf_model.model.get_image_features(
                pixel_values=vision["pixel_values"], return_dict=True
            ).pooler_output
        repeats = torch.tensor(units_per_frame, device=gates.device)
        tile_gates = gates.repeat_interleave(repeats).to(features.dtype)
        return features * tile_gates[:, None, None]
