"""One video in a worker: the decode child's frames → CLIP features + teacher JPEGs (a ``VideoResult``).

Frames reach the worker scaled in the decoder's own conversion to what the two uses need
(CLIP's input, the teacher's JPEG), and each use resizes once.
"""

from __future__ import annotations

import io
import logging
import time
from typing import Any, Iterator, Sequence

import numpy as np

from hfs.cache import VideoResult
from hfs.pipeline.decode.child import (
    DecodeFailed,
    DecodeProcess,
    End,
    Fail,
    Frame,
    Info,
    Message,
    Start,
    decode_messages,
    get_decoder,
)
from hfs.pipeline.extract.config import ExtractConfig, decode_options

log = logging.getLogger(__name__)


def teacher_jpeg(rgb, longest: int, quality: int) -> bytes:
    """The whole frame for the teacher: aspect kept, longest side `longest`, never upscaled.
    `rgb`: H×W×3 uint8 or a PIL image."""
    from PIL import Image

    img = rgb if isinstance(rgb, Image.Image) else Image.fromarray(rgb)
    scale = longest / max(img.size)
    if scale < 1.0:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()



def _assemble(video: dict, messages: Iterator[Message], encoder: Any, cfg: ExtractConfig) -> VideoResult:
    """Preprocess the frames of one clip as they arrive, then encode them: its VideoResult.
    Never raises for a bad video."""
    import torch
    from PIL import Image

    path = video["path"]
    meta: dict[str, float] = {}  # monotonic times (seconds) of the steps, for tests and benchmarks
    decode_s = 0.0
    t0 = time.perf_counter()
    try:
        info: dict | None = None
        pixels = filled = jpegs = None
        distinct = truncated = 0
        decoder = ""
        for msg in messages:
            if isinstance(msg, Start):
                meta["decode_started"] = msg.monotonic
            elif isinstance(msg, Info):
                info = msg
                size = encoder.image_size
                pixels = torch.empty(cfg.frames, 3, size, size)
                filled = np.zeros(cfg.frames, dtype=bool)
                jpegs = [None] * cfg.frames
            elif isinstance(msg, Frame):
                targets, n_truncated, backend, rgb = msg
                decoder = backend or decoder
                distinct += 1
                truncated += n_truncated
                img = Image.fromarray(rgb)  # one image per frame, already at the size the uses need
                x = encoder.preprocess_frame(img)
                jpg = teacher_jpeg(img, cfg.teacher_frame_size, cfg.jpeg_quality) if cfg.teacher_frame_size else None
                for j in targets:
                    pixels[j] = x
                    jpegs[j] = jpg
                    filled[j] = True
            elif isinstance(msg, End):
                decode_s = msg.decode_s
            elif isinstance(msg, Fail):
                return VideoResult.failed(video, msg.reason, decode_s=msg.decode_s)
        if info is None or not filled.any():
            return VideoResult.failed(video, "no frame could be decoded", decode_s=decode_s)
        decoded = int(filled.sum()) - truncated
        if not filled.all():  # e.g. truncated file: later targets take the nearest decoded frame
            have = np.flatnonzero(filled)
            for j in np.flatnonzero(~filled):
                k = have[np.argmin(np.abs(have - j))]
                pixels[j], jpegs[j] = pixels[k], jpegs[k]
        meta["encode_started"] = time.monotonic()
        t1 = time.perf_counter()
        feats = np.concatenate([encoder.encode(pixels[i : i + cfg.batch_size])
                                for i in range(0, cfg.frames, cfg.batch_size)])
        meta["encode_ended"] = time.monotonic()
        encode_s = time.perf_counter() - t1
        result = VideoResult(
            video["video_id"], path, video.get("start"), video.get("end"), features=feats,
            timestamps=info.timestamps.astype(np.float32), frames=jpegs if cfg.teacher_frame_size else None,
            duration=info.duration, fps=info.fps, width=info.width, height=info.height,
            frames_decoded=decoded, distinct_frames=distinct, decoder=decoder, decode_s=decode_s, encode_s=encode_s,
        )
        result.meta.update(meta)
        return result
    except DecodeFailed as e:
        return VideoResult.failed(video, str(e), decode_s=time.perf_counter() - t0)
    except Exception as e:  # a bug or an exotic file must not kill the shard
        log.exception("unexpected error on %s", path)
        return VideoResult.failed(video, f"{type(e).__name__}: {e}", decode_s=decode_s or time.perf_counter() - t0)


def extract_video(video: dict, encoder: Any, cfg: ExtractConfig) -> VideoResult:
    """Decode, preprocess and encode one clip in this process (no isolation, no time limit:
    `run_shard` decodes in a child process). Never raises for a bad video: a problem
    becomes an error row with a one-line reason."""
    return _assemble(video, decode_messages(video, decode_options(cfg)), encoder, cfg)


def extract_videos(videos: Sequence[dict], encoder: Any, cfg: ExtractConfig,
                   decoder: DecodeProcess | None = None) -> Iterator[VideoResult]:
    """The VideoResult of each clip, in order, decoded by `decoder` (default: this process's
    decode child). Video i+1 is handed to the child before video i is encoded, so the two
    overlap; a video that hangs or crashes the decoder is an error row and the rest go on."""
    decoder = decoder or get_decoder()
    opts = decode_options(cfg)
    if videos:
        decoder.submit(videos[0], opts)
    for i, video in enumerate(videos):
        decoded = _read_all(decoder.messages(video))
        if i + 1 < len(videos):
            decoder.submit(videos[i + 1], opts)  # the child decodes it while this one is encoded
        yield _assemble(video, iter(decoded), encoder, cfg)


def _read_all(messages: Iterator[Message]) -> list[Message]:
    """Every message of one video off the child (waiting for them is where the time limit
    applies); a video the child failed on is its ``Start`` and one ``Fail``."""
    got: list[Message] = []
    try:
        for msg in messages:
            got.append(msg)
    except DecodeFailed as e:
        return [m for m in got if isinstance(m, Start)] + [Fail(str(e), e.seconds)]
    return got

