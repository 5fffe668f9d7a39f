"""Tiny models and a tokenizer made offline, for tests and the demo.

Nothing here downloads anything. The tokenizer is a small byte-level BPE
trained on a built-in English corpus and wrapped in transformers' own
`Qwen2Tokenizer`, so it saves, loads and chat-templates like the real Qwen2.5
tokenizer. The models are the real transformers classes (`Qwen2ForCausalLM`,
`Qwen2_5_VLForConditionalGeneration`, `InternVLForConditionalGeneration`)
built from small configs with random weights (seed fixed), saved with
`save_pretrained` next to their tokenizer and processor, so every caller goes
through the same `from_pretrained(path)` code as with a real checkpoint.

Presets (`TINY_PRESETS`) are just names for these builders; `tiny_model_path`
builds each preset once per process under a temporary directory.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
import threading
from functools import lru_cache
from pathlib import Path
from typing import Callable

logger = logging.getLogger(__name__)

SEED = 0
"""Seed of every tiny model's random weights."""

TINY_VOCAB_TARGET = 1024
"""Target size of the trained BPE vocabulary (before the special tokens)."""

# Qwen2.5 special tokens, in the order of the real vocabulary's added tokens.
ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
IMAGE_PAD = "<|image_pad|>"
VIDEO_PAD = "<|video_pad|>"
# InternVL's image markers and video placeholder.
IMG_START = "<img>"
IMG_END = "</img>"
IMG_CONTEXT = "<IMG_CONTEXT>"
INTERNVL_VIDEO = "<video>"

EXTRA_SPECIAL_TOKENS = (
    IM_START,
    IM_END,
    VISION_START,
    VISION_END,
    IMAGE_PAD,
    VIDEO_PAD,
    IMG_START,
    IMG_END,
    IMG_CONTEXT,
    INTERNVL_VIDEO,
)

INTERNVL_NAMED_TOKENS = {
    "start_image_token": IMG_START,
    "end_image_token": IMG_END,
    "context_image_token": IMG_CONTEXT,
    "video_token": INTERNVL_VIDEO,
}
"""Named tokens `InternVLProcessor.__init__` reads from its tokenizer."""

QWEN_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""The Qwen2.5-VL chat template (default system turn, image/video items)."""

INTERNVL_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\n'}}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<IMG_CONTEXT>\n' }}"
    "{% elif content['type'] == 'video' %}{{ '<video>\n' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}"
    "{% endif %}{% endfor %}{% endif %}"
    "{{'<|im_end|>\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{'<|im_start|>assistant\n' }}{% endif %}"
)
"""The chat template of transformers' InternVL-hf conversions (no default system turn)."""

_CORPUS = """\
The man walks into the kitchen and opens the fridge to take out a bottle of milk.
A woman is riding a bicycle along the river while a dog runs beside her.
Why did the boy pick up the red ball after the girl threw it across the room?
What happened after the cat jumped onto the table near the window?
How many people are sitting at the table when the waiter brings the food?
Where is the car parked at the beginning of the video, and where does it go at the end?
Which object does the person hold in the left hand while talking on the phone?
The children play football in the park, then they sit down on the grass to rest.
First the chef cuts the onions, next he heats the pan, and finally he adds the eggs.
She laughs because the baby drops the spoon again and again.
The video shows a cooking tutorial, a sports match, a news report and a travel vlog.
Answer with the option's letter from the given choices directly.
Analyse the question and each option step by step.
Name the key objects, actions, people, places and moments that tell the options apart.
Select the frames that show the visual cues needed to answer the question.
Frame 1 at 3.2 seconds, frame 2 at 7.5 seconds, frame 3 at 12.0 seconds.
The question asks about the order of events, the cause of an action and its effect.
Option A says the man is happy, option B says he is sad, option C says he is angry.
Option D says the woman leaves the room, option E says she stays and reads a book.
The temporal relation between the two events decides which answer is correct.
Describe what the people are wearing, the colour of the sky and the weather outside.
A large brown horse stands in a green field under a bright blue sky.
Two players shake hands at the end of the tennis match before the crowd cheers.
The teacher writes numbers on the board and the students copy them into notebooks.
During the concert the singer waves to the audience and the lights turn purple.
Is the door open or closed when the old man enters the house carrying a box?
The camera moves from the mountain to the lake, where a small boat is floating.
Someone pours water into a glass, drinks it, and puts the glass back on the shelf.
In the morning the street is empty; by noon it is full of cars, buses and people.
The girl in the yellow dress paints a picture of flowers with a thin brush.
What is the main topic of the video? Summarise it in one short sentence.
Count the number of times the ball hits the ground before the player catches it.
The scientist mixes two liquids and the colour changes from clear to dark orange.
The dog barks at the mailman, who drops the letters and runs back to the van.
At the beginning, in the middle, and near the end of the clip, different scenes appear.
The answer is the option that matches the action shown in the selected frames.
Please think about the relevant evidence, the objects involved and the timing.
A group of friends cooks dinner together, sets the table and watches a movie.
The pilot checks the instruments, talks to the tower and starts the engines.
Rain falls on the roof while a family plays cards by the warm fire.
"""


