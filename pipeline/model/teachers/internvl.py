"""InternVL3 as the teacher (transformers' `InternVLForConditionalGeneration`, the "-hf" checkpoints).

Frames are not tiled by default (`max_tiles = 1`): each frame is resized to
one 448-px tile, 256 tokens, which is how InternVL3 itself runs video (its
`load_video(..., max_num=1)`). The processor tiles images by default: a 16:9
frame becomes 2 tiles + a thumbnail, three times the tokens, and a training
step at the paper's sizes (16 frames) ran out of memory on a 141 GB H200
(benchmarks/RESULTS.md). `max_tiles > 1` tiles frames the image-chat way.

Frames become tiles as `GotOcr2ImageProcessor` (torchvision backend) makes
them, but as tensor ops on the frames' device: one tile per frame resized to
the tile size, or for `max_tiles > 1` the grid of tiles whose aspect ratio is
closest to the frame's, cut row-major, plus a thumbnail of the whole frame;
then fused rescale + normalise in float32. Each frame's placeholder becomes
`<img>` + `<IMG_CONTEXT>`·(tiles·tokens per tile) + `</img>`, as
`InternVLProcessor` writes it; a frame's span is the inside of its
`<img>…</img>` pair, checked against its tile count. Image features come per
tile; a frame's gate repeats over its tiles. Gated features go through the
model's `mm_encoder_outputs` path.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

from hfs.pipeline.model.frames import check_frames, rescale_and_normalize, resize_frames, size_field
from hfs.pipeline.model.teachers.base import EncodedSample, Teacher, register_teacher


@lru_cache(maxsize=16)
def tile_grids(min_tiles: int, max_tiles: int) -> tuple[tuple[int, int], ...]:
    """Every (columns, rows) grid with min_tiles <= columns·rows <= max_tiles, fewest tiles first
    (stable, so equal counts keep columns-major order, as transformers lists them)."""
    grids = [
        (cols, rows)
        for cols in range(1, max_tiles + 1)
        for rows in range(1, max_tiles + 1)
        if min_tiles <= cols * rows <= max_tiles
    ]
    return tuple(sorted(grids, key=lambda g: g[0] * g[1]))


def best_tile_grid(
    height: int, width: int, tile_h: int, tile_w: int, min_tiles: int, max_tiles: int
) -> tuple[int, int]:
    """(columns, rows) of the grid whose aspect ratio is closest to the frame's (width/height).

    On a tie the grid with more tiles wins while the frame's area exceeds half the tiled area,
    so small frames are not cut into many tiles (transformers' `get_optimal_tiled_canvas`).
    """
    aspect = width / height
    area = width * height
    best_diff, best = float("inf"), (1, 1)
    for cols, rows in tile_grids(min_tiles, max_tiles):
        diff = abs(aspect - cols / rows)
        if diff < best_diff:
            best_diff, best = diff, (cols, rows)
        elif diff == best_diff and area > 0.5 * tile_h * tile_w * cols * rows:
            best = (cols, rows)
    return best


def _tile_size(size) -> tuple[int, int]:
    """(height, width) of one tile from the image processor's `size`."""
    height, width = size_field(size, "height"), size_field(size, "width")
    if not height or not width:
        raise ValueError(f"the InternVL image processor config needs size height and width, got {size}")
    return int(height), int(width)


@register_teacher("internvl")
class InternVLTeacher(Teacher):
    """InternVL3-8B-hf teacher; LoRA on `model.language_model`, vision tower and projector frozen."""

    model_type = "internvl"
    default_model = "OpenGVLab/InternVL3-8B-hf"
    video_input_refusal = (
        "--protocol lmms-eval is not implemented for InternVL: lmms-eval 0.7.3's InternVL3 wrapper "
        "(lmms_eval/models/simple/internvl3.py) runs the remote-code checkpoint's own `chat` (its system "
        "prompt and template), the frames as images tiled up to max(1, min(max_num, total_max_num // frames)) "
        "with a thumbnail, and 'Frame1: <image>\\n...' before the question, none of which this -hf teacher "
        "reproduces; use --protocol hfs, or a Qwen2.5-VL teacher"
    )

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

    def preprocess_frames(self, frames: Tensor) -> tuple[Tensor, list[int]]:
        """uint8 frames [k, 3, H, W] -> (pixel_values [tiles, 3, tile_h, tile_w] float32 on the
        frames' device, frame j's tiles then its thumbnail before frame j+1's; tiles per frame).

        `max_tiles <= 1`: one tile per frame, the whole frame resized to the tile size. Otherwise
        the frame is resized to the best grid of tiles (`best_tile_grid`, at least the config's
        min_patches, at most `max_tiles`), cut row-major, and a grid of more than one tile gets
        a thumbnail of the whole frame. Every parameter comes from the image processor's config.
        """
        check_frames(frames)
        ip = self.image_processor
        tile_h, tile_w = _tile_size(ip.size)
        frames = frames.contiguous()
        k, channels = frames.shape[:2]
        if self.max_tiles > 1:
            # all frames of a sample share one size, hence one grid
            cols, rows = best_tile_grid(*frames.shape[-2:], tile_h, tile_w, ip.min_patches, self.max_tiles)
            canvas = resize_frames(frames, rows * tile_h, cols * tile_w, ip.resample)
            tiles = canvas.reshape(k, channels, rows, tile_h, cols, tile_w).permute(0, 2, 4, 1, 3, 5)
            tiles = tiles.reshape(k, rows * cols, channels, tile_h, tile_w)
            if rows * cols != 1:
                thumbnail = resize_frames(frames, tile_h, tile_w, ip.resample)
                tiles = torch.cat([tiles, thumbnail.unsqueeze(1)], dim=1)
            per_frame = tiles.shape[1]
            tiles = tiles.reshape(k * per_frame, channels, tile_h, tile_w)
        else:
            per_frame = 1
            tiles = resize_frames(frames, tile_h, tile_w, ip.resample) if ip.do_resize else frames
        pixels = rescale_and_normalize(
            tiles, ip.do_rescale, ip.rescale_factor, ip.do_normalize, ip.image_mean, ip.image_std
        )
        return pixels, [per_frame] * k

    def encode_sample(self, chat_text: str, frames: Tensor) -> EncodedSample:
        """One sample from uint8 frames [k, 3, H, W]; tiles per frame = span length / tokens per tile."""
        pixel_values, tiles = self.preprocess_frames(frames)
        vision_size = self.hf_model.config.vision_config.image_size
        vision_size = tuple(vision_size) if isinstance(vision_size, (list, tuple)) else (vision_size, vision_size)
        if tuple(pixel_values.shape[-2:]) != vision_size:
            raise RuntimeError(
                f"tiles of {tuple(pixel_values.shape[-2:])} pixels do not fit the vision tower's image_size "
                f"{vision_size} (the processor's tile size must equal it)"
            )
        processor = self.processor
        per_tile = processor.image_seq_length
        replacements = [
            f"{processor.start_image_token}{processor.image_token * per_tile * n}{processor.end_image_token}"
            for n in tiles
        ]
        ids = self.tokenize_prompt(self.expand_image_placeholders(chat_text, processor.image_token, replacements))
        spans = self._frame_spans(ids)
        if [end - start for start, end in spans] != [per_tile * n for n in tiles]:
            raise RuntimeError(
                f"image spans {[e - s for s, e in spans]} do not hold {tiles} tiles of {per_tile} tokens"
            )
        return EncodedSample(
            input_ids=ids,
            prompt_len=len(ids),
            frame_spans=spans,
            vision={"pixel_values": pixel_values},
            extra={},
            units_per_frame=tiles,
        )

    def image_features(self, vision: dict[str, Tensor], units_per_frame: list[int], gates: Tensor):
        """Projected tile features [tiles, tokens, dh] from the frozen encoder, times their frame's gate."""
        with torch.set_grad_enabled(self.train_vision and torch.is_grad_enabled()):
            features = self.hf_model.model.get_image_features(
                pixel_values=vision["pixel_values"], return_dict=True
            ).pooler_output
        repeats = torch.tensor(units_per_frame, device=gates.device)
        tile_gates = gates.repeat_interleave(repeats).to(features.dtype)
        return features * tile_gates[:, None, None]
