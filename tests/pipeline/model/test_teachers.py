"""Teachers (Eqs. 16-18) on tiny random Qwen2.5-VL and InternVL models, plus model loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hfs.pipeline.model import loading, tiny
from hfs.pipeline.model.teachers import (
    InternVLTeacher,
    QwenVLTeacher,
    TeacherScorer,
    list_teachers,
    load_scorer,
    load_teacher,
    register_teacher,
    save_scorer,
)
from hfs.pipeline.model.teachers.base import HIDDEN_LAYER, letter_token_ids, token_runs

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.xdist_group("models")]  # one test process loads the model stack (--dist loadgroup)

KINDS = ("qwen2_5_vl", "internvl")
QUESTIONS = ["Why did the man open the fridge?", "What does the woman say?"]
OPTIONS = [["to take milk", "to clean it", "to close it"], ["hello", "bye"]]
TIMES = [[1.0, 4.5, 9.0], [0.5, 2.0, 3.5]]


def _frames(seed: int, width: int, height: int, k: int = 3) -> torch.Tensor:
    """k noise frames of one video, uint8 [k, 3, height, width]; different seeds give different frames."""
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (k, 3, height, width), dtype=np.uint8))


# With tiling on (max_tiles=4), a 112x56 frame becomes 2 tiles + a thumbnail in the tiny InternVL,
# so a gate must repeat over tiles; a 64x48 frame stays one tile. In the tiny Qwen2.5-VL they
# give 8 and 4 visual tokens a frame.
FRAMES = [_frames(0, 112, 56), _frames(1, 64, 48)]


@pytest.fixture(scope="module", params=KINDS)
def teacher(request):
    teacher = load_teacher(request.param, f"tiny-{request.param}").eval()
    if request.param == "internvl":
        teacher.max_tiles = 4  # the tiled path, the harder case for gates and pooling
    return teacher


def test_internvl_frames_are_one_tile_each_unless_tiling_is_asked_for():
    teacher = load_teacher("internvl", "tiny-internvl")
    assert teacher.max_tiles == 1
    prompt = teacher.build_prompt(3, QUESTIONS[0], OPTIONS[0], TIMES[0])
    one = teacher.encode_sample(prompt, FRAMES[0])
    assert one.units_per_frame == [1, 1, 1] and len(one.vision["pixel_values"]) == 3
    per_tile = teacher.processor.image_seq_length
    assert [e - s for s, e in one.frame_spans] == [per_tile] * 3
    teacher.max_tiles = 4
    tiled = teacher.encode_sample(prompt, FRAMES[0])
    assert tiled.units_per_frame == [3, 3, 3]  # 2:1 frames: 2 tiles + a thumbnail each
    assert [e - s for s, e in tiled.frame_spans] == [3 * per_tile] * 3
    assert teacher.encode_sample(prompt, FRAMES[1]).units_per_frame == [1, 1, 1]  # 4:3 stays one tile


# -- tensor image path == the HF processor on the same frames as PIL images ----------------------

PIXEL_ATOL = 1e-6
"""Allowed |pixel_values - HF processor's| after normalisation. Measured: 0.0 for every case
below (same uint8 resize kernel on the CPU, same fused float32 normalisation)."""

FRAME_SIZES = [(64, 48), (112, 56), (56, 42), (448, 252), (252, 448), (200, 300), (30, 500)]
"""(width, height): landscape, 2:1, tiny, the cache's 16:9 at 448, portraits, an extreme strip."""

VARIANTS = [("qwen2_5_vl", 1), ("internvl", 1), ("internvl", 4)]
"""(teacher kind, max_tiles)."""


@pytest.fixture(scope="module")
def frozen_teachers():
    """One adapter-free teacher per kind, for encoding-only tests."""
    return {kind: load_teacher(kind, f"tiny-{kind}", lora_r=0).eval() for kind in KINDS}


def _as_pil(frames: torch.Tensor) -> list:
    """uint8 [k, 3, H, W] -> k PIL RGB images (tests only: the reference input of the HF processor)."""
    from PIL import Image

    return [Image.fromarray(f.permute(1, 2, 0).numpy()) for f in frames]