def _corpus_lines() -> list[str]:
    """Training text for the tiny BPE: the built-in corpus plus digits and letter options."""
    lines = _CORPUS.splitlines()
    lines += [f"{letter}. option {letter}" for letter in "ABCDEFGHIJ"]
    lines += [" ".join(str(n) for n in range(200))]
    return lines


@lru_cache(maxsize=1)
def _trained_bpe() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Train the byte-level BPE once per process; returns (vocab, merges).

    Uses Qwen2's own pre-tokenizer regex so words, digits and newlines are split
    exactly as the real tokenizer splits them.
    """
    import json

    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB_TARGET,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_corpus_lines(), trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    vocab = dict(model["vocab"])
    # Special tokens get fixed ids after the BPE vocabulary, in the real Qwen2.5
    # order, so every flavour of the tokenizer (and every model) agrees on them.
    for token in (ENDOFTEXT, *EXTRA_SPECIAL_TOKENS):
        vocab[token] = len(vocab)
    return vocab, merges


def build_tiny_tokenizer(internvl: bool = False):
    """A small Qwen2-style tokenizer made offline (`Qwen2Tokenizer`, a `PreTrainedTokenizerFast`).

    Byte-level BPE (~1k tokens) plus the Qwen2.5 special tokens and InternVL's
    `<img>`, `</img>`, `<IMG_CONTEXT>`, `<video>`, all as special added tokens,
    with the Qwen2.5 chat template; eos `<|im_end|>`, pad `<|endoftext|>` (as in
    Qwen2.5-*-Instruct). The vocabulary is the same with or without `internvl`;
    `internvl=True` also names the four InternVL tokens (`start_image_token`,
    `end_image_token`, `context_image_token`, `video_token`), which
    `InternVLProcessor` reads and which would mislead `Qwen2_5_VLProcessor`
    (it takes `tokenizer.video_token` when present).
    """
    from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

    vocab, merges = _trained_bpe()
    named = dict(INTERNVL_NAMED_TOKENS) if internvl else {}
    tokenizer = Qwen2Tokenizer(
        vocab=dict(vocab),
        merges=list(merges),
        unk_token=None,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        extra_special_tokens=list(EXTRA_SPECIAL_TOKENS),
        chat_template=QWEN_CHAT_TEMPLATE,
        model_max_length=32768,
        **named,
    )
    return tokenizer


def _token_ids(tokenizer) -> dict[str, int]:
    """Ids of the special tokens the configs need."""
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in (ENDOFTEXT, *EXTRA_SPECIAL_TOKENS)}
    return ids


def _text_config_kwargs(vocab_size: int, ids: dict[str, int]) -> dict:
    """Sizes shared by every tiny language model (Qwen2 family)."""
    return dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        rms_norm_eps=1e-6,
        bos_token_id=ids[ENDOFTEXT],
        eos_token_id=ids[IM_END],
        pad_token_id=ids[ENDOFTEXT],
    )


def tiny_student_config():
    """`Qwen2Config` of the tiny student: hidden 64, 2 layers, 4 heads (2 kv), tied embeddings."""
    from transformers import Qwen2Config

    tokenizer = build_tiny_tokenizer()
    kwargs = _text_config_kwargs(len(tokenizer), _token_ids(tokenizer))
    return Qwen2Config(**kwargs, tie_word_embeddings=True, rope_parameters={"rope_type": "default", "rope_theta": 1e6})


def tiny_qwen_vl_config():
    """`Qwen2_5_VLConfig`: 2-block vision tower (hidden 32, patch 14, merge 2, temporal patch 2)
    projecting to a 2-layer text model (hidden 64, head dim 16, M-RoPE sections 2+3+3 = 16/2)."""
    from transformers import Qwen2_5_VLConfig

    tokenizer = build_tiny_tokenizer()
    ids = _token_ids(tokenizer)
    text = _text_config_kwargs(len(tokenizer), ids)
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]}
    vision = dict(
        depth=2,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=112,
        out_hidden_size=text["hidden_size"],
        fullatt_block_indexes=[1],
        tokens_per_second=2,
    )
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids[IMAGE_PAD],
        video_token_id=ids[VIDEO_PAD],
        vision_start_token_id=ids[VISION_START],
        vision_end_token_id=ids[VISION_END],
        tie_word_embeddings=False,
    )


INTERNVL_TILE = 56
"""Tile side in pixels of the tiny InternVL (vision image_size = processor tile size)."""

INTERNVL_PATCH = 14
INTERNVL_TOKENS_PER_TILE = (INTERNVL_TILE // INTERNVL_PATCH) ** 2 // 4
"""Visual tokens per tile after the 0.5 pixel-shuffle: (56/14)² · 0.5² = 4."""


def tiny_internvl_config():
    """`InternVLConfig`: 2-layer InternViT (hidden 32, 56-pixel tiles, patch 14) and a
    2-layer Qwen2 text model (hidden 64); 0.5 downsampling gives 4 tokens per tile."""
    from transformers import InternVLConfig, InternVLVisionConfig, Qwen2Config

    tokenizer = build_tiny_tokenizer(internvl=True)
    ids = _token_ids(tokenizer)
    text = Qwen2Config(
        **_text_config_kwargs(len(tokenizer), ids),
        tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6},
    )
    vision = InternVLVisionConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=[INTERNVL_TILE, INTERNVL_TILE],
        patch_size=[INTERNVL_PATCH, INTERNVL_PATCH],
    )
    return InternVLConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=ids[IMG_CONTEXT],
        image_seq_length=INTERNVL_TOKENS_PER_TILE,
        downsample_ratio=0.5,
        tie_word_embeddings=False,
    )


def _seeded_model(model_cls, config):
    """Instantiate `model_cls(config)` in fp32 with weights drawn from the fixed seed."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = model_cls(config)
    return model.float().eval()


