"""The teacher M_t (Sec. 3.4): a video LLM that answers from the selected frames.

One interface for every teacher. A teacher gets the k selected frames of each
sample as one uint8 tensor [k, 3, H, W] (RGB, time order, on any device; see
`hfs.pipeline.model.frames.decode_jpegs`), each frame's straight-through gate value
(1.0 in the forward pass), the question and options, and returns

- `option_logits` z (Eq. 16): LM logits at the answer position restricted to
  the option letters, for the CE of Eq. 17 (or, for a teacher whose folder says
  ``"answer_scoring": "option_text"``, each option's text log-likelihood as the answer:
  `ANSWER_SCORINGS`);
- `frame_hidden` H_t and `context_hidden` h_con (Eq. 18), read from the
  second-to-last hidden layer, for the teacher scorer MLP_t;
- `answer_loss`: token CE of the reference answer for open-ended samples.

The gate multiplies every visual token embedding of its frame before the
language model sees it, so d(CE)/d(gate) reaches the student. Subclasses say
how frames become pixel values (resize / normalise / patchify as tensor ops on
the frames' device, every parameter read from the loaded processor's image
processor config), how the image placeholders of the chat text expand, and how
their vision features come out; the forward pass, pooling and heads are shared.
The processor object stays loaded for its tokenizer, chat template and config,
but is never called in the forward pass: calling it would run PIL-era CPU code
for every sample of every step.

The language model carries a LoRA adapter θ3 (peft); the vision tower and
projector stay frozen.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor, nn

from hfs.pipeline.model import prompts
from hfs.pipeline.model.frames import check_frames
from hfs.pipeline.model.loading import (
    ModelLoadError,
    adapter_base_model,
    check_base_model,
    default_dtype,
    resolve_model_path,
)

logger = logging.getLogger(__name__)

LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
"""peft `target_modules` regex (full match): the language model's linear layers only."""

FRAMES_AS = (None, "video", "images_first")
"""`Teacher.generate`'s ways of showing the frames: k images as in training (None), or as lmms-eval's
model wrapper shows a video task's frames ("video") or an image task's ("images_first")."""

HIDDEN_LAYER = -2
"""Index into `hidden_states` (embeddings, layer 1, …, layer L normed) for H_t and h_con:
-2 is the output of decoder layer L-1, the second-to-last layer (Eq. 18)."""


ANSWER_SCORINGS = ("letter", "option_text")
"""How a teacher's multiple-choice answer is read (`Teacher.answer_scoring`):

- ``"letter"`` (every pretrained video LLM, the paper): the prompt asks for the option's letter and
  z_j is the LM logit of letter j at the answer position (one pass);
- ``"option_text"``: the prompt asks for the option's text and z_j = log p(option j's text, end of
  turn | prompt), the sum of its tokens' log-probabilities (lm-evaluation-harness' multiple-choice
  scoring): one prompt pass, the option texts after it on its cached keys and values (whole rows
  per option under activation checkpointing in training). The answer names what was seen, so no
  letter has to be matched to a listed option (the prompt still lists them, so the scores do move
  a little with their order). `hfs demo`'s stand-in teacher answers so: a
  2-layer model fitted from random weights does not learn to map a seen colour to the letter of
  the option that names it within any budget measured (benchmarks/RESULTS.md), and does learn
  to name the colour.
"""

TEACHER_SETTINGS_FILE = "hfs_teacher.json"
"""File in a teacher's model folder with hfs' settings of that model (``{"answer_scoring": ...}``),
written by `write_teacher_settings`; a folder without it (every hub checkpoint) answers by letter."""


def read_answer_scoring(folder: str | Path) -> str:
    """The ``answer_scoring`` of the teacher saved in ``folder`` (``"letter"`` without a settings file)."""
    file = Path(folder) / TEACHER_SETTINGS_FILE
    if not file.is_file():
        return "letter"
    try:
        settings = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ModelLoadError(f"{file}: not readable as JSON ({err}); delete it to answer by letter") from err
    scoring = settings.get("answer_scoring", "letter") if isinstance(settings, dict) else None
    if scoring not in ANSWER_SCORINGS:
        raise ModelLoadError(f"{file}: answer_scoring {scoring!r} is not one of {', '.join(ANSWER_SCORINGS)}")
    return scoring


