"""The frozen CLIP encoder: factory loading, weight resolution, preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hfs.pipeline.extract.encoder import EncoderError, load_clip

pytestmark = pytest.mark.xdist_group("clip")  # one test process imports open_clip (make test: --dist loadgroup)


@pytest.fixture(scope="module")
def tiny():
    return load_clip(preset="tiny", pretrained="none")


def test_tiny_encoder_layout(tiny):
    assert tiny.embed_dim == 512 and tiny.image_size == 224
    x = tiny.preprocess_frame(np.zeros((61, 97, 3), np.uint8))  # odd sizes resize + centre crop
    assert tuple(x.shape) == (3, 224, 224)
    emb = tiny.encode(torch.stack([x, x]))
    assert emb.shape == (2, 512) and emb.dtype == np.float16
    assert not any(p.requires_grad for p in tiny.model.parameters())


def test_random_weights_are_the_same_in_every_process(tiny):
    torch.manual_seed(123)  # the global RNG state must not matter
    again = load_clip(preset="tiny", pretrained="none")
    for a, b in zip(tiny.model.parameters(), again.model.parameters()):
        assert torch.equal(a, b)


def test_checkpoint_path_round_trip(tiny, tmp_path):
    ckpt = tmp_path / "clip.pt"
    sd = {k: v + 1.0 if v.is_floating_point() else v for k, v in tiny.model.state_dict().items()}
    torch.save(sd, ckpt)
    loaded = load_clip(preset="tiny", pretrained=str(ckpt))
    assert torch.equal(loaded.model.state_dict()["visual.proj"], sd["visual.proj"])
    assert loaded.pretrained == str(ckpt)


def test_missing_weights_say_how_to_get_them():
    with pytest.raises(EncoderError, match="not in the local open_clip / Hugging Face cache") as e:
        load_clip("ViT-B-32", "openai")
    assert "--pretrained /path/to" in str(e.value) and "--pretrained none" in str(e.value)
    with pytest.raises(EncoderError, match="no pretrained tag 'nosuch'"):
        load_clip("ViT-B-32", "nosuch")
    with pytest.raises(EncoderError, match="does not exist"):
        load_clip("ViT-B-32", "/nope/clip.bin")
