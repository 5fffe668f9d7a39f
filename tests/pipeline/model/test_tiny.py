"""The offline tokenizer and the tiny student/teacher builds."""

from __future__ import annotations

import pytest

from hfs.pipeline.model import tiny

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.xdist_group("models")]  # one test process loads the model stack (--dist loadgroup)


@pytest.fixture(scope="module")
def tokenizer():
    return tiny.build_tiny_tokenizer()


def test_tokenizer_is_the_real_qwen2_class(tokenizer):
    from transformers import PreTrainedTokenizerFast
    from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

    assert isinstance(tokenizer, Qwen2Tokenizer)
    assert isinstance(tokenizer, PreTrainedTokenizerFast)
    assert 1000 <= len(tokenizer) <= 2100
    assert tokenizer.eos_token == tiny.IM_END
    assert tokenizer.pad_token == tiny.ENDOFTEXT


def test_special_tokens_are_single_fixed_ids(tokenizer):
    internvl = tiny.build_tiny_tokenizer(internvl=True)
    specials = (tiny.ENDOFTEXT, *tiny.EXTRA_SPECIAL_TOKENS)
    ids = [tokenizer.convert_tokens_to_ids(t) for t in specials]
    assert ids == list(range(len(tokenizer) - len(specials), len(tokenizer)))
    assert internvl.get_vocab() == tokenizer.get_vocab()
    for token, token_id in zip(specials, ids):
        assert tokenizer(f"a {token} b").input_ids.count(token_id) == 1
    assert internvl.context_image_token_id == tokenizer.convert_tokens_to_ids(tiny.IMG_CONTEXT)
    assert internvl.start_image_token == tiny.IMG_START
    assert not hasattr(tokenizer, "video_token")  # Qwen2_5_VLProcessor must fall back to <|video_pad|>


def test_tokenizer_is_deterministic(tokenizer):
    tiny._trained_bpe.cache_clear()
    again = tiny.build_tiny_tokenizer()
    assert again.get_vocab() == tokenizer.get_vocab()


def test_text_round_trip(tokenizer):
    text = "Question: Why did the dog bark at 12.5s?\nOptions:\nA. hungry\nB. scared"
    assert tokenizer.decode(tokenizer(text).input_ids) == text
    assert len(tokenizer(text).input_ids) < len(text.encode())  # the BPE learned merges


def test_chat_template_and_answer_letter(tokenizer):
    messages = [{"role": "user", "content": "Which one?"}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nWhich one?<|im_end|>\n<|im_start|>assistant\n"
    )
    prompt_ids = tokenizer(text).input_ids
    for letter in "ABCDE":
        # the first answer token after "assistant\n" is the bare letter, one token
        assert tokenizer(text + letter).input_ids == prompt_ids + [tokenizer.convert_tokens_to_ids(letter)]


def test_save_load_round_trip(tokenizer, tmp_path):
    from transformers import AutoTokenizer

    for internvl in (False, True):
        original = tiny.build_tiny_tokenizer(internvl=internvl)
        original.save_pretrained(tmp_path / str(internvl))
        loaded = AutoTokenizer.from_pretrained(tmp_path / str(internvl))
        assert type(loaded) is type(original)
        text = "<|im_start|>user\n<img><IMG_CONTEXT></img> the man walks<|im_end|>"
        assert loaded(text).input_ids == original(text).input_ids
        assert loaded.chat_template == original.chat_template
        assert loaded.eos_token_id == original.eos_token_id and loaded.pad_token_id == original.pad_token_id
        assert hasattr(loaded, "context_image_token") is internvl


def test_config_sizes_are_consistent(tokenizer):
    student = tiny.tiny_student_config()
    assert student.vocab_size == len(tokenizer) and student.tie_word_embeddings
    assert (student.hidden_size, student.num_hidden_layers, student.num_attention_heads) == (64, 2, 4)
    assert student.num_key_value_heads == 2

    qwen = tiny.tiny_qwen_vl_config()
    head_dim = qwen.text_config.hidden_size // qwen.text_config.num_attention_heads
    assert sum(qwen.text_config.rope_parameters["mrope_section"]) == head_dim // 2
    assert qwen.vision_config.out_hidden_size == qwen.text_config.hidden_size
    assert all(i < qwen.vision_config.depth for i in qwen.vision_config.fullatt_block_indexes)
    assert qwen.image_token_id == tokenizer.convert_tokens_to_ids(tiny.IMAGE_PAD)
    assert qwen.video_token_id == tokenizer.convert_tokens_to_ids(tiny.VIDEO_PAD)
    assert qwen.vision_start_token_id == tokenizer.convert_tokens_to_ids(tiny.VISION_START)

    internvl = tiny.tiny_internvl_config()
    assert list(internvl.vision_config.image_size) == [tiny.INTERNVL_TILE] * 2
    assert internvl.image_token_id == tokenizer.convert_tokens_to_ids(tiny.IMG_CONTEXT)
    assert internvl.image_seq_length == tiny.INTERNVL_TOKENS_PER_TILE == 4


def test_student_builds_and_loads(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tiny.tiny_model_path("tiny-student")
    assert tiny.tiny_model_path("tiny-student") == path  # built once per process
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    ids = tok("the man walks", return_tensors="pt").input_ids
    assert model(ids).logits.shape == (1, ids.shape[1], len(tok))
    again = AutoModelForCausalLM.from_pretrained(tiny.build_tiny_student(tmp_path / "again"))
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name  # the seed fixes the weights


@pytest.mark.parametrize("kind", tiny.TEACHER_KINDS)
def test_teacher_builds_and_loads_with_real_classes(kind):
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from hfs.pipeline.model.prompts import teacher_messages

    path = tiny.tiny_model_path(f"tiny-{kind}")
    model = AutoModelForImageTextToText.from_pretrained(path)
    processor = AutoProcessor.from_pretrained(path)
    expected = {"qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration", "internvl": "InternVLForConditionalGeneration"}
    assert type(model).__name__ == expected[kind]
    text = processor.apply_chat_template(teacher_messages(1, "Why?"), add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[Image.new("RGB", (64, 48))], return_tensors="pt")
    image_token_id = model.config.image_token_id
    assert int((inputs["input_ids"] == image_token_id).sum()) == 4  # few tokens per small frame
    assert model(**inputs).logits.shape[-1] == len(processor.tokenizer)


def test_unknown_names_fail_clearly():
    with pytest.raises(KeyError, match="unknown tiny preset"):
        tiny.tiny_model_path("tiny-nope")
    with pytest.raises(ValueError, match="unknown tiny teacher kind"):
        tiny.build_tiny_processor("llava")
