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

Under ``--protocol lmms-eval`` (`generate(frames_as="video")`) the k frames are ONE video instead,
as lmms-eval 0.7.3's Qwen2.5-VL wrapper (``lmms_eval/models/chat/qwen2_5_vl.py``) hands a
video to qwen-vl-utils 0.0.14's ``fetch_video`` and then to the processor; the frames are
passed the way hfs's lmms-eval plugin passes them there (a list of frames,
``pipeline/evaluation/lmms_plugin``): `preprocess_video` says step by step what happens.
The video is one `<|video_pad|>` run of (k/T)·h·w/merge² tokens with `video_grid_thw`
(k/T, h, w) and `second_per_grid_ts` T/2. LongVideoBench's interleaved-subtitle task
(`generate(frames_as="images_first")`) shows the wrapper k images before the text instead, each
resized as `preprocess_lmms_eval_images` says.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from hfs.pipeline.model.frames import check_frames, rescale_and_normalize, resize_frames, size_field
from hfs.pipeline.model.teachers.base import EncodedSample, Teacher, register_teacher, token_runs

LMMS_EVAL_MIN_PIXELS = 256 * 28 * 28
"""lmms-eval's Qwen2.5-VL ``min_pixels`` default (``lmms_eval/models/simple/qwen2_5_vl.py``)."""
LMMS_EVAL_MAX_PIXELS = 1605632
"""lmms-eval's Qwen2.5-VL ``max_pixels`` default."""
QWEN_VL_UTILS_FACTOR = 28
"""qwen-vl-utils' resize factor: its default image_patch_size 14 x SPATIAL_MERGE_SIZE 2."""
QWEN_VL_UTILS_IMAGE_MIN_PIXELS = 4 * 28 * 28
"""qwen-vl-utils' lower bound on an image given none (IMAGE_MIN_TOKEN_NUM · factor²)."""
QWEN_VL_UTILS_IMAGE_MAX_PIXELS = 16384 * 28 * 28
"""qwen-vl-utils' upper bound on an image given none (IMAGE_MAX_TOKEN_NUM · factor²)."""
QWEN_VL_UTILS_VIDEO_MAX_PIXELS = 768 * 28 * 28
"""qwen-vl-utils' per-frame cap of a video (VIDEO_MAX_TOKEN_NUM · factor²)."""
QWEN_VL_UTILS_TOTAL_PIXELS = 128000 * 28 * 28 * 0.9
"""qwen-vl-utils' whole-video pixel budget (MODEL_SEQ_LEN · factor² · 0.9, MODEL_SEQ_LEN's default)."""
QWEN_VL_UTILS_FRAME_LIST_FPS = 2.0
"""qwen-vl-utils' ``sample_fps`` of a video given as a list of frames (its default, 2 a second)."""


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


def fetch_image_resize(frames: Tensor, min_pixels: int, max_pixels: int) -> Tensor:
    """uint8 frames [k, 3, H, W] resized as qwen-vl-utils' ``fetch_image`` resizes each image: to
    `smart_resize` (factor 28) within [min_pixels, max_pixels], bicubic (PIL's default filter; here
    torchvision's antialiased bicubic, at most 2 grey levels apart), a frame of that size kept as it is."""
    height, width = smart_resize(*frames.shape[-2:], QWEN_VL_UTILS_FACTOR, min_pixels, max_pixels)
    return resize_frames(frames, height, width, "bicubic")


