"""The ``clip`` selector: the k frames whose cached CLIP features are closest to the question.

Score of frame i: the cosine between the CLIP text embedding of the question with its
options and the frame's cached image embedding. The text tower must be the one whose
image tower made the cache (the same architecture and weights), so the encoder comes from
the cache's own config, and before it is used one cached frame is encoded again and
compared with its stored feature: another encoder is refused with a message that says so.
"""

from __future__ import annotations

import io
import logging

import numpy as np

from hfs.pipeline.evaluation.selectors import Choice, Query, SelectorContext, SelectorError, register_selector
from hfs.pipeline.extract.encoder import EncoderError, load_clip

log = logging.getLogger(__name__)

MIN_SELF_COSINE = 0.9
"""A cached frame encoded again must have at least this cosine with its stored feature. The
teacher JPEG it is re-encoded from is the same frame rescaled and compressed, which moves
the embedding a little (≥ 0.98 measured with the tiny preset); another encoder gives an
unrelated vector."""


def load_cache_clip(cache_config: dict, cache=None, device: str = "cpu"):
    """The CLIP encoder named in ``cache_config`` (model, pretrained, preset), checked against a
    stored feature of ``cache`` (a ``FeatureCache``) when the cache keeps teacher frames."""
    model, pretrained = cache_config.get("model", "ViT-B-32"), cache_config.get("pretrained", "openai")
    preset = cache_config.get("preset")
    try:
        encoder = load_clip(model, pretrained, preset=preset, device=device)
    except EncoderError as err:
        raise SelectorError(f"the clip selector needs the encoder that made the cache ({model}, "
                            f"pretrained={pretrained}): {err}") from err
    if cache is not None:
        _check_same_encoder(encoder, cache)
    return encoder


def _check_same_encoder(encoder, cache) -> None:
    """Encode one cached teacher frame again and compare it with the cached feature."""
    from PIL import Image

    video = next(iter(cache.video_ids()), None)
    if video is None or cache.config.get("teacher_frame_size") is None:
        log.warning("cannot check that %s made the cache's features (no teacher frames stored)", encoder.name)
        return
    jpeg = cache.frames(video, [0])[0]
    pixels = encoder.preprocess(Image.open(io.BytesIO(jpeg)).convert("RGB")).unsqueeze(0)
    again = encoder.encode(pixels)[0].astype(np.float32)
    stored = cache.features(video)[0].astype(np.float32)
    cosine = float(again @ stored / (np.linalg.norm(again) * np.linalg.norm(stored) + 1e-12))
    if cosine < MIN_SELF_COSINE:
        raise SelectorError(
            f"{cache.path}: its features were not made by {encoder.name} (pretrained={encoder.pretrained}) as "
            f"loaded here: a cached frame encoded again has cosine {cosine:.2f} with its stored feature "
            f"(expected >= {MIN_SELF_COSINE}); the clip selector needs the cache's own encoder and weights"
        )
    log.info("clip selector: %s re-encodes a cached frame at cosine %.3f", encoder.name, cosine)


def query_text(query: Query) -> str:
    """What the text tower reads: the question, then its options."""
    return " ".join([query.question.strip(), *(o.strip() for o in query.options)])


@register_selector("clip")
def clip(query: Query, ctx: SelectorContext) -> Choice:
    """The k frames of largest cosine(CLIP text(question + options), cached frame feature)."""
    text = ctx.clip.encode_text([query_text(query)])[0]  # L2-normalised
    frames = query.features.astype(np.float32)
    frames /= np.linalg.norm(frames, axis=1, keepdims=True) + 1e-12
    scores = frames @ text
    top = np.argsort(-scores, kind="stable")[: ctx.k]
    return Choice(sorted(int(i) for i in top), [float(x) for x in scores])