def write_teacher_settings(folder: str | Path, answer_scoring: str) -> Path:
    """Write `TEACHER_SETTINGS_FILE` into a saved teacher's ``folder`` (atomically); returns its path."""
    if answer_scoring not in ANSWER_SCORINGS:
        raise ValueError(f"answer_scoring must be one of {ANSWER_SCORINGS}, got {answer_scoring!r}")
    file = Path(folder) / TEACHER_SETTINGS_FILE
    tmp = file.with_name(file.name + ".tmp")
    tmp.write_text(json.dumps({"answer_scoring": answer_scoring}, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, file)
    return file


@dataclass
class OptionRows:
    """The rows of a batch whose options are scored by their text (`Teacher.option_rows`).

    rows: the EncodedSamples the language model runs on: each multiple-choice sample once per
        option (its prompt followed by the option's text and the end of turn), an open-ended one once.
    owner: [R] the sample each row belongs to; first: [B] each sample's first row.
    option: [R] the option a row scores (-1 for an open-ended sample's row).
    spans: [R] (start, end) of the scored answer tokens in the row's input_ids ((0, 0) for none).
    """

    rows: list["EncodedSample"]
    owner: list[int]
    first: list[int]
    option: list[int]
    spans: list[tuple[int, int]]


@dataclass
class TeacherOutput:
    """What the teacher returns for a batch of B samples with k frames each.

    option_logits: [B, Cmax] z of Eq. 16 (float32), -inf where a sample has fewer options.
    frame_hidden: [B, k, dh] H_t of Eq. 18, each frame's visual tokens average-pooled (float32).
    context_hidden: [B, dh] h_con of Eq. 18, the last prompt token (float32).
    answer_loss: [B] mean token CE of the reference answer, None when no sample has one;
        0 where `answer_mask` is False.
    answer_mask: [B] bool, True for open-ended samples whose answer was scored.
    """

    option_logits: Tensor
    frame_hidden: Tensor
    context_hidden: Tensor
    answer_loss: Tensor | None = None
    answer_mask: Tensor | None = None


@dataclass
class EncodedSample:
    """One sample ready for the model: prompt (+ answer) ids and its vision inputs.

    input_ids: [L] prompt ids (image placeholders expanded) followed by answer ids.
    prompt_len: number of prompt ids; the answer position is prompt_len - 1.
    frame_spans: per frame, [start, end) of its visual tokens in input_ids.
    vision: the sample's vision tensors, laid out as the HF processor lays them out
        (pixel_values on the frames' device, …).
    extra: other per-token tensors the model needs ([L] each, padded with 0).
    units_per_frame: vision feature blocks per frame (images for Qwen, tiles for InternVL).
    """

    input_ids: Tensor
    prompt_len: int
    frame_spans: list[tuple[int, int]]
    vision: dict[str, Tensor]
    extra: dict[str, Tensor]
    units_per_frame: list[int]


def trainable_parameters(module: nn.Module) -> list[nn.Parameter]:
    """Parameters of `module` that receive gradients."""
    return [p for p in module.parameters() if p.requires_grad]


def token_runs(ids: Tensor, token_id: int) -> list[tuple[int, int]]:
    """Maximal runs [start, end) of `token_id` in the 1-D tensor `ids`."""
    hit = (ids == token_id).to(torch.int8)
    edges = torch.diff(hit, prepend=hit.new_zeros(1), append=hit.new_zeros(1))
    starts = (edges == 1).nonzero().flatten().tolist()
    ends = (edges == -1).nonzero().flatten().tolist()
    return list(zip(starts, ends))


def repeat_features(features, counts: list[int], owner: list[int]):
    """The vision features of a batch (`Teacher.image_features`: a tuple of per-image tensors, or one
    tensor of tiles) laid out again for rows that repeat samples: row r gets sample ``owner[r]``'s
    ``counts[owner[r]]`` feature blocks, in order."""
    starts = [0]
    for count in counts:
        starts.append(starts[-1] + count)
    index = [i for b in owner for i in range(starts[b], starts[b + 1])]
    if isinstance(features, (tuple, list)):
        return tuple(features[i] for i in index)
    return features[torch.tensor(index, device=features.device)]


def letter_token_ids(tokenizer, n: int) -> list[int]:
    """Ids of the first answer token for options A.. (n letters).

    The chat template ends the prompt with "assistant\\n", after which the model writes
    the bare letter ("A", not " A"); each letter must be a single token.
    """
    ids = []
    for letter in prompts.option_letters(n):
        pieces = tokenizer.encode(letter, add_special_tokens=False)
        if len(pieces) != 1:
            raise ValueError(f"option letter {letter!r} is {len(pieces)} tokens in this tokenizer; expected 1")
        ids.append(pieces[0])
    return ids


def end_of_turn_id(tokenizer) -> int:
    """Token that closes the assistant turn (`<|im_end|>` in ChatML templates, else eos)."""
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if im_end is not None and im_end != tokenizer.unk_token_id:
        return im_end
    return tokenizer.eos_token_id


class TeacherScorer(nn.Module):
    """MLP_t of Eq. 18: logits over the k selected frames from [h_i; h_con].

    p_t = softmax(MLP_t([H_t; h_con])); this returns the logits [B, k] (the softmax
    belongs to the KL of Eq. 20). Two linear layers with a GELU in between.
    """

    def __init__(self, hidden_size: int, mlp_hidden: int = 512):
        super().__init__()
        self.hidden_size = hidden_size
        self.mlp_hidden = mlp_hidden
        self.mlp = nn.Sequential(nn.Linear(2 * hidden_size, mlp_hidden), nn.GELU(), nn.Linear(mlp_hidden, 1))

    def forward(self, frame_hidden: Tensor, context_hidden: Tensor) -> Tensor:
        """frame_hidden [B, k, dh], context_hidden [B, dh] -> logits [B, k]."""
        context = context_hidden.unsqueeze(1).expand(-1, frame_hidden.shape[1], -1)
        features = torch.cat([frame_hidden, context], dim=-1).to(self.mlp[0].weight.dtype)
        return self.mlp(features).squeeze(-1)


def save_scorer(scorer: TeacherScorer, path: str | Path) -> Path:
    """Write MLP_t to a safetensors file (sizes in its metadata); returns the path."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in scorer.state_dict().items()}
    meta = {"hidden_size": str(scorer.hidden_size), "mlp_hidden": str(scorer.mlp_hidden)}
    save_file(state, str(path), metadata=meta)
    return path


def load_scorer(path: str | Path, device: str | torch.device = "cpu") -> TeacherScorer:
    """Read a MLP_t written by `save_scorer`."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"teacher scorer file {path} does not exist")
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata() or {}
    if "hidden_size" not in meta:
        raise ModelLoadError(f"{path} is not a teacher scorer file (no hidden_size in its metadata)")
    scorer = TeacherScorer(int(meta["hidden_size"]), int(meta["mlp_hidden"]))
    scorer.load_state_dict(load_file(str(path)))
    return scorer.to(device)


class Teacher(nn.Module):
    """A frozen video LLM with a LoRA adapter on its language model (θ3).

    Subclasses set `model_type` (the HF config's) and `default_model`, and
    implement `model_class_loader`, `encode_sample` and `image_features`.
    """

    model_type: ClassVar[str]
    default_model: ClassVar[str]
    video_input_refusal: ClassVar[str | None] = "this teacher has no video input"
    """None where `encode_video_sample` passes the frames as one video as lmms-eval's model wrapper
    does (``--protocol lmms-eval``); else why not, the error `hfs evaluate` stops with."""
    max_tiles: int = 1
    """Image tiles per frame (TeacherConfig.max_tiles) for teachers that tile frames
    (InternVL: 1 = the whole frame as one tile, n > 1 = up to n tiles plus a thumbnail);
    the others ignore it."""

    def __init__(self, model: nn.Module, processor, name_or_path: str, lora_config=None):
        super().__init__()
        from peft import get_peft_model

        self.name_or_path = str(name_or_path)
        self.processor = processor
        self.tokenizer = processor.tokenizer
        if lora_config is None:
            for param in model.parameters():
                param.requires_grad_(False)
            self.lm = model
        else:
            self.lm = get_peft_model(model, lora_config)
            # a saved adapter records the name as given (hub id, preset or folder), not a cache path
            self.lm.peft_config["default"].base_model_name_or_path = self.name_or_path
        self.hidden_size = self.hf_model.config.get_text_config().hidden_size
        self.answer_scoring = "letter"
        """One of `ANSWER_SCORINGS`; `from_pretrained` reads it from the model folder."""
        self.train_vision = False
        """Whether the vision tower builds a graph in `forward` (False: frozen, as in HFS training;
        `hfs.pipeline.demo.teacher.fit_teacher` fits it)."""

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        lora_r: int = 8,
        lora_alpha: int = 16,
        lora_targets: str | list[str] = LORA_TARGETS,
        lora_dropout: float = 0.05,
        allow_download: bool = False,
    ) -> "Teacher":
        """Load the model and processor with transformers' own classes and add LoRA r=`lora_r`
        (`lora_r=0`: no adapter, everything frozen)."""
        from peft import LoraConfig
        from transformers import AutoConfig, AutoProcessor

        name = str(name_or_path or cls.default_model)
        path = resolve_model_path(name, what="--teacher", allow_download=allow_download)
        model_type = AutoConfig.from_pretrained(path).model_type
        if model_type != cls.model_type:
            raise ModelLoadError(f"--teacher {name!r} is a {model_type!r} model, not {cls.model_type!r}")
        dtype = dtype or default_dtype(device)
        model = cls.model_class_loader().from_pretrained(path, dtype=dtype).to(device)
        processor = AutoProcessor.from_pretrained(path)
        lora = None
        if lora_r > 0:
            lora = LoraConfig(
                r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, target_modules=lora_targets, bias="none"
            )
        teacher = cls(model, processor, name, lora)
        teacher.answer_scoring = read_answer_scoring(path)
        logger.info(
            "teacher %s (%s) on %s, %s: %d trainable parameters",
            name, cls.__name__, device, dtype, sum(p.numel() for p in teacher.trainable_parameters()),
        )
        return teacher

    @property
    def hf_model(self) -> nn.Module:
        """The transformers model (with LoRA layers injected, if any)."""
        return self.lm.get_base_model() if hasattr(self.lm, "get_base_model") else self.lm

    @property
    def device(self) -> torch.device:
        return self.hf_model.device

    def trainable_parameters(self) -> list[nn.Parameter]:
        """θ3: the LoRA weights of the language model."""
        return trainable_parameters(self)

    # -- adapter I/O ----------------------------------------------------------------------------

    def save_adapter(self, folder: str | Path) -> Path:
        """Save the LoRA adapter θ3 with peft (adapter_config.json + adapter_model.safetensors)."""
        if not hasattr(self.lm, "save_pretrained") or not hasattr(self.lm, "peft_config"):
            raise ValueError("this teacher has no LoRA adapter to save (loaded with lora_r=0)")
        folder = Path(folder)
        # embeddings are never trained here; "auto" would query the hub about the base model's vocabulary
        self.lm.save_pretrained(folder, save_embedding_layers=False)
        return folder

    def load_adapter(self, folder: str | Path) -> None:
        """Load LoRA weights saved by `save_adapter` into this teacher's adapter."""
        from peft import LoraConfig
        from peft.utils import load_peft_weights, set_peft_model_state_dict

        if not hasattr(self.lm, "peft_config"):
            raise ValueError("this teacher has no LoRA adapter to load into (loaded with lora_r=0)")
        what = f"teacher adapter {folder}"
        check_base_model(adapter_base_model(folder), self.name_or_path, what)
        saved = LoraConfig.from_pretrained(str(folder))
        current = self.lm.peft_config["default"]
        if (saved.r, saved.lora_alpha) != (current.r, current.lora_alpha):
            raise ModelLoadError(
                f"{what} has r={saved.r}, alpha={saved.lora_alpha}; this teacher was built with "
                f"r={current.r}, alpha={current.lora_alpha}"
            )
        result = set_peft_model_state_dict(self.lm, load_peft_weights(str(folder), device=str(self.device)))
        unexpected = [k for k in result.unexpected_keys if "lora_" in k]
        if unexpected:
            raise ModelLoadError(f"{what} does not fit this model: unexpected weights such as {unexpected[0]}")

    # -- per-model hooks ------------------------------------------------------------------------

    @staticmethod
    def model_class_loader():
        """The transformers class of this teacher (imported lazily)."""
        raise NotImplementedError

    def encode_sample(self, chat_text: str, frames: Tensor) -> EncodedSample:
        """One sample as model inputs, without calling the processor.

        chat_text: the chat-templated prompt with one image placeholder per frame.
        frames: uint8 [k, 3, H, W], RGB, time order, on any device.
        Turns the frames into pixel values with tensor ops on their device, expands the
        placeholders as the HF processor would, tokenizes, and locates each frame's tokens.
        """
        raise NotImplementedError

    @property
    def image_processor(self):
        """The loaded image processor: read for its config (sizes, mean, std, resample), never called."""
        return self.processor.image_processor

    @staticmethod
    def expand_image_placeholders(chat_text: str, placeholder: str, replacements: list[str]) -> str:
        """Replace the j-th `placeholder` of the chat text by `replacements[j]` (one per frame),
        in one pass, as the HF processor does (a replacement may contain the placeholder)."""
        pieces = chat_text.split(placeholder)
        if len(pieces) - 1 != len(replacements):
            raise ValueError(
                f"the prompt has {len(pieces) - 1} image placeholders {placeholder!r} for {len(replacements)} frames"
            )
        return pieces[0] + "".join(r + p for r, p in zip(replacements, pieces[1:]))

    def tokenize_prompt(self, text: str) -> Tensor:
        """Token ids [L] (int64, CPU) of the expanded prompt, tokenized as the processor's
        tokenizer call does (its default special tokens, no padding, no truncation)."""
        return torch.tensor(self.tokenizer(text)["input_ids"], dtype=torch.long)

    def image_features(self, vision: dict[str, Tensor], units_per_frame: list[int], gates: Tensor):
        """Visual token embeddings of all frames (frozen encoder, no grad) times their gates.

        gates: [F] one value per frame over the batch (sample-major, time order).
        Returns what the model takes as `mm_encoder_outputs["image"].pooler_output`.
        """
        raise NotImplementedError

    def language_model_inputs(self, batch: dict[str, Tensor], vision: dict[str, Tensor]) -> dict:
        """Extra keyword arguments of the inner multimodal model's forward (e.g. grids)."""
        return {}

    def encode_video_sample(self, chat_text: str, frames: Tensor) -> EncodedSample:
        """One sample whose k frames are ONE video (the ``lmms-eval`` protocol, `generate(frames_as="video")`),
        laid out as the lmms-eval model wrapper of this model would hand it to the processor.

        chat_text: the chat-templated prompt with one video placeholder.
        Teachers whose lmms-eval wrapper does not pass a video refuse, saying what it does instead.
        """
        raise NotImplementedError(f"{type(self).__name__}: {self.video_input_refusal}")

    def encode_images_first_sample(self, chat_text: str, frames: Tensor) -> EncodedSample:
        """One sample whose k frames are k separate images before the text (the ``lmms-eval`` protocol's
        ``frames_as="images_first"``), each resized as the lmms-eval model wrapper of this model resizes
        a task's images (`encode_sample` resizes as this project's teacher was trained).

        chat_text: the chat-templated prompt with one image placeholder per frame, then the text.
        """
        raise NotImplementedError(f"{type(self).__name__}: {self.video_input_refusal}")

    def video_features(self, vision: dict[str, Tensor]):
        """Video token embeddings (frozen encoder, no grad) of `encode_video_sample`'s vision tensors:
        what the model takes as `mm_encoder_outputs["video"].pooler_output`."""
        raise NotImplementedError(f"{type(self).__name__}: {self.video_input_refusal}")

    # -- forward --------------------------------------------------------------------------------

    def build_prompt(self, num_frames: int, question: str, options, timestamps, subtitles=None) -> str:
        """Chat-templated prompt: k image slots then the question text (Eq. 16), ending
        with the assistant turn's opening so the next token is the answer. ``subtitles``:
        subtitle lines to show before the question (evaluation "with subtitles")."""
        if options:
            instruction = prompts.MC_TEXT_INSTRUCTION if self.answer_scoring == "option_text" else prompts.MC_INSTRUCTION
            text = prompts.teacher_prompt_text(question, options, timestamps, subtitles, instruction)
        else:
            text = prompts.teacher_open_prompt_text(question, timestamps, subtitles)
        messages = prompts.teacher_messages(num_frames, text)
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def encode_batch(
        self,
        frames: list[Tensor],
        questions: list[str],
        options: list[list[str] | None],
        timestamps: list[list[float]] | None = None,
        answers: list[str | None] | None = None,
        subtitles: list[list[str] | None] | None = None,
    ) -> list[EncodedSample]:
        """`encode_sample` per sample (frames[b]: uint8 [k, 3, H, W]); an open-ended sample's
        answer (+ end of turn) is appended."""
        samples = []
        for b, sample_frames in enumerate(frames):
            check_frames(sample_frames, f"frames of sample {b}")
            opts = options[b] or []
            chat = self.build_prompt(len(sample_frames), questions[b], opts, timestamps[b] if timestamps else None,
                                     subtitles[b] if subtitles else None)
            sample = self.encode_sample(chat, sample_frames)
            answer = answers[b] if answers is not None else None
            if not opts and answer:
                ids = self.tokenizer.encode(answer.strip(), add_special_tokens=False) + [end_of_turn_id(self.tokenizer)]
                sample.input_ids = torch.cat([sample.input_ids, torch.tensor(ids, dtype=sample.input_ids.dtype)])
                sample.extra = {k: torch.cat([v, v.new_zeros(len(ids))]) for k, v in sample.extra.items()}
            samples.append(sample)
        return samples

    def collate(self, samples: list[EncodedSample]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Right-pad the token tensors to one batch; concatenate the vision tensors in order.

        Right padding keeps every real token's position ids what they are unbatched.
        """
        length = max(len(s.input_ids) for s in samples)
        pad_id = self.tokenizer.pad_token_id
        input_ids = torch.full((len(samples), length), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(samples), length), dtype=torch.long)
        extra = {k: torch.zeros((len(samples), length), dtype=v.dtype) for k, v in samples[0].extra.items()}
        for b, s in enumerate(samples):
            n = len(s.input_ids)
            input_ids[b, :n] = s.input_ids
            attention_mask[b, :n] = 1
            for k, v in s.extra.items():
                extra[k][b, :n] = v
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, **extra}
        vision = {k: torch.cat([s.vision[k] for s in samples]) for k in samples[0].vision}
        device = self.device
        return {k: v.to(device) for k, v in batch.items()}, {k: v.to(device) for k, v in vision.items()}

    def forward(
        self,
        frames: list[Tensor],
        gates: Tensor,
        questions: list[str],
        options: list[list[str] | None],
        timestamps: list[list[float]] | None = None,
        answers: list[str | None] | None = None,
        subtitles: list[list[str] | None] | None = None,
    ) -> TeacherOutput:
        """Teacher pass over B samples of k frames (Eqs. 16 and 18).

        frames[b]: uint8 [k, 3, H, W], the k selected frames of sample b (RGB, time order),
            on any device (`hfs.pipeline.model.frames.decode_jpegs`); resized and normalised there.
        gates: [B, k] straight-through mask values (1.0 forward; carry d/d gate).
        options[b]: the options of sample b, [] or None for an open-ended question.
        timestamps[b]: the k frame times in seconds, written into the prompt.
        answers[b]: reference answer text, scored (answer_loss) for open-ended samples.
        subtitles[b]: subtitle lines shown before the question (evaluation), or None.
        """
        self._check_inputs(frames, gates, questions, options, timestamps, answers, subtitles)
        samples = self.encode_batch(frames, questions, options, timestamps, answers, subtitles)
        batch, vision = self.collate(samples)
        units = [u for s in samples for u in s.units_per_frame]
        features = self.image_features(vision, units, gates.reshape(-1))
        by_text = self.answer_scoring == "option_text" and any(options)
        if by_text and self._can_share_the_prompt():
            return self._forward_sharing_the_prompt(batch, vision, features, samples, options, answers)
        if by_text:  # one row per option, the image features computed once and shared
            plan = self.option_rows(samples, options)
            batch, vision = self.collate(plan.rows)
            features = repeat_features(features, [sum(s.units_per_frame) for s in samples], plan.owner)
        hidden, last = self._language_model(batch, vision, features)
        sample_last, sample_ids = last, batch["input_ids"]
        if by_text:
            first = torch.tensor(plan.first, device=hidden.device)
            hidden, sample_last, sample_ids = hidden[first], last[first], sample_ids[first]

        prompt_ends = torch.tensor([s.prompt_len - 1 for s in samples], device=hidden.device)
        rows = torch.arange(len(samples), device=hidden.device)
        context_hidden = hidden[rows, prompt_ends]
        frame_hidden = self._pool_frames(hidden, samples)
        if by_text:
            option_logits = self.option_text_logits(last, batch["input_ids"], plan, options)
        else:
            option_logits = self._option_logits(sample_last[rows, prompt_ends], options)
        answer_loss, answer_mask = self._answer_loss(sample_last, sample_ids, samples, options, answers)
        return TeacherOutput(
            option_logits=option_logits,
            frame_hidden=frame_hidden.float(),
            context_hidden=context_hidden.float(),
            answer_loss=answer_loss,
            answer_mask=answer_mask,
        )

    def _can_share_the_prompt(self) -> bool:
        """Whether the option texts can run after one cached prompt pass: not while activation
        checkpointing trains the model (transformers turns the cache off then)."""
        return not (self.hf_model.training and any(getattr(m, "gradient_checkpointing", False)
                                                   for m in self.hf_model.modules()))

    def next_text_positions(self, batch: dict[str, Tensor], vision: dict[str, Tensor]) -> Tensor:
        """[B] the position id of the text token that would follow each (right-padded) sample: its
        length for a language model with 1-D positions; teachers with other positions override."""
        return batch["attention_mask"].sum(dim=1)

    def continuation_position_ids(self, next_positions: Tensor, length: int) -> Tensor:
        """Position ids of ``length`` text tokens after prompts whose next positions are
        ``next_positions`` [R] -> [R, length] (1-D positions; teachers with other positions override)."""
        return next_positions[:, None] + torch.arange(length, device=next_positions.device)

    def _forward_sharing_the_prompt(self, batch, vision, features, samples, options, answers) -> TeacherOutput:
        """`forward` for ``answer_scoring="option_text"`` with the prompt run once: the option texts
        run after it on its cached keys and values (the cache repeated per option), so the cost is
        one prompt pass plus a few tokens per option. Equal to running each option's whole row."""
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        model = self.hf_model.model
        outputs = model(**batch, **self.language_model_inputs(batch, vision),
                        mm_encoder_outputs={"image": BaseModelOutputWithPooling(pooler_output=features)},
                        output_hidden_states=True, use_cache=True)
        hidden, last, cache = outputs.hidden_states[HIDDEN_LAYER], outputs.last_hidden_state, outputs.cache
        device = hidden.device
        owner, option, answers_ids = [], [], []
        for b, opts in enumerate(options):
            for j, ids in enumerate(self.option_answer_ids(opts or [])):
                owner.append(b)
                option.append(j)
                answers_ids.append(ids)
        length = max(len(ids) for ids in answers_ids)
        continuation = torch.full((len(owner), length), self.tokenizer.pad_token_id, dtype=torch.long, device=device)
        mask = torch.zeros((len(owner), length), dtype=batch["attention_mask"].dtype, device=device)
        for r, ids in enumerate(answers_ids):
            continuation[r, : len(ids)] = torch.tensor(ids, device=device)
            mask[r, : len(ids)] = 1
        rows = torch.tensor(owner, device=device)
        cache.batch_select_indices(rows)
        positions = self.continuation_position_ids(self.next_text_positions(batch, vision)[rows], length)
        after = model.language_model(input_ids=continuation, attention_mask=torch.cat([batch["attention_mask"][rows],
                                                                                       mask], dim=1),
                                     position_ids=positions, cache=cache, use_cache=True).last_hidden_state

        prompt_ends = torch.tensor([s.prompt_len - 1 for s in samples], device=device)
        # the first answer token is read at the prompt's last position, the others after it
        states = torch.cat([last[rows, prompt_ends[rows]][:, None], after[:, :-1]], dim=1)
        option_logits = self._scatter_option_scores(self._answer_log_likelihood(states, continuation, mask),
                                                    owner, option, options)

        sample_rows = torch.arange(len(samples), device=device)
        answer_loss, answer_mask = self._answer_loss(last, batch["input_ids"], samples, options, answers)
        return TeacherOutput(
            option_logits=option_logits,
            frame_hidden=self._pool_frames(hidden, samples).float(),
            context_hidden=hidden[sample_rows, prompt_ends].float(),
            answer_loss=answer_loss,
            answer_mask=answer_mask,
        )

    def option_answer_ids(self, options: list[str]) -> list[list[int]]:
        """The token ids ``"option_text"`` scores for each option: its text (any letter prefix the
        dataset wrote dropped) as the assistant's answer, then the end of turn."""
        from hfs.manifests.answers import option_letters

        eot = end_of_turn_id(self.tokenizer)
        return [self.tokenizer.encode(prompts.strip_option_letter(text, letter), add_special_tokens=False) + [eot]
                for letter, text in zip(option_letters(len(options)), options)]

    def option_rows(self, samples: list[EncodedSample], options: list[list[str] | None]) -> OptionRows:
        """Each multiple-choice sample once per option j: its prompt followed by option j's text
        (`option_answer_ids`), the tokens z_j scores; an open-ended sample once, as it is. The rows'
        vision keeps no pixel tensors: the features are computed once per sample and repeated
        (`repeat_features`), the language model needs only the grids."""
        plan = OptionRows([], [], [], [], [])
        for b, sample in enumerate(samples):
            plan.first.append(len(plan.rows))
            vision = {k: v for k, v in sample.vision.items() if not k.startswith("pixel_values")}
            opts = options[b] or []
            if not opts:
                plan.rows.append(EncodedSample(sample.input_ids, sample.prompt_len, sample.frame_spans, vision,
                                               sample.extra, sample.units_per_frame))
                plan.owner.append(b)
                plan.option.append(-1)
                plan.spans.append((0, 0))
                continue
            for j, ids in enumerate(self.option_answer_ids(opts)):
                ids = torch.tensor(ids, dtype=sample.input_ids.dtype)
                plan.rows.append(EncodedSample(
                    torch.cat([sample.input_ids, ids]), sample.prompt_len, sample.frame_spans, vision,
                    {k: torch.cat([v, v.new_zeros(len(ids))]) for k, v in sample.extra.items()},
                    sample.units_per_frame))
                plan.owner.append(b)
                plan.option.append(j)
                plan.spans.append((sample.prompt_len, sample.prompt_len + len(ids)))
        return plan

    def option_text_logits(self, last: Tensor, input_ids: Tensor, plan: OptionRows, options) -> Tensor:
        """z (Eq. 16) of ``"option_text"`` scoring from the last normed hidden states ``last`` [R, L, dh]
        of `option_rows`' rows: z_j = sum of the log-probabilities of option j's tokens and the end
        of turn -> [B, Cmax] float32, -inf padded."""
        scored = [r for r, j in enumerate(plan.option) if j >= 0]
        length = max(plan.spans[r][1] - plan.spans[r][0] for r in scored)
        states = last.new_zeros((len(scored), length, last.shape[-1]))
        ids = input_ids.new_zeros((len(scored), length))
        mask = input_ids.new_zeros((len(scored), length))
        for i, r in enumerate(scored):
            start, end = plan.spans[r]
            states[i, : end - start] = last[r, start - 1:end - 1]  # token t is read one position before it
            ids[i, : end - start] = input_ids[r, start:end]
            mask[i, : end - start] = 1
        return self._scatter_option_scores(self._answer_log_likelihood(states, ids, mask),
                                           [plan.owner[r] for r in scored], [plan.option[r] for r in scored], options)

    def _answer_log_likelihood(self, states: Tensor, ids: Tensor, mask: Tensor) -> Tensor:
        """[R] sum over t of log p(ids[r, t] | states[r, t]) where mask[r, t], through the LM head in
        float32 with autocast off (the CE of Eq. 17 compares values closer than a bf16 step)."""
        head = self.hf_model.get_output_embeddings()
        with torch.autocast(states.device.type, enabled=False):
            bias = None if head.bias is None else head.bias.float()
            logp = nn.functional.linear(states.float(), head.weight.float(), bias).log_softmax(dim=-1)
            return (logp.gather(2, ids[:, :, None])[:, :, 0] * mask).sum(dim=1)

    @staticmethod
    def _scatter_option_scores(scores: Tensor, owner: list[int], option: list[int], options) -> Tensor:
        """[B, Cmax] float32 with ``scores[r]`` at (owner[r], option[r]), -inf where a sample has fewer options."""
        out = scores.new_full((len(options), max(len(o or []) for o in options)), float("-inf"))
        out[torch.tensor(owner, device=scores.device), torch.tensor(option, device=scores.device)] = scores
        return out

    @torch.no_grad()
    def generate(self, frames: list[Tensor], texts: list[str], max_new_tokens: int,
                 frames_as: str | None = None) -> list[str]:
        """Greedy generation (the ``lmms-eval`` protocol): per sample b, the chat-templated prompt of
        ``frames[b]`` (uint8 [k, 3, H, W], as in `forward`, every gate 1) followed by ``texts[b]``
        as it is (no option list or frame times added), answered token by token with the
        largest logit until the end of the assistant turn (or eos) or ``max_new_tokens``.

        Returns the generated text of each sample, special tokens dropped. One sample at a time
        and without a KV cache: each step runs the language model over the whole sequence
        through the same path as `forward` (precomputed image features), so the frames are
        read exactly as there; slow for long answers, which lmms-eval's tasks cap at 16-32 tokens.

        ``frames_as``: None, k images before the text as in `forward`; ``"video"``, the frames as ONE
        video, as lmms-eval's model wrapper passes a video task's (`encode_video_sample`; one video
        slot before the text); ``"images_first"``, k images before the text resized as lmms-eval's
        model wrapper resizes an image task's (`encode_images_first_sample`).
        """
        if len(frames) != len(texts):
            raise ValueError(f"texts has {len(texts)} entries for {len(frames)} samples")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if frames_as not in FRAMES_AS:
            raise ValueError(f"frames_as must be one of {FRAMES_AS}, got {frames_as!r}")
        stop = {end_of_turn_id(self.tokenizer), self.tokenizer.eos_token_id} - {None}
        head = self.hf_model.get_output_embeddings()
        responses = []
        for b, (sample_frames, text) in enumerate(zip(frames, texts)):
            check_frames(sample_frames, f"frames of sample {b}")
            if frames_as == "video":
                messages = prompts.teacher_video_messages(text)
                chat = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
                sample = self.encode_video_sample(chat, sample_frames)
                batch, vision = self.collate([sample])
                features, modality = self.video_features(vision), "video"
            else:
                messages = prompts.teacher_messages(len(sample_frames), text)
                chat = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
                encode = self.encode_sample if frames_as is None else self.encode_images_first_sample
                sample = encode(chat, sample_frames)
                batch, vision = self.collate([sample])
                gates = torch.ones(len(sample_frames), device=self.device)
                features, modality = self.image_features(vision, sample.units_per_frame, gates), "image"
            generated: list[int] = []
            for _ in range(max_new_tokens):
                _, last = self._language_model(batch, vision, features, modality)
                token = int(head(last[0, -1]).float().argmax())
                if token in stop:
                    break
                generated.append(token)
                step = torch.tensor([[token]], device=batch["input_ids"].device)
                batch = {k: torch.cat([v, step if k == "input_ids" else torch.ones_like(step) if k == "attention_mask"
                                       else torch.zeros_like(step, dtype=v.dtype)], dim=1) for k, v in batch.items()}
            responses.append(self.tokenizer.decode(generated, skip_special_tokens=True))
        return responses

    def _check_inputs(self, frames, gates, questions, options, timestamps, answers, subtitles=None) -> None:
        """One clear error for inconsistent batch arguments."""
        batch = len(frames)
        if gates.ndim != 2 or gates.shape[0] != batch:
            raise ValueError(f"gates must be [B, k] with B={batch}, got {tuple(gates.shape)}")
        k = gates.shape[1]
        named = {"questions": questions, "options": options, "timestamps": timestamps, "answers": answers,
                 "subtitles": subtitles}
        for name, value in named.items():
            if value is not None and len(value) != batch:
                raise ValueError(f"{name} has {len(value)} entries for {batch} samples")
        for b, sample_frames in enumerate(frames):
            check_frames(sample_frames, f"frames of sample {b}")
            if len(sample_frames) != k:
                raise ValueError(f"sample {b} has {len(sample_frames)} frames but gates has k={k}")
            if timestamps is not None and len(timestamps[b]) != k:
                raise ValueError(f"sample {b} has {len(timestamps[b])} timestamps for {k} frames")

    def _language_model(self, batch, vision, features, modality: str = "image") -> tuple[Tensor, Tensor]:
        """Inner multimodal model on precomputed (gated) image features (``modality="video"``: the
        video features of `video_features`).

        Returns (hidden_states[HIDDEN_LAYER], last normed hidden state), each [B, L, dh].
        """
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        outputs = self.hf_model.model(
            **batch,
            **self.language_model_inputs(batch, vision),
            mm_encoder_outputs={modality: BaseModelOutputWithPooling(pooler_output=features)},
            output_hidden_states=True,
            use_cache=False,
        )
        return outputs.hidden_states[HIDDEN_LAYER], outputs.last_hidden_state

    @staticmethod
    def _pool_frames(hidden: Tensor, samples: list[EncodedSample]) -> Tensor:
        """H_t (Eq. 18): mean of each frame's visual-token hidden states -> [B, k, dh]."""
        rows = []
        for b, s in enumerate(samples):
            rows.append(torch.stack([hidden[b, start:end].mean(dim=0) for start, end in s.frame_spans]))
        return torch.stack(rows)

    def _option_logits(self, answer_states: Tensor, options) -> Tensor:
        """z (Eq. 16): LM-head logits of the option letters at the answer position -> [B, Cmax]
        float32, -inf padded.

        Computed in float32 whatever the model dtype and any autocast context: the CE of
        Eq. 17 and the argmax compare logits that can differ by less than a bf16 step.
        """
        counts = [len(o or []) for o in options]
        c_max = max(counts)
        out = answer_states.new_full((len(options), c_max), float("-inf"), dtype=torch.float32)
        if c_max == 0:
            return out
        letter_ids = torch.tensor(letter_token_ids(self.tokenizer, c_max), device=answer_states.device)
        head = self.hf_model.get_output_embeddings()
        with torch.autocast(answer_states.device.type, enabled=False):
            weight = head.weight[letter_ids].float()
            bias = None if head.bias is None else head.bias[letter_ids].float()
            logits = nn.functional.linear(answer_states.float(), weight, bias)
        for b, count in enumerate(counts):
            out[b, :count] = logits[b, :count]
        return out

    def _answer_loss(self, last: Tensor, input_ids: Tensor, samples, options, answers):
        """Token CE of the appended answer for open-ended samples -> ([B], mask [B]) or (None, None)."""
        if answers is None:
            return None, None
        mask = torch.tensor(
            [not (options[b] or []) and bool(answers[b]) for b in range(len(samples))], device=last.device
        )
        if not mask.any():
            return None, None
        head = self.hf_model.get_output_embeddings()
        losses = []
        for b, s in enumerate(samples):
            if not mask[b]:
                losses.append(last.new_zeros((), dtype=torch.float32))
                continue
            end = len(s.input_ids)
            logits = head(last[b, s.prompt_len - 1 : end - 1]).float()
            losses.append(nn.functional.cross_entropy(logits, input_ids[b, s.prompt_len : end]))
        return torch.stack(losses), mask


_REGISTRY: dict[str, type[Teacher]] = {}


def register_teacher(name: str):
    """Class decorator: make a Teacher loadable as `load_teacher(name, ...)`."""

    def register(cls: type[Teacher]) -> type[Teacher]:
        if name in _REGISTRY:
            raise ValueError(f"teacher {name!r} is already registered by {_REGISTRY[name].__name__}")
        _REGISTRY[name] = cls
        return cls

    return register


def list_teachers() -> list[str]:
    """Registered teacher kinds, sorted."""
    return sorted(_REGISTRY)


def teacher_class(kind: str) -> type[Teacher]:
    """The Teacher class registered as `kind`."""
    if kind not in _REGISTRY:
        raise ValueError(f"unknown teacher {kind!r}; known: {', '.join(list_teachers())} (or 'auto')")
    return _REGISTRY[kind]


def teacher_kind(name_or_path: str, allow_download: bool = False) -> str:
    """Teacher kind whose model_type matches the checkpoint's config."""
    from transformers import AutoConfig

    path = resolve_model_path(name_or_path, what="--teacher", allow_download=allow_download)
    model_type = AutoConfig.from_pretrained(path).model_type
    for kind, cls in _REGISTRY.items():
        if cls.model_type == model_type:
            return kind
    raise ModelLoadError(
        f"--teacher {name_or_path!r} is a {model_type!r} model; supported teachers: {', '.join(list_teachers())}"
    )


def load_teacher(
    kind: str,
    name_or_path: str | Path | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    lora_r: int = 8,
    lora_alpha: int = 16,
    lora_targets: str | list[str] = LORA_TARGETS,
    lora_dropout: float = 0.05,
    adapter: str | Path | None = None,
    allow_download: bool = False,
) -> Teacher:
    """Load a registered teacher (`kind="auto"`: pick it from the checkpoint's model_type),
    with a fresh LoRA adapter or the one saved in `adapter`."""
    if kind == "auto":
        if name_or_path is None:
            raise ValueError("teacher kind 'auto' needs a model id or path")
        kind = teacher_kind(str(name_or_path), allow_download)
    teacher = teacher_class(kind).from_pretrained(
        name_or_path,
        device=device,
        dtype=dtype,
        lora_r=lora_r,
        lora_alpha=lora_alpha,
        lora_targets=lora_targets,
        lora_dropout=lora_dropout,
        allow_download=allow_download,
    )
    if adapter is not None:
        teacher.load_adapter(adapter)
    return teacher