def _save_quietly(model, out: Path) -> None:
    """`model.save_pretrained(out)` without transformers' progress bar (a tiny model is one shard)."""
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(out)
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def build_tiny_student(out_dir: str | Path) -> Path:
    """Save a random tiny `Qwen2ForCausalLM` student and its tokenizer to `out_dir`; returns it."""
    from transformers import Qwen2ForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = _seeded_model(Qwen2ForCausalLM, tiny_student_config())
    _save_quietly(model, out)
    build_tiny_tokenizer().save_pretrained(out)
    logger.info("built tiny student in %s", out)
    return out


def _qwen_vl_processor():
    """`Qwen2_5_VLProcessor` with small pixel bounds: a 64×48 frame becomes a 56×56 image, 4 tokens."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    bounds = {"min_pixels": 56 * 56, "max_pixels": 112 * 112}
    common = dict(patch_size=14, temporal_patch_size=2, merge_size=2, **bounds)
    return Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**common),
        tokenizer=build_tiny_tokenizer(),
        video_processor=Qwen2VLVideoProcessor(**common),
        chat_template=QWEN_CHAT_TEMPLATE,
    )


def _internvl_processor():
    """`InternVLProcessor` with 56-pixel tiles (at most 4 tiles plus a thumbnail per image)."""
    from transformers import GotOcr2ImageProcessor, InternVLProcessor, InternVLVideoProcessor
    from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    tile = {"height": INTERNVL_TILE, "width": INTERNVL_TILE}
    image_processor = GotOcr2ImageProcessor(
        size=tile,
        crop_to_patches=False,
        min_patches=1,
        max_patches=4,
        image_mean=OPENAI_CLIP_MEAN,
        image_std=OPENAI_CLIP_STD,
    )
    return InternVLProcessor(
        image_processor=image_processor,
        tokenizer=build_tiny_tokenizer(internvl=True),
        video_processor=InternVLVideoProcessor(size=tile),
        image_seq_length=INTERNVL_TOKENS_PER_TILE,
        chat_template=INTERNVL_CHAT_TEMPLATE,
    )


TEACHER_KINDS = ("qwen2_5_vl", "internvl")


def _check_kind(kind: str) -> None:
    """Raise a one-line error for an unknown teacher kind."""
    if kind not in TEACHER_KINDS:
        raise ValueError(f"unknown tiny teacher kind {kind!r}; expected one of {', '.join(TEACHER_KINDS)}")


def build_tiny_processor(kind: str):
    """The tiny teacher's processor (tokenizer, image and video processors, chat template), unsaved."""
    _check_kind(kind)
    return _qwen_vl_processor() if kind == "qwen2_5_vl" else _internvl_processor()