def patchify_video(pixels: Tensor, patch: int, merge: int, temporal: int) -> Tensor:
    """float [n, C, H, W] (one video, n a multiple of T) -> [(n/T)·(H/P)·(W/P), C·T·P·P], as
    `Qwen2VLVideoProcessor.patchify` lays it out: T consecutive frames share a patch row."""
    n, channels, height, width = pixels.shape
    if n % temporal:
        raise ValueError(f"a video of {n} frames does not split into temporal patches of {temporal}")
    grid_h, grid_w = height // patch, width // patch
    patches = pixels.reshape(n // temporal, temporal, channels, grid_h // merge, merge, patch,
                             grid_w // merge, merge, patch)
    # [t, h/merge, w/merge, merge, merge, C, T, P, P]
    patches = patches.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return patches.reshape(n // temporal * grid_h * grid_w, channels * temporal * patch * patch)


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
    video_input_refusal = None
    lmms_min_pixels: int = LMMS_EVAL_MIN_PIXELS
    """``min_pixels`` of lmms-eval's wrapper (its model_args default): what it gives qwen-vl-utils for a
    video, and its processor's lower bound on an image."""
    lmms_max_pixels: int = LMMS_EVAL_MAX_PIXELS
    """``max_pixels`` of lmms-eval's wrapper: qwen-vl-utils' for a video, its processor's for an image."""

    @staticmethod
    def model_class_loader():
        from transformers import Qwen2_5_VLForConditionalGeneration

        return Qwen2_5_VLForConditionalGeneration

    def preprocess_frames(self, frames: Tensor, pixel_bounds: tuple[int, int] | None = None) -> tuple[Tensor, Tensor]:
        """uint8 frames [k, 3, H, W] -> (pixel_values [k·h·w, 3·T·P·P] float32 on the frames'
        device, image_grid_thw [k, 3] int64 on the CPU, rows (1, h, w) in patches).

        Every parameter comes from the loaded image processor's config; ``pixel_bounds``
        (min_pixels, max_pixels) replaces its bounds, as a processor loaded with them would hold.
        """
        check_frames(frames)
        ip = self.image_processor
        patch, merge, temporal = ip.patch_size, ip.merge_size, ip.temporal_patch_size
        frames = frames.contiguous()
        if ip.do_resize:
            min_pixels = size_field(ip.size, "shortest_edge") or getattr(ip, "min_pixels", None)
            max_pixels = size_field(ip.size, "longest_edge") or getattr(ip, "max_pixels", None)
            if pixel_bounds is not None:
                min_pixels, max_pixels = pixel_bounds
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

    def preprocess_lmms_eval_images(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """uint8 frames [k, 3, H, W] as k images the way lmms-eval 0.7.3's Qwen2.5-VL chat wrapper
        hands a task's images (``doc_to_visual``'s PIL frames, no per-image bounds) to qwen-vl-utils
        and then to its processor; returns what `preprocess_frames` returns.

        1. qwen-vl-utils ``fetch_image`` (`fetch_image_resize`) within its defaults [4·28², 16384·28²];
        2. the processor, loaded with the wrapper's ``min_pixels``/``max_pixels``: `preprocess_frames`
           within those bounds.
        """
        check_frames(frames)
        frames = fetch_image_resize(frames.contiguous(), QWEN_VL_UTILS_IMAGE_MIN_PIXELS, QWEN_VL_UTILS_IMAGE_MAX_PIXELS)
        return self.preprocess_frames(frames, (self.lmms_min_pixels, self.lmms_max_pixels))

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
        return self._encode_images(chat_text, *self.preprocess_frames(frames))

    def encode_images_first_sample(self, chat_text: str, frames: Tensor) -> EncodedSample:
        """`encode_sample` with each frame resized as lmms-eval's wrapper resizes an image
        (`preprocess_lmms_eval_images`)."""
        return self._encode_images(chat_text, *self.preprocess_lmms_eval_images(frames))

    def _encode_images(self, chat_text: str, pixel_values: Tensor, grid: Tensor) -> EncodedSample:
        """The sample of `encode_sample` from the frames' pixel values and image_grid_thw."""
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
            units_per_frame=[1] * len(grid),
        )

    def preprocess_video(self, frames: Tensor) -> tuple[Tensor, Tensor, float]:
        """uint8 frames [k, 3, H, W] as ONE video -> (pixel_values_videos [(n/T)·h·w, 3·T·P·P] float32
        on the frames' device, video_grid_thw [1, 3] int64 on the CPU, second_per_grid_ts).

        The steps of lmms-eval's Qwen2.5-VL wrapper with the frames given as a list, as tensor ops:
        1. qwen-vl-utils ``fetch_image`` per frame: `smart_resize` (factor 28) within the wrapper's
           [min_pixels, max_pixels], bicubic resize (PIL's default filter);
        2. ``fetch_video``: an odd count padded with the last frame (FRAME_FACTOR 2), then the clip
           resized again, bicubic with antialias, `smart_resize` within [min_pixels, min(max_pixels,
           max(min(768·28², budget / n · 2), 1.05·min_pixels))];
        3. the processor's video processor: its own `smart_resize` (factor patch·merge, its config's
           size; the cap per frame only where its config sets ``cap_pixels_per_frame``), fused
           rescale + normalise, frames padded to a multiple of T and patchified T at a time;
        4. the clip's fps is qwen-vl-utils' 2.0 for a frame list, so ``second_per_grid_ts`` = T / 2.

        Step 1 resizes with torchvision's antialiased bicubic in place of PIL's: at most 2 grey levels
        apart (measured on 448x252, 112x56 and 1280x720 frames, mean 0.005); steps 2 and 3 are the
        same torchvision calls (steps 3 and 4 are checked against the processor in the tests). With
        lmms-eval's bounds step 2 leaves a frame within [256·28², 768·28²] pixels, which Qwen2.5-VL's
        video processor keeps as it is whether it holds its own bounds or the wrapper's
        ``AutoProcessor.from_pretrained(..., min_pixels, max_pixels)``.
        """
        check_frames(frames)
        frames = frames.contiguous()
        # 1. fetch_image, per frame
        frames = fetch_image_resize(frames, self.lmms_min_pixels, self.lmms_max_pixels)
        height, width = frames.shape[-2:]
        # 2. fetch_video
        if pad := -len(frames) % 2:
            frames = torch.cat([frames, frames[-1:].expand(pad, -1, -1, -1)])
        n = len(frames)
        cap = max(min(QWEN_VL_UTILS_VIDEO_MAX_PIXELS, QWEN_VL_UTILS_TOTAL_PIXELS / n * 2),
                  int(self.lmms_min_pixels * 1.05))
        height, width = smart_resize(height, width, QWEN_VL_UTILS_FACTOR, self.lmms_min_pixels,
                                     min(self.lmms_max_pixels, cap))
        if (height, width) != tuple(frames.shape[-2:]):
            frames = resize_frames(frames, height, width, "bicubic")
        # 3. the video processor
        vp = self.processor.video_processor
        patch, merge, temporal = vp.patch_size, vp.merge_size, vp.temporal_patch_size
        if vp.do_resize:
            min_pixels = size_field(vp.size, "shortest_edge") or getattr(vp, "min_pixels", None)
            max_pixels = size_field(vp.size, "longest_edge") or getattr(vp, "max_pixels", None)
            if not min_pixels or not max_pixels:
                raise ValueError(f"the Qwen video processor config has no min/max pixels (size={vp.size})")
            if getattr(vp, "cap_pixels_per_frame", None):
                total = int(getattr(vp, "max_video_tokens", 128000) * (patch * merge) ** 2 * 0.9)
                max_pixels = max(min(max_pixels, total * temporal // n), int(min_pixels * 1.05))
            target = smart_resize(height, width, patch * merge, min_pixels, max_pixels)
            if target != (height, width):
                frames = resize_frames(frames, *target, vp.resample)
        pixels = rescale_and_normalize(
            frames, vp.do_rescale, vp.rescale_factor, vp.do_normalize, vp.image_mean, vp.image_std
        )
        if pad := -len(pixels) % temporal:
            pixels = torch.cat([pixels, pixels[-1:].expand(pad, -1, -1, -1)])
        height, width = pixels.shape[-2:]
        if height % (patch * merge) or width % (patch * merge):
            raise ValueError(f"frames of {width}x{height} pixels do not split into {patch * merge}-pixel merge windows")
        grid = torch.tensor([[len(pixels) // temporal, height // patch, width // patch]], dtype=torch.long)
        # 4. timing
        return patchify_video(pixels, patch, merge, temporal), grid, temporal / QWEN_VL_UTILS_FRAME_LIST_FPS

    def encode_video_sample(self, chat_text: str, frames: Tensor) -> EncodedSample:
        """One sample whose uint8 frames [k, 3, H, W] are one video: the chat text's single
        `<|video_pad|>` becomes t·h·w/merge² of them, as `Qwen2_5_VLProcessor` writes it.

        frame_spans: the whole video's run once (its tokens are not per frame: T frames share one)."""
        pixel_values, grid, seconds = self.preprocess_video(frames)
        processor = self.processor
        merge = self.hf_model.config.vision_config.spatial_merge_size
        count = int(grid.prod()) // merge**2
        text = self.expand_image_placeholders(chat_text, processor.video_token, [processor.video_token * count])
        ids = self.tokenize_prompt(text)
        spans = token_runs(ids, self.hf_model.config.video_token_id)
        if [end - start for start, end in spans] != [count]:
            raise RuntimeError(f"video token runs {[e - s for s, e in spans]} do not match video_grid_thw "
                               f"{grid.tolist()} ({count} tokens in one run)")
        return EncodedSample(
            input_ids=ids,
            prompt_len=len(ids),
            frame_spans=spans,
            vision={"pixel_values_videos": pixel_values, "video_grid_thw": grid,
                    "second_per_grid_ts": torch.tensor([seconds])},
            extra={"mm_token_type_ids": self.token_type_ids(ids)},
            units_per_frame=[1],
        )

    def video_features(self, vision: dict[str, Tensor]):
        """Merged patch embeddings of each video from the frozen vision tower."""
        with torch.no_grad():
            outputs = self.hf_model.model.get_video_features(
                vision["pixel_values_videos"], vision["video_grid_thw"], return_dict=True
            )
        return outputs.pooler_output

    def image_features(self, vision: dict[str, Tensor], units_per_frame: list[int], gates: Tensor):
        """Per-image merged patch embeddings from the frozen vision tower, each times its gate."""
        with torch.set_grad_enabled(self.train_vision and torch.is_grad_enabled()):
            outputs = self.hf_model.model.get_image_features(
                vision["pixel_values"], vision["image_grid_thw"], return_dict=True
            )
        features = outputs.pooler_output
        gates = gates.to(features[0].dtype)
        return tuple(f * g for f, g in zip(features, gates))

    def next_text_positions(self, batch: dict[str, Tensor], vision: dict[str, Tensor]) -> Tensor:
        """[B] M-RoPE position of the text token after each sample: its length plus the rope delta
        `get_rope_index` finds (visual tokens advance the positions by less than their count)."""
        _, deltas = self.hf_model.model.get_rope_index(
            batch["input_ids"], mm_token_type_ids=batch["mm_token_type_ids"],
            attention_mask=batch["attention_mask"], **self.language_model_inputs(batch, vision))
        return batch["attention_mask"].sum(dim=1) + deltas.reshape(-1).to(batch["attention_mask"].device)

    def continuation_position_ids(self, next_positions: Tensor, length: int) -> Tensor:
        """Text tokens take the same position in M-RoPE's three sections -> [3, R, length]."""
        return super().continuation_position_ids(next_positions, length)[None].expand(3, -1, -1)

    def language_model_inputs(self, batch: dict[str, Tensor], vision: dict[str, Tensor]) -> dict:
        """`image_grid_thw` (or `video_grid_thw` and `second_per_grid_ts`) let the model build 3-D
        positions from input_ids and mm_token_type_ids."""
        names = ("image_grid_thw", "video_grid_thw", "second_per_grid_ts")
        return {name: vision[name] for name in names if name in vision}