def _processor_reference(teacher, chat: str, frames: torch.Tensor):
    """The HF processor on the same frames as PIL images, with the teacher's tiling kwargs,
    and the tiles per frame from its image processor."""
    pil = _as_pil(frames)
    tiling = {}
    if isinstance(teacher, InternVLTeacher):
        tiling = {"crop_to_patches": False}
        if teacher.max_tiles > 1:
            tiling = {"crop_to_patches": True, "max_patches": teacher.max_tiles}
    ref = teacher.processor(text=[chat], images=pil, return_tensors="pt", **tiling)
    tiles = None
    if isinstance(teacher, InternVLTeacher):
        tiles = teacher.processor.image_processor(pil, return_tensors="pt", **tiling)["num_patches"]
        tiles = tiles.tolist() if hasattr(tiles, "tolist") else list(tiles)
    return ref, tiles


def _check_equals_processor(teacher, frames: torch.Tensor) -> float:
    """encode_sample(frames) against the HF processor; returns max |pixel difference|."""
    chat = teacher.build_prompt(len(frames), QUESTIONS[0], OPTIONS[0], TIMES[0][: len(frames)])
    ours = teacher.encode_sample(chat, frames)
    ref, tiles = _processor_reference(teacher, chat, frames)
    ref_ids = ref["input_ids"][0]
    assert torch.equal(ours.input_ids, ref_ids)
    # each frame's visual tokens are one run of the image token in the processor's ids
    assert ours.frame_spans == token_runs(ref_ids, teacher.hf_model.config.image_token_id)
    if isinstance(teacher, QwenVLTeacher):
        assert torch.equal(ours.vision["image_grid_thw"], ref["image_grid_thw"])
        assert torch.equal(ours.extra["mm_token_type_ids"], ref["mm_token_type_ids"][0])
    else:
        assert ours.units_per_frame == tiles
    pixels, ref_pixels = ours.vision["pixel_values"], ref["pixel_values"]
    assert pixels.dtype == torch.float32 and pixels.shape == ref_pixels.shape
    diff = (pixels - ref_pixels).abs().max().item()
    assert diff <= PIXEL_ATOL
    return diff


@pytest.mark.parametrize("size", FRAME_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("kind,max_tiles", VARIANTS, ids=lambda v: str(v))
def test_encode_sample_from_tensors_equals_the_hf_processor(frozen_teachers, monkeypatch, kind, max_tiles, size):
    teacher = frozen_teachers[kind]
    monkeypatch.setattr(teacher, "max_tiles", max_tiles)
    _check_equals_processor(teacher, _frames(sum(size), *size))


def test_qwen_at_the_real_pixel_bounds_keeps_a_448x252_frame(frozen_teachers, monkeypatch):
    """Qwen2.5-VL-7B's bounds (min 56², max 28²·16384 pixels): a cached 448x252 frame is already
    a multiple of 28, so it is not resized: 16x9 merge windows, 144 tokens a frame."""
    from transformers.image_utils import SizeDict

    teacher = frozen_teachers["qwen2_5_vl"]
    monkeypatch.setattr(teacher.processor.image_processor, "size", SizeDict(shortest_edge=3136, longest_edge=12845056))
    frames = _frames(5, 448, 252, k=2)
    _check_equals_processor(teacher, frames)
    chat = teacher.build_prompt(2, QUESTIONS[0], OPTIONS[0], None)
    sample = teacher.encode_sample(chat, frames)
    assert sample.vision["image_grid_thw"].tolist() == [[1, 18, 32]] * 2
    assert [e - s for s, e in sample.frame_spans] == [144, 144]


def test_frames_of_a_batch_may_differ_in_size_between_samples(frozen_teachers):
    teacher = frozen_teachers["qwen2_5_vl"]
    samples = teacher.encode_batch(FRAMES, QUESTIONS, OPTIONS, TIMES)
    assert [s.vision["image_grid_thw"].tolist() for s in samples] == [[[1, 4, 8]] * 3, [[1, 4, 4]] * 3]


def test_forward_runs_no_pil_and_no_processor_call(teacher, monkeypatch):
    """The step's image path is tensor ops: any PIL image op or processor call fails the pass."""
    import PIL.Image

    def forbidden(*args, **kwargs):
        raise AssertionError("PIL or the HF processor ran inside the teacher's forward pass")

    for name in ("resize", "convert", "crop", "transpose", "tobytes"):
        monkeypatch.setattr(PIL.Image.Image, name, forbidden)
    for name in ("fromarray", "frombuffer", "frombytes", "open", "new"):
        monkeypatch.setattr(PIL.Image, name, forbidden)
    monkeypatch.setattr(type(teacher.processor), "__call__", forbidden)
    image_processor = type(teacher.processor.image_processor)
    for name in ("__call__", "preprocess", "_preprocess", "resize", "rescale_and_normalize"):
        monkeypatch.setattr(image_processor, name, forbidden)
    with pytest.raises(AssertionError, match="PIL or the HF processor"):
        teacher.processor(text=["x"])  # the patches bite

    gates = torch.ones(2, 3, requires_grad=True)
    out = teacher(FRAMES, gates, QUESTIONS, OPTIONS, TIMES, answers=None)
    teacher.zero_grad()
    out.option_logits[:, :2].sum().backward()
    assert (gates.grad != 0).all()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in teacher.trainable_parameters())
    teacher.zero_grad()