def build_tiny_teacher(kind: str, out_dir: str | Path) -> Path:
    """Save a random tiny teacher of `kind` ("qwen2_5_vl" | "internvl") with its processor; returns `out_dir`."""
    from transformers import InternVLForConditionalGeneration, Qwen2_5_VLForConditionalGeneration

    _check_kind(kind)
    if kind == "qwen2_5_vl":
        model_cls, config = Qwen2_5_VLForConditionalGeneration, tiny_qwen_vl_config()
    else:
        model_cls, config = InternVLForConditionalGeneration, tiny_internvl_config()
    processor = build_tiny_processor(kind)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _save_quietly(_seeded_model(model_cls, config), out)
    processor.save_pretrained(out)
    logger.info("built tiny %s teacher in %s", kind, out)
    return out


def _teacher_builder(kind: str) -> Callable[[str | Path], Path]:
    """`build_tiny_teacher` bound to one kind (a named function, so presets read well in logs)."""

    def build(out_dir: str | Path) -> Path:
        return build_tiny_teacher(kind, out_dir)

    build.__name__ = f"build_tiny_{kind}"
    return build


TINY_PRESETS: dict[str, Callable[[str | Path], Path]] = {
    "tiny-student": build_tiny_student,
    "tiny-qwen2_5_vl": _teacher_builder("qwen2_5_vl"),
    "tiny-internvl": _teacher_builder("internvl"),
}
"""Preset name → builder(out_dir) -> Path. Accepted wherever a model id or path is."""

_cache_lock = threading.Lock()
_cache_root: Path | None = None
_cache_paths: dict[str, Path] = {}


def _process_cache_root() -> Path:
    """A temporary directory for this process's tiny builds, removed at exit."""
    global _cache_root
    if _cache_root is None:
        _cache_root = Path(tempfile.mkdtemp(prefix="hfs-tiny-"))
        atexit.register(shutil.rmtree, _cache_root, ignore_errors=True)
    return _cache_root


def tiny_model_path(preset: str) -> Path:
    """Folder of the tiny `preset`, built on first use and reused for the rest of the process."""
    if preset not in TINY_PRESETS:
        raise KeyError(f"unknown tiny preset {preset!r}; known: {', '.join(sorted(TINY_PRESETS))}")
    with _cache_lock:
        if preset not in _cache_paths:
            _cache_paths[preset] = TINY_PRESETS[preset](_process_cache_root() / preset)
        return _cache_paths[preset]