@pytest.mark.parametrize("kind", KINDS)
def test_option_logits_are_fp32_for_a_bf16_model_under_autocast(kind):
    teacher = load_teacher(kind, f"tiny-{kind}", dtype=torch.bfloat16, lora_r=0).eval()
    head = teacher.hf_model.get_output_embeddings()
    assert head.weight.dtype == torch.bfloat16
    states = torch.randn(2, teacher.hidden_size, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    options = [["a", "b", "c"], ["x", "y"]]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        # what the guard is for: autocast would run an fp32 linear in bf16
        assert torch.nn.functional.linear(states.float(), head.weight.float()).dtype == torch.bfloat16
        z = teacher._option_logits(states, options)
    assert z.dtype == torch.float32
    letters = letter_token_ids(teacher.tokenizer, 3)
    reference = states.double() @ head.weight[letters].double().T
    if head.bias is not None:
        reference = reference + head.bias[letters].double()
    torch.testing.assert_close(z[0].double(), reference[0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(z[1, :2].double(), reference[1, :2], atol=1e-6, rtol=1e-5)
    assert torch.isneginf(z[1, 2])
    # the whole pass under autocast, bf16 weights: fp32 option logits
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        out = teacher(FRAMES, torch.ones(2, 3), QUESTIONS, OPTIONS, TIMES)
    assert out.option_logits.dtype == torch.float32 and torch.isfinite(out.option_logits[:, :2]).all()


def _plain_forward(teacher, samples):
    """The unmodified transformers forward (its own vision path and positions) on the teacher's inputs."""
    batch, vision = teacher.collate(samples)
    with torch.no_grad():
        return teacher.hf_model(**batch, **vision, output_hidden_states=True, use_cache=False), batch


def test_gates_of_one_equal_the_plain_forward(teacher):
    gates = torch.ones(2, 3)
    with torch.no_grad():
        out = teacher(FRAMES, gates, QUESTIONS, OPTIONS, TIMES)
    samples = teacher.encode_batch(FRAMES, QUESTIONS, OPTIONS, TIMES)
    plain, _ = _plain_forward(teacher, samples)
    letters = [teacher.tokenizer.convert_tokens_to_ids(c) for c in "ABC"]
    hidden = plain.hidden_states[HIDDEN_LAYER]
    for b, s in enumerate(samples):
        answer_pos = s.prompt_len - 1
        expected = plain.logits[b, answer_pos, letters[: len(OPTIONS[b])]]
        torch.testing.assert_close(out.option_logits[b, : len(OPTIONS[b])], expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(out.context_hidden[b], hidden[b, answer_pos], atol=1e-5, rtol=0)
        pooled = torch.stack([hidden[b, i:j].mean(0) for i, j in s.frame_spans])
        torch.testing.assert_close(out.frame_hidden[b], pooled, atol=1e-5, rtol=0)
    assert out.answer_loss is None


def test_answer_position_emits_the_bare_letter(teacher):
    chat = teacher.build_prompt(2, "Why?", ["x", "y"], None)
    assert chat.endswith("<|im_start|>assistant\n")
    tok = teacher.tokenizer
    for letter, token_id in zip("AB", letter_token_ids(tok, 2)):
        assert tok(chat + letter).input_ids == tok(chat).input_ids + [token_id]
        assert tok.convert_ids_to_tokens(token_id) == letter


def _image_token_positions(teacher, input_ids_row, sample):
    """Independent of the teacher's span code: image-token positions split per frame by size."""
    image_id = teacher.hf_model.config.image_token_id
    positions = (input_ids_row == image_id).nonzero().flatten().tolist()
    if isinstance(teacher, QwenVLTeacher):
        merge = teacher.hf_model.config.vision_config.spatial_merge_size
        sizes = (sample.vision["image_grid_thw"].prod(-1) // merge**2).tolist()
    else:
        sizes = [u * teacher.processor.image_seq_length for u in sample.units_per_frame]
    assert sum(sizes) == len(positions)
    bounds = np.cumsum([0] + sizes)
    return [positions[bounds[j] : bounds[j + 1]] for j in range(len(sizes))]


def test_pooling_takes_exactly_each_frames_vision_tokens(teacher):
    """Make the second-to-last layer output encode (sample, position); pooled values reveal positions."""
    layers = teacher.hf_model.model.language_model.layers

    def positional_output(module, args, output):
        b, length, d = output.shape
        code = 1000.0 * torch.arange(b)[:, None] + torch.arange(length)[None, :]
        return code[:, :, None].expand(b, length, d).to(output.dtype)

    handle = layers[len(layers) + HIDDEN_LAYER].register_forward_hook(positional_output, prepend=True)
    try:
        with torch.no_grad():
            out = teacher(FRAMES, torch.ones(2, 3), QUESTIONS, OPTIONS, TIMES)
    finally:
        handle.remove()
    samples = teacher.encode_batch(FRAMES, QUESTIONS, OPTIONS, TIMES)
    for b, s in enumerate(samples):
        per_frame = _image_token_positions(teacher, s.input_ids, s)
        expected = torch.tensor([1000.0 * b + np.mean(p) for p in per_frame], dtype=torch.float32)
        torch.testing.assert_close(out.frame_hidden[b, :, 0], expected)
        assert out.context_hidden[b, 0].item() == 1000.0 * b + len(s.input_ids) - 1


def test_gates_receive_gradient_and_scale_features(teacher):
    gates = torch.ones(2, 3, requires_grad=True)
    out = teacher(FRAMES, gates, QUESTIONS, OPTIONS, TIMES)
    out.option_logits[0, 0].backward()
    assert gates.grad is not None
    assert (gates.grad[0] != 0).all()  # every frame of sample 0 matters
    assert (gates.grad[1] == 0).all()  # samples do not leak into each other
    with torch.no_grad():
        half = teacher(FRAMES, torch.full((2, 3), 0.5), QUESTIONS, OPTIONS, TIMES)
    assert not torch.allclose(half.option_logits[0, :3], out.option_logits[0, :3].detach())


def test_batch_with_different_option_counts_matches_single_samples(teacher):
    with torch.no_grad():
        out = teacher(FRAMES, torch.ones(2, 3), QUESTIONS, OPTIONS, TIMES)
        alone = teacher(FRAMES[1:], torch.ones(1, 3), QUESTIONS[1:], OPTIONS[1:], TIMES[1:])
    assert out.option_logits.shape == (2, 3)
    assert out.frame_hidden.shape == (2, 3, teacher.hidden_size)
    assert out.context_hidden.shape == (2, teacher.hidden_size)
    assert torch.isneginf(out.option_logits[1, 2]) and torch.isfinite(out.option_logits[1, :2]).all()
    # right padding leaves the shorter sample's positions and results unchanged
    torch.testing.assert_close(out.option_logits[1, :2], alone.option_logits[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(out.frame_hidden[1], alone.frame_hidden[0], atol=1e-5, rtol=0)


def test_open_ended_answer_loss_matches_plain_lm_loss_and_trains(teacher):
    answers = [None, "She says hello to the man"]
    options = [OPTIONS[0], None]
    gates = torch.ones(2, 3, requires_grad=True)
    out = teacher(FRAMES, gates, QUESTIONS, options, TIMES, answers)
    assert out.answer_mask.tolist() == [False, True]
    assert torch.isneginf(out.option_logits[1]).all()
    loss = out.answer_loss[1]
    assert torch.isfinite(loss) and loss > 0 and out.answer_loss[0] == 0

    sample = teacher.encode_batch(FRAMES[1:], QUESTIONS[1:], [None], TIMES[1:], answers[1:])[0]
    plain, batch = _plain_forward(teacher, [sample])
    labels = batch["input_ids"].clone()
    labels[:, : sample.prompt_len] = -100
    expected = torch.nn.functional.cross_entropy(plain.logits[0, :-1], labels[0, 1:], ignore_index=-100)
    torch.testing.assert_close(loss.detach(), expected, atol=1e-5, rtol=0)

    teacher.zero_grad()
    loss.backward()
    assert (gates.grad[1] != 0).any()
    lora_b = [p for n, p in teacher.named_parameters() if "lora_B" in n]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in lora_b)
    teacher.zero_grad()


def test_lora_only_on_language_model(teacher):
    names = [n for n, p in teacher.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n and ".language_model." in n for n in names)
    layers = teacher.hf_model.config.get_text_config().num_hidden_layers
    assert len(names) == layers * 7 * 2  # q,k,v,o,gate,up,down × (A, B)
    inner = teacher.hf_model.model
    # Qwen's projector (merger) lives inside `visual`; InternVL's is `multi_modal_projector`
    frozen = [inner.visual] if isinstance(teacher, QwenVLTeacher) else [inner.vision_tower, inner.multi_modal_projector]
    for module in frozen:
        assert not any("lora_" in n for n, _ in module.named_parameters())
        assert not any(p.requires_grad for p in module.parameters())
    assert len(teacher.trainable_parameters()) == len(names)


def _randomise_lora(teacher, seed: int) -> None:
    """Give lora_B non-zero values so the adapter changes the outputs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in teacher.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)


@pytest.mark.parametrize("kind", KINDS)
def test_adapter_save_load_round_trip(kind, tmp_path):
    import json

    trained = load_teacher(kind, f"tiny-{kind}").eval()
    args = (FRAMES[:1], torch.ones(1, 3), QUESTIONS[:1], OPTIONS[:1], TIMES[:1])
    with torch.no_grad():
        before = trained(*args).option_logits
        _randomise_lora(trained, seed=3)
        expected = trained(*args)
    assert not torch.allclose(before, expected.option_logits)  # the adapter matters
    folder = trained.save_adapter(tmp_path / "lora")
    reloaded = load_teacher(kind, f"tiny-{kind}", adapter=folder).eval()
    with torch.no_grad():
        got = reloaded(*args)
    torch.testing.assert_close(got.option_logits, expected.option_logits, atol=0, rtol=0)
    torch.testing.assert_close(got.frame_hidden, expected.frame_hidden, atol=0, rtol=0)

    config_file = folder / "adapter_config.json"
    assert json.loads(config_file.read_text())["base_model_name_or_path"] == f"tiny-{kind}"
    config = json.loads(config_file.read_text())
    config["base_model_name_or_path"] = "Qwen/Qwen2.5-VL-7B-Instruct"
    config_file.write_text(json.dumps(config))
    with pytest.raises(loading.ModelLoadError, match="was trained on 'Qwen/Qwen2.5-VL-7B-Instruct'"):
        reloaded.load_adapter(folder)


def test_teacher_scorer_eq18_and_round_trip(tmp_path):
    torch.manual_seed(0)
    scorer = TeacherScorer(hidden_size=8, mlp_hidden=16)
    frames, context = torch.randn(2, 5, 8, requires_grad=True), torch.randn(2, 8)
    logits = scorer(frames, context)
    assert logits.shape == (2, 5)
    manual = scorer.mlp(torch.cat([frames[0, 3], context[0]]))
    torch.testing.assert_close(logits[0, 3], manual[0])
    logits.sum().backward()
    assert frames.grad.abs().sum() > 0 and all(p.grad is not None for p in scorer.parameters())
    loaded = load_scorer(save_scorer(scorer, tmp_path / "mlp_t.safetensors"))
    assert (loaded.hidden_size, loaded.mlp_hidden) == (8, 16)
    torch.testing.assert_close(loaded(frames, context), logits)


def test_registry_and_auto_kind():
    assert list_teachers() == ["internvl", "qwen2_5_vl"]
    assert QwenVLTeacher.default_model == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert InternVLTeacher.default_model == "OpenGVLab/InternVL3-8B-hf"
    auto = load_teacher("auto", "tiny-internvl", lora_r=0)
    assert isinstance(auto, InternVLTeacher) and not auto.trainable_parameters()
    with pytest.raises(ValueError, match="unknown teacher 'llava'"):
        load_teacher("llava", "tiny-internvl")
    with pytest.raises(ValueError, match="already registered"):
        register_teacher("internvl")(QwenVLTeacher)
    with pytest.raises(loading.ModelLoadError, match="is a 'internvl' model"):
        load_teacher("qwen2_5_vl", "tiny-internvl")


def test_bad_batch_arguments_fail_clearly(teacher):
    with pytest.raises(ValueError, match="has 3 frames but gates has k=2"):
        teacher(FRAMES, torch.ones(2, 2), QUESTIONS, OPTIONS)
    with pytest.raises(ValueError, match="options has 1 entries for 2 samples"):
        teacher(FRAMES, torch.ones(2, 3), QUESTIONS, OPTIONS[:1])
    with pytest.raises(ValueError, match=r"frames of sample 1 must be a uint8 tensor \[k, 3, H, W\].*got list"):
        teacher([FRAMES[0], _as_pil(FRAMES[1])], torch.ones(2, 3), QUESTIONS, OPTIONS)
    with pytest.raises(ValueError, match=r"frames of sample 0 must be a uint8 tensor .*torch.float32"):
        teacher([FRAMES[0].float(), FRAMES[1]], torch.ones(2, 3), QUESTIONS, OPTIONS)
    with pytest.raises(ValueError, match=r"got torch.uint8 \[3, 56, 112\]"):
        teacher([FRAMES[0][0], FRAMES[1]], torch.ones(2, 3), QUESTIONS, OPTIONS)


def test_resolve_model_path(tmp_path):
    assert loading.resolve_model_path(str(tmp_path)) == tmp_path
    assert loading.resolve_model_path("tiny-student") == tiny.tiny_model_path("tiny-student")
    with pytest.raises(loading.ModelLoadError) as err:
        loading.resolve_model_path("hfs-test-org/not-cached-model-7B", what="--student")
    message = str(err.value)
    assert "\n" not in message and "--student" in message
    assert "huggingface-cli download hfs-test-org/not-cached-model-7B --local-dir models/not-cached-model-7B" in message
    with pytest.raises(loading.ModelLoadError, match="no such folder"):
        loading.resolve_model_path(str(tmp_path / "missing"))
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(loading.ModelLoadError, match="is a file"):
        loading.resolve_model_path(str(tmp_path / "weights.bin"))


def test_default_dtype_and_base_model_check():
    assert loading.default_dtype("cpu") == torch.float32
    key = loading.base_model_key
    assert key("Qwen/Qwen2.5-VL-7B-Instruct") == key("/models/Qwen2.5-VL-7B-Instruct/")
    assert key("/c/hub/models--Qwen--Qwen2.5-VL-7B-Instruct/snapshots/abc123") == "qwen2.5-vl-7b-instruct"
    loading.check_base_model("Qwen/Qwen2.5-VL-7B-Instruct", "/models/Qwen2.5-VL-7B-Instruct", "adapter x")
    with pytest.raises(loading.ModelLoadError, match="adapter x was trained on 'Qwen/Qwen2.5-VL-7B-Instruct'"):
        loading.check_base_model("Qwen/Qwen2.5-VL-7B-Instruct", "OpenGVLab/InternVL3-8B-hf", "adapter x")


def test_greedy_generation_equals_transformers_generate(teacher):
    # the teacher's own loop (its vision path, no KV cache) against the unmodified transformers
    # generate (its vision path and KV cache), greedy, on the same chat prompt and frames
    from hfs.pipeline.model import prompts

    text = "What is shown?\nA. a cat\nB. a dog\nAnswer with the option's letter from the given choices directly."
    responses = teacher.generate(FRAMES, [text, text], max_new_tokens=6)
    for frames, response in zip(FRAMES, responses):
        chat = teacher.processor.apply_chat_template(prompts.teacher_messages(len(frames), text),
                                                     add_generation_prompt=True, tokenize=False)
        batch, vision = teacher.collate([teacher.encode_sample(chat, frames)])
        with torch.no_grad():
            out = teacher.hf_model.generate(**batch, **vision, max_new_tokens=6, do_sample=False,
                                            eos_token_id=[teacher.tokenizer.eos_token_id,
                                                          teacher.tokenizer.convert_tokens_to_ids("<|im_end|>")])
        expected = teacher.tokenizer.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)
        assert response == expected
    with pytest.raises(ValueError, match="texts has 1 entries for 2 samples"):
        teacher.generate(FRAMES, [text], max_new_tokens=2)
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1"):
        teacher.generate(FRAMES, [text, text], max_new_tokens=0)


# -- answering by the option's text (answer_scoring="option_text") ------------------------------


@pytest.fixture
def text_teacher(teacher):
    """The module's teacher switched to option-text scoring for one test."""
    teacher.answer_scoring = "option_text"
    yield teacher
    teacher.answer_scoring = "letter"


def test_option_text_scores_are_each_options_log_likelihood(text_teacher):
    """z_j = log p(option j's text, end of turn | prompt), checked against the plain transformers
    forward on the prompt with option j's answer written out after it, one sequence at a time."""
    teacher = text_teacher
    options = [OPTIONS[0], ["A. hello", "bye"]]  # a dataset's own letter prefix is not scored
    with torch.no_grad():
        out = teacher(FRAMES, torch.ones(2, 3), QUESTIONS, options, TIMES)
    eot = teacher.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert out.option_logits.shape == (2, 3) and torch.isneginf(out.option_logits[1, 2])
    for b in range(2):
        prompt = teacher.build_prompt(3, QUESTIONS[b], options[b], TIMES[b])
        assert prompt.rstrip().endswith("<|im_start|>assistant")
        assert "Answer with the text of the correct option." in prompt
        for j, text in enumerate(["hello", "bye"] if b else OPTIONS[0]):
            sample = teacher.encode_sample(prompt, FRAMES[b])
            answer = teacher.tokenizer.encode(text, add_special_tokens=False) + [eot]
            n = sample.prompt_len
            sample.input_ids = torch.cat([sample.input_ids, torch.tensor(answer)])
            sample.extra = {k: torch.cat([v, v.new_zeros(len(answer))]) for k, v in sample.extra.items()}
            plain, _ = _plain_forward(teacher, [sample])
            logp = plain.logits[0, n - 1:n - 1 + len(answer)].float().log_softmax(-1)
            expected = logp[torch.arange(len(answer)), torch.tensor(answer)].sum()
            torch.testing.assert_close(out.option_logits[b, j], expected, atol=1e-4, rtol=0)


def test_option_text_scoring_keeps_hidden_states_gates_and_open_ended_answers(teacher):
    """Per-option rows leave H_t, h_con and an open-ended sample's answer loss as the letter
    scoring computes them (same prompt), and the gates still get their gradient."""
    answers = [None, "She says hello to the man"]
    options = [OPTIONS[0], None]
    with torch.no_grad():
        letter = teacher(FRAMES, torch.ones(2, 3), QUESTIONS, options, TIMES, answers)
    teacher.answer_scoring = "option_text"
    try:
        gates = torch.ones(2, 3, requires_grad=True)
        text = teacher(FRAMES, gates, QUESTIONS, options, TIMES, answers)
        text.option_logits[0, 1].backward()
    finally:
        teacher.answer_scoring = "letter"
    assert (gates.grad[0] != 0).all() and (gates.grad[1] == 0).all()
    torch.testing.assert_close(text.answer_loss, letter.answer_loss, atol=1e-5, rtol=0)
    assert text.frame_hidden.shape == letter.frame_hidden.shape
    assert torch.isneginf(text.option_logits[1]).all()


def test_option_text_hidden_states_equal_the_plain_forward_of_the_prompt(text_teacher):
    teacher = text_teacher
    with torch.no_grad():
        out = teacher(FRAMES, torch.ones(2, 3), QUESTIONS, OPTIONS, TIMES)
    samples = teacher.encode_batch(FRAMES, QUESTIONS, OPTIONS, TIMES)
    plain, _ = _plain_forward(teacher, samples)
    hidden = plain.hidden_states[HIDDEN_LAYER]
    for b, s in enumerate(samples):
        torch.testing.assert_close(out.context_hidden[b], hidden[b, s.prompt_len - 1], atol=1e-5, rtol=0)
        pooled = torch.stack([hidden[b, i:j].mean(0) for i, j in s.frame_spans])
        torch.testing.assert_close(out.frame_hidden[b], pooled, atol=1e-5, rtol=0)


def test_answer_scoring_is_read_from_the_teacher_folder(tmp_path):
    from hfs.pipeline.model.loading import ModelLoadError
    from hfs.pipeline.model.teachers.base import TEACHER_SETTINGS_FILE, read_answer_scoring, write_teacher_settings

    folder = tmp_path / "teacher"
    folder.mkdir()
    assert read_answer_scoring(folder) == "letter"  # a hub checkpoint has no settings file
    write_teacher_settings(folder, "option_text")
    assert read_answer_scoring(folder) == "option_text"
    (folder / TEACHER_SETTINGS_FILE).write_text('{"answer_scoring": "words"}')
    with pytest.raises(ModelLoadError, match="answer_scoring 'words' is not one of letter, option_text"):
        read_answer_scoring(folder)
    (folder / TEACHER_SETTINGS_FILE).write_text("{not json")
    with pytest.raises(ModelLoadError, match="hfs_teacher.json: not readable as JSON"):
        read_answer_scoring(folder)
    with pytest.raises(ValueError, match="answer_scoring must be one of"):
        write_teacher_settings(folder, "words")
    saved = tiny.tiny_model_path("tiny-qwen2_5_vl")
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(saved, copy)
    write_teacher_settings(copy, "option_text")
    assert load_teacher("qwen2_5_vl", str(copy), lora_r=0).answer_scoring == "option_text"
    assert load_teacher("qwen2_5_vl", str(saved), lora_r=0).answer_scoring == "letter"


def test_option_text_rows_equal_the_shared_prompt_pass(text_teacher, monkeypatch):
    """The cached-prompt path (the default) and one whole row per option (what runs under activation
    checkpointing in training) give the same scores, hidden states and gate gradients."""
    teacher = text_teacher
    results = {}
    for shared in (True, False):
        monkeypatch.setattr(type(teacher), "_can_share_the_prompt", lambda self, shared=shared: shared)
        gates = torch.ones(2, 3, requires_grad=True)
        out = teacher(FRAMES, gates, QUESTIONS, OPTIONS, TIMES)
        out.option_logits[torch.isfinite(out.option_logits)].sum().backward()
        results[shared] = (out, gates.grad)
    (a, grad_a), (b, grad_b) = results[True], results[False]
    torch.testing.assert_close(a.option_logits, b.option_logits, atol=1e-4, rtol=0)
    torch.testing.assert_close(a.frame_hidden, b.frame_hidden, atol=1e-5, rtol=0)
    torch.testing.assert_close(a.context_hidden, b.context_hidden, atol=1e-5, rtol=0)
    torch.testing.assert_close(grad_a, grad_b, atol=1e-4, rtol=1e-4)


def test_option_text_rows_run_under_activation_checkpointing_in_training():
    from hfs.pipeline.model.loading import set_activation_checkpointing

    teacher = load_teacher("qwen2_5_vl", "tiny-qwen2_5_vl")
    teacher.answer_scoring = "option_text"
    assert teacher._can_share_the_prompt()
    set_activation_checkpointing(teacher.hf_model, True)
    teacher.train()
    assert not teacher._can_share_the_prompt()
    out = teacher(FRAMES, torch.ones(2, 3), QUESTIONS, OPTIONS, TIMES)
    assert torch.isfinite(out.option_logits[0]).all() and torch.isfinite(out.option_logits[1, :2]).all()
