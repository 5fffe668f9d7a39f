"""The student frame selector M_s of HFS (paper §3.1–3.3, Eqs. 1–5, 7–9).

One small causal LM (Qwen2.5-1.5B-Instruct by default, any Qwen2-family model) carries
two named LoRA adapters:

* ``task_analyzer`` (θ1), pass A: over ``E_input = [E_CoT; E_qa]`` (Eqs. 3–4) → hidden
  states ``H`` → K task queries ``q_task^(k) = H[j_k]`` (Eq. 5).
* ``context_aggregator`` (θ2), pass B: over ``E_fused = [E_v; E_qa; q_task^(1..K); q_agg]``
  (Eq. 7); the last hidden state is ``q̂_agg`` (Eq. 8).

Frame scores ``s_i = σ(z_i)``, ``z_i = MLP_s([e_v,i; q̂_agg])`` (Eq. 9); the student returns
the logits z (float32), selection decides what to make of them (``selection.score_path``). Gradients flow from pass B back
into pass A through the task queries (nothing is detached).

Batches are right-padded: every row's real tokens come first and its padding after them,
so in pass B ``q_task`` and ``q_agg`` sit right after that row's own text (not after the
padding) and ``q̂_agg`` is read at the row's last real position. With causal attention a
real token never sees padding, so a row's scores do not depend on what it is batched with
(tested).

The CoT prompt is wrapped in the model's chat template: pass A reads
``[template head + P_CoT; E_qa; template tail]``, where the tail closes the user turn and
opens the assistant's (``<|im_end|>\\n<|im_start|>assistant\\n`` for Qwen). Both template
parts belong to the prompt side E_CoT, so ``Lp`` counts them; the last position (K = 1,
and the last of K ≥ 2) is where the chat model would start its reasoning.

peft trap: ``set_adapter(name)`` sets ``requires_grad=False`` on the inactive adapter.
Pass A's graph is built while θ1 trains; switching to θ2 for pass B would then silently
drop θ1's gradients (autograd skips leaves that no longer require grad). Every switch
here is followed by re-enabling gradients on both adapters.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import NamedTuple, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

from hfs.pipeline.model.loading import ModelLoadError, check_base_model, default_dtype, resolve_model_path
from hfs.pipeline.model.prompts import COT_PROMPT, student_qa_text
from hfs.pipeline.model.queries import QUERY_POSITIONS, gather_task_queries

log = logging.getLogger(__name__)

__all__ = [
    "ADAPTERS",
    "TASK_ANALYZER",
    "CONTEXT_AGGREGATOR",
    "StudentConfig",
    "StudentOutput",
    "TextInputs",
    "FrameScorer",
    "Student",
    "build_student",
    "save_student",
    "load_student",
    "StudentLoadError",
]

TASK_ANALYZER = "task_analyzer"
"""Name of the LoRA adapter θ1 (pass A, Eq. 5)."""
CONTEXT_AGGREGATOR = "context_aggregator"
"""Name of the LoRA adapter θ2 (pass B, Eqs. 7–8)."""
ADAPTERS = (TASK_ANALYZER, CONTEXT_AGGREGATOR)
SCORER_INPUTS = ("concat", "normalised")
"""What MLP_s reads (``FrameScorer``): the paper's concatenation, or the same inputs normalised."""

_HEADS_FILE = "heads.safetensors"
_META_FILE = "student.json"
_ADAPTER_DIR = "adapters"
_FORMAT_VERSION = 1
_SENTINEL = "\u2063HFS-QA\u2063"  # splits the chat template around the question text


class StudentLoadError(ModelLoadError):
    """A saved student cannot be loaded as asked (missing files, another base model)."""


@dataclass
class StudentConfig:
    """The student selector M_s (paper §3.2–3.3, §4.1 defaults).

    Attributes:
        name_or_path: base causal LM, a Hugging Face id or a local folder.
            Paper: Qwen2.5-1.5B-Instruct.
        K: number of task queries q_task^(k) sampled from pass A (Eq. 5). Paper: 3;
            Table 4 varies 0..4. K = 0 skips pass A (θ1 unused).
        lora_r: LoRA rank of both student adapters, θ1 and θ2. Paper: r1 = r2 = 16.
        lora_alpha: LoRA scaling α (scale α/r). Not given in the paper; 2·r.
        lora_dropout: dropout on the LoRA input. Not given in the paper.
        target_modules: the base model's linear layers that get LoRA (both adapters).
        clip_dim: width of the cached frame features Φ_v(V_i) (CLIP ViT-B/32: 512).
        mlp_hidden: hidden width of the scorer MLP_s (Eq. 9; "lightweight").
        use_cot: prepend the CoT prompt P_CoT in pass A (Eqs. 3–4). False: pass A reads
            only E_qa in the chat template (Table 3 "w/o CoT-Query").
        static_query: ablation "static query" (Table 3 baseline; the same model as
            Table 4's K = 0): no pass A and no task queries, whatever K is; pass B
            aggregates with the learnable q_agg alone.
        question_blind: a control, not the paper: every question reads as the same empty
            text ("Question: ", no options), so the scores depend on the frames alone (a
            question-blind saliency selector with the same model and training). On a task
            whose answer-bearing frames depend on the question it measures what reading
            the question adds; ``static_query`` alone does not remove it (pass B still reads E_qa).
        max_text_tokens: at most this many tokens of question + options (E_qa); longer
            texts are cut at the end, with a warning.
        query_positions: where Eq. 5 spreads the K query positions in pass A: "paper"
            (default) over all of E_input = [E_CoT; E_qa], as the paper writes it; "question"
            at the ends of the K successive parts of the E_qa span. Under a causal LM the
            paper's first positions read only the fixed CoT prompt, so they are the same
            for every sample (queries.py).
        scorer_inputs: what MLP_s reads (``FrameScorer``): "concat" (the paper's Eq. 9,
            [e_v,i; q̂_agg]) or "normalised" (e_v centred over the video's frames and scaled
            by one RMS per video, q̂_agg at unit RMS).
    """

    name_or_path: str = "Qwen/Qwen2.5-1.5B-Instruct"
    K: int = 3
    lora_r: int = 16
    lora_alpha: float = 32.0
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = (
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
    )
    clip_dim: int = 512
    mlp_hidden: int = 512
    use_cot: bool = True
    static_query: bool = False
    question_blind: bool = False
    max_text_tokens: int = 512
    query_positions: str = "paper"
    scorer_inputs: str = "concat"

    def __post_init__(self) -> None:
        self.target_modules = tuple(self.target_modules)  # YAML/JSON give lists
        for name in ("K", "lora_r", "clip_dim", "mlp_hidden", "max_text_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"StudentConfig.{name} must be an int, got {value!r}")
        if self.K < 0:
            raise ValueError(f"StudentConfig.K must be >= 0, got {self.K}")
        if min(self.lora_r, self.clip_dim, self.mlp_hidden, self.max_text_tokens) < 1:
            raise ValueError("StudentConfig lora_r, clip_dim, mlp_hidden, max_text_tokens must be >= 1")
        if not self.target_modules:
            raise ValueError("StudentConfig.target_modules must name at least one module")
        if self.query_positions not in QUERY_POSITIONS:
            raise ValueError(f"StudentConfig.query_positions must be one of {QUERY_POSITIONS}, got {self.query_positions!r}")
        if self.scorer_inputs not in SCORER_INPUTS:
            raise ValueError(f"StudentConfig.scorer_inputs must be one of {SCORER_INPUTS}, got {self.scorer_inputs!r}")

    @property
    def num_task_queries(self) -> int:
        """K actually used: 0 under the static-query ablation, else K."""
        return 0 if self.static_query else self.K


class StudentOutput(NamedTuple):
    """One student forward for ``B`` questions over ``N`` frames (d = LM width).

    logits: z_i = MLP_s(·) ``[B, N]`` float32 (Eq. 9 before the σ); what selection uses.
    task_queries: q_task^(1..K) ``[B, K, d]`` (Eq. 5), for L_sep (Eq. 6); K may be 0.
    aggregated_query: q̂_agg ``[B, d]`` (Eq. 8).
    """

    logits: Tensor
    task_queries: Tensor
    aggregated_query: Tensor

    @property
    def scores(self) -> Tensor:
        """s_i = σ(z_i) ∈ (0, 1) ``[B, N]`` float32 (Eq. 9), the paper's scores."""
        return torch.sigmoid(self.logits)


@dataclass
class TextInputs:
    """Token ids of one batch, right-padded (Eqs. 2–4).

    task_ids / task_lengths: pass A input [template head + P_CoT; Q, {O_j}; template
        tail] ``[B, Lp+L]`` and its real length per row ``[B]``.
    qa_ids / qa_lengths: E_qa's tokens [Q; {O_j}] ``[B, L]`` and lengths ``[B]``.
    """

    task_ids: Tensor
    task_lengths: Tensor
    qa_ids: Tensor
    qa_lengths: Tensor


def rms_normalise(x: Tensor, eps: float = 1e-6) -> Tensor:
    """``x`` divided by its root mean square over the last dimension (no learned scale)."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def centre_frames(frames: Tensor, eps: float = 1e-6) -> Tensor:
    """``frames [B, N, d]`` minus their mean over the video's N frames, divided by one RMS over
    all of the video's centred values: what tells the frames apart at unit scale, a frame like
    the video's average near 0 (per-frame scaling would blow it up to the scale of the rest)."""
    centred = frames - frames.mean(dim=1, keepdim=True)
    return centred * torch.rsqrt(centred.pow(2).mean(dim=(1, 2), keepdim=True) + eps)


class FrameScorer(nn.Module):
    """MLP_s of Eq. 9: z_i = MLP_s([e_v,i; q̂_agg]), a two-layer GELU MLP → 1 logit (s_i = σ(z_i)).

    ``inputs`` (``StudentConfig.scorer_inputs``) says what the MLP reads:

    * ``"concat"`` (the paper's Eq. 9 as written): [e_v,i; q̂_agg].
    * ``"normalised"``: [ẽ_i; q̃], ẽ_i = e_v,i minus the mean over the video's N frames, divided by
      one RMS over all of the video's centred frames (a quiet frame stays near 0), q̃ = q̂_agg at
      unit RMS. What tells frames apart is then on the scale of the query
      (raw: 0.5 beside 8.0 at initialisation, benchmarks/RESULTS.md 2026-12-08).
    """

    def __init__(self, d: int, hidden: int, inputs: str = "concat") -> None:
        super().__init__()
        if inputs not in SCORER_INPUTS:
            raise ValueError(f"scorer inputs must be one of {SCORER_INPUTS}, got {inputs!r}")
        self.inputs = inputs
        self.net = nn.Sequential(nn.Linear(2 * d, hidden), nn.GELU(), nn.Linear(hidden, 1))

    def forward(self, frames: Tensor, query: Tensor) -> Tensor:
        """``frames [B, N, d]`` (e_v,i), ``query [B, d]`` (q̂_agg) → logits z ``[B, N]``, float32.

        Runs in float32 with autocast off, so z keeps its precision under bf16 training.
        """
        with torch.autocast(device_type=frames.device.type, enabled=False):
            e, q = frames.float(), query.float()
            if self.inputs == "normalised":
                e, q = centre_frames(e), rms_normalise(q)
            q = q.unsqueeze(1).expand(-1, e.shape[1], -1)
            return self.net(torch.cat([e, q], dim=-1)).squeeze(-1)


def _chat_template_parts(tokenizer, instruction: str) -> tuple[str, str]:
    """Split the chat-templated user turn ``instruction + QA`` around the QA text.

    Returns (head, tail): head = everything before the question (system turn, user turn
    opening, the instruction), tail = the end of the user turn and the opening of the
    assistant's (generation prompt). Without a chat template: (instruction, "").
    """
    if not getattr(tokenizer, "chat_template", None):
        log.warning("tokenizer has no chat template; pass A reads the plain prompt text")
        return instruction, ""
    messages = [{"role": "user", "content": instruction + _SENTINEL}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if text.count(_SENTINEL) != 1:
        raise ValueError("the chat template does not keep the user text verbatim; cannot place E_qa")
    head, tail = text.split(_SENTINEL)
    return head, tail


class Student(nn.Module):
    """M_s: the base LM with adapters θ1/θ2 (a peft ``PeftModel``), W_v, q_agg and MLP_s.

    Build it with ``build_student`` (loads the base model) or directly from a loaded
    causal LM and its tokenizer. The LM's own weights stay frozen; trainable are the two
    adapters and the float32 heads W_v, q_agg, MLP_s.
    """

    def __init__(self, cfg: StudentConfig, base_model: nn.Module, tokenizer) -> None:
        super().__init__()
        from peft import LoraConfig, get_peft_model
        from peft.tuners.tuners_utils import BaseTunerLayer

        self.cfg = cfg
        self.tokenizer = tokenizer
        lora = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=list(cfg.target_modules),
            bias="none",
        )
        self.lm = get_peft_model(base_model, lora, adapter_name=TASK_ANALYZER)
        self.lm.add_adapter(CONTEXT_AGGREGATOR, lora)
        self.train_task_analyzer = True
        # the LoRA layers, listed once: switching adapters touches these, not every module
        self._lora_layers = tuple(m for m in self.lm.modules() if isinstance(m, BaseTunerLayer))
        self._enable_adapter_grads()
        d = base_model.config.hidden_size
        device = base_model.get_input_embeddings().weight.device
        self.frame_proj = nn.Linear(cfg.clip_dim, d, device=device)  # W_v, Eq. 1
        # q_agg starts at the scale of a token embedding, so pass B sees a plausible token
        # (weights on the meta device, e.g. for counting: the config's init scale).
        emb = base_model.get_input_embeddings().weight
        emb_std = base_model.config.initializer_range if emb.is_meta else float(emb.detach().float().std())
        self.q_agg = nn.Parameter(torch.randn(d, device=device) * emb_std)
        self.scorer = FrameScorer(d, cfg.mlp_hidden, cfg.scorer_inputs).to(device)  # MLP_s, Eq. 9
        instruction = COT_PROMPT + "\n\n" if cfg.use_cot else ""
        self._task_head, self._task_tail = _chat_template_parts(tokenizer, instruction)
        self._head_ids = self._encode(self._task_head)
        self._tail_ids = self._encode(self._task_tail)

    # --- plumbing ---------------------------------------------------------------------

    @property
    def hidden_size(self) -> int:
        """d, the width of the LM (and of e_v,i, q_task, q_agg)."""
        return int(self.lm.get_base_model().config.hidden_size)

    @property
    def device(self) -> torch.device:
        return self.q_agg.device

    @property
    def lm_dtype(self) -> torch.dtype:
        return self.lm.get_input_embeddings().weight.dtype

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def _enable_adapter_grads(self) -> None:
        """Undo peft's freezing of the inactive adapter: θ2 always trains, θ1 unless it is
        frozen (``train_task_analyzer`` False: K = 0, where pass A never runs)."""
        wanted = {CONTEXT_AGGREGATOR: True, TASK_ANALYZER: self.train_task_analyzer}
        for layer in self._lora_layers:
            for attr in layer.adapter_layer_names:
                weights = getattr(layer, attr)
                for adapter, flag in wanted.items():
                    if adapter in weights:
                        weights[adapter].requires_grad_(flag)

    def _use_adapter(self, name: str) -> None:
        """Activate one adapter for the next LM pass, keeping both trainable (peft trap).

        What ``PeftModel.set_adapter`` and ``set_requires_grad`` do, on the LoRA layers listed
        once instead of walks over every module of the LM (per-call overhead that dominates a
        selection at batch 1: bench_select's breakdown)."""
        for layer in self._lora_layers:
            layer.set_adapter(name)
        self.lm.active_adapter = self.lm.base_model.active_adapter = name
        self._enable_adapter_grads()

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Activation checkpointing of the LM's decoder layers on or off (``loading.set_activation_checkpointing``).

        peft trap, the second: a checkpointed layer runs again in the backward pass with the
        adapter active *then*. Pass A's layers are recomputed after pass B switched to θ2,
        so each checkpoint records the adapter of its forward and its recompute switches
        back to it (and then to the one active before), else θ1 would get gradients of a
        forward through θ2."""
        from hfs.pipeline.model.loading import set_activation_checkpointing

        set_activation_checkpointing(self.lm.get_base_model(), enabled, context_fn=self._checkpoint_contexts)

    def _checkpoint_contexts(self) -> tuple[contextlib.AbstractContextManager, contextlib.AbstractContextManager]:
        """``torch.utils.checkpoint``'s ``context_fn``: nothing around the forward, the forward's
        adapter around the recompute."""
        return contextlib.nullcontext(), self._adapter_active(self.lm.active_adapter)

    @contextlib.contextmanager
    def _adapter_active(self, name: str):
        before = self.lm.active_adapter
        if before == name:
            yield
            return
        self._use_adapter(name)
        try:
            yield
        finally:
            self._use_adapter(before)

    def _decoder(self) -> nn.Module:
        """The LM body without its vocabulary head (outputs the last hidden states)."""
        base = self.lm.get_base_model()
        return getattr(base, base.base_model_prefix)

    def _run_lm(self, adapter: str, embeds: Tensor, lengths: Tensor) -> Tensor:
        """One pass of the LM with ``adapter`` over right-padded ``embeds [B, T, d]``
        (row b real for its first ``lengths[b]`` positions) → last hidden states ``[B, T, d]``."""
        self._use_adapter(adapter)
        T = embeds.shape[1]
        mask = (torch.arange(T, device=embeds.device).unsqueeze(0) < lengths.unsqueeze(1)).long()
        out = self._decoder()(inputs_embeds=embeds, attention_mask=mask, use_cache=False)
        return out.last_hidden_state

    def trainable_named_parameters(self) -> dict[str, list[nn.Parameter]]:
        """θ1, θ2, W_v, q_agg, MLP_s by name (the LM's own weights are frozen)."""
        groups: dict[str, list[nn.Parameter]] = {a: [] for a in ADAPTERS}
        for name, p in self.lm.named_parameters():
            for adapter in ADAPTERS:
                if f".{adapter}." in name:
                    groups[adapter].append(p)
        groups["W_v"] = list(self.frame_proj.parameters())
        groups["q_agg"] = [self.q_agg]
        groups["MLP_s"] = list(self.scorer.parameters())
        return groups

    # --- Eqs. 1–4: inputs -------------------------------------------------------------

    def frame_embeddings(self, features: Tensor) -> Tensor:
        """Eq. 1: E_v = W_v Φ_v(V_i). ``features [B, N, clip_dim]`` → ``[B, N, d]`` float32."""
        if features.dim() != 3 or features.shape[-1] != self.cfg.clip_dim:
            raise ValueError(
                f"features must be [B, N, {self.cfg.clip_dim}], got shape {tuple(features.shape)}"
            )
        return self.frame_proj(features.to(self.device, torch.float32))

    def text_inputs(
        self, questions: Sequence[str], options: Sequence[Sequence[str]], device: torch.device | str | None = None
    ) -> TextInputs:
        """Eqs. 2–4 (token side): E_qa = [Q; {O_j}] and E_input = [E_CoT; E_qa], right-padded,
        on ``device`` (default: the student's)."""
        device = device or self.device
        if len(questions) != len(options):
            raise ValueError(f"{len(questions)} questions but {len(options)} option lists")
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        qa, task = [], []
        for q, opts in zip(questions, options):
            if self.cfg.question_blind:
                q, opts = "", []
            ids = self._encode(student_qa_text(q, list(opts or [])))
            if len(ids) > self.cfg.max_text_tokens:
                log.warning("question text has %d tokens, cut to max_text_tokens=%d",
                            len(ids), self.cfg.max_text_tokens)
                ids = ids[: self.cfg.max_text_tokens]
            if not ids:
                raise ValueError(f"empty question text for question {q!r}")
            qa.append(torch.tensor(ids, dtype=torch.long))
            task.append(torch.tensor(self._head_ids + ids + self._tail_ids, dtype=torch.long))

        def padded(rows: list[Tensor]) -> tuple[Tensor, Tensor]:
            lengths = torch.tensor([len(r) for r in rows], dtype=torch.long, device=device)
            return pad_sequence(rows, batch_first=True, padding_value=pad).to(device), lengths

        task_ids, task_lengths = padded(task)
        qa_ids, qa_lengths = padded(qa)
        return TextInputs(task_ids, task_lengths, qa_ids, qa_lengths)

    # --- Eq. 5: pass A (θ1) ------------------------------------------------------------

    def task_queries(self, text: TextInputs) -> Tensor:
        """Eqs. 3–5: H = M_s(E_input; θ1), q_task^(k) = H[j_k] → ``[B, K, d]`` (LM dtype).

        K = 0 (or the static-query ablation) skips the pass and returns ``[B, 0, d]``.
        """
        K = self.cfg.num_task_queries
        B = text.task_ids.shape[0]
        if K == 0:
            return torch.zeros(B, 0, self.hidden_size, device=self.device, dtype=self.lm_dtype)
        e_input = self.lm.get_input_embeddings()(text.task_ids)
        hidden = self._run_lm(TASK_ANALYZER, e_input, text.task_lengths)
        if self.cfg.query_positions == "question":  # E_qa sits right after the template head
            starts = torch.full_like(text.qa_lengths, len(self._head_ids))
            return gather_task_queries(hidden, text.qa_lengths, K, starts, spread="question")
        return gather_task_queries(hidden, text.task_lengths, K)

    # --- Eqs. 7–8: pass B (θ2) ---------------------------------------------------------

    def aggregate(self, e_v: Tensor, text: TextInputs, q_task: Tensor) -> Tensor:
        """Eqs. 7–8: q̂_agg = last(M_s([E_v; E_qa; q_task^(1..K); q_agg]; θ2)).

        ``e_v [B, N, d]``, ``q_task [B, K, d]`` → ``[B, d]``. Row b's sequence has
        N + L_b + K + 1 real positions, right-padded to the longest row.
        """
        dtype = self.lm_dtype
        e_qa = self.lm.get_input_embeddings()(text.qa_ids)
        q_agg = self.q_agg.to(dtype).unsqueeze(0)
        rows = [
            torch.cat([e_v[b].to(dtype), e_qa[b, : int(L)], q_task[b].to(dtype), q_agg])
            for b, L in enumerate(text.qa_lengths.tolist())
        ]
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long, device=self.device)
        hidden = self._run_lm(CONTEXT_AGGREGATOR, pad_sequence(rows, batch_first=True), lengths)
        last = (lengths - 1).view(-1, 1, 1).expand(-1, 1, hidden.shape[-1])
        return hidden.gather(1, last).squeeze(1)

    # --- Eq. 9 and the whole forward ----------------------------------------------------

    def forward(
        self, features: Tensor, questions: Sequence[str], options: Sequence[Sequence[str]]
    ) -> StudentOutput:
        """Eqs. 1–9 for ``features [B, N, clip_dim]`` (cached CLIP), B questions and their
        option lists (empty for open-ended) → ``StudentOutput`` (scores ``[B, N]``)."""
        if features.dim() != 3 or features.shape[0] != len(questions):
            raise ValueError(
                f"features must be [B, N, {self.cfg.clip_dim}] with B = {len(questions)} "
                f"questions, got shape {tuple(features.shape)}"
            )
        e_v = self.frame_embeddings(features)
        text = self.text_inputs(questions, options)
        q_task = self.task_queries(text)
        q_hat = self.aggregate(e_v, text, q_task)
        logits = self.scorer(e_v, q_hat.float())
        return StudentOutput(logits, q_task, q_hat)


# --- building, saving, loading ----------------------------------------------------------


def _load_base(name_or_path: str, device: torch.device | str | None, dtype: torch.dtype | None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = dtype or default_dtype(device)
    path = resolve_model_path(name_or_path, what="--student")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"cannot load student base model {name_or_path!r} from {path}: {err}") from err
    return model.to(device), tokenizer


def build_student(
    cfg: StudentConfig, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> Student:
    """Load ``cfg.name_or_path`` (bf16 on GPU, fp32 on CPU unless ``dtype``) and wrap it."""
    model, tokenizer = _load_base(cfg.name_or_path, device, dtype)
    return Student(cfg, model, tokenizer)


_FINGERPRINT_KEYS = (
    "model_type", "hidden_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "intermediate_size", "vocab_size",
)


def _base_fingerprint(student: Student) -> dict:
    """What identifies the base LM: its architecture and 64 of its embedding weights."""
    base = student.lm.get_base_model()
    out = {k: getattr(base.config, k, None) for k in _FINGERPRINT_KEYS}
    weight = base.get_input_embeddings().weight.detach()
    rows = torch.linspace(0, weight.shape[0] - 1, 64).long()
    cols = torch.arange(64) * 7 % weight.shape[1]
    out["embedding_sample"] = weight[rows.to(weight.device), cols.to(weight.device)].double().tolist()
    return out


def _same_base(saved: dict, found: dict) -> bool:
    if any(saved.get(k) != found.get(k) for k in _FINGERPRINT_KEYS):
        return False
    a, b = torch.tensor(saved["embedding_sample"]), torch.tensor(found["embedding_sample"])
    # bf16 and fp32 copies of one model agree to ~0.4%; another model differs by O(1).
    return a.shape == b.shape and bool((a - b).abs().max() <= 0.02 * a.abs().max() + 1e-6)


def save_student(student: Student, directory: str | Path) -> Path:
    """Write the student to ``directory``: ``adapters/task_analyzer`` and
    ``adapters/context_aggregator`` (peft, one folder per named adapter), W_v, q_agg and
    MLP_s in ``heads.safetensors``, and ``student.json`` (config, base model name, and a
    fingerprint of the base model). The base model's own weights are not written."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    student.lm.save_pretrained(
        str(directory / _ADAPTER_DIR), selected_adapters=list(ADAPTERS), save_embedding_layers=False
    )
    heads = {f"frame_proj.{k}": v for k, v in student.frame_proj.state_dict().items()}
    heads["q_agg"] = student.q_agg.data
    heads.update({f"scorer.{k}": v for k, v in student.scorer.state_dict().items()})
    save_file({k: v.detach().cpu().contiguous() for k, v in heads.items()}, str(directory / _HEADS_FILE))
    meta = {
        "format_version": _FORMAT_VERSION,
        "base_model": student.cfg.name_or_path,
        "base_fingerprint": _base_fingerprint(student),
        "config": asdict(student.cfg),
    }
    (directory / _META_FILE).write_text(json.dumps(meta, indent=2))
    log.info("saved student (base %s) to %s", student.cfg.name_or_path, directory)
    return directory


def _read_meta(directory: Path) -> dict:
    meta_path = directory / _META_FILE
    if not meta_path.is_file():
        raise StudentLoadError(f"{directory} is not a saved student: {_META_FILE} is missing")
    meta = json.loads(meta_path.read_text())
    if meta.get("format_version") != _FORMAT_VERSION:
        raise StudentLoadError(
            f"{meta_path}: format_version {meta.get('format_version')!r}, this hfs reads {_FORMAT_VERSION}"
        )
    for adapter in ADAPTERS:
        if not (directory / _ADAPTER_DIR / adapter).is_dir():
            raise StudentLoadError(f"{directory}: adapter folder {_ADAPTER_DIR}/{adapter} is missing")
    return meta


def load_student(
    directory: str | Path,
    name_or_path: str | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Student:
    """Load a student written by ``save_student``; both adapters come back trainable.

    The base model is the saved ``base_model`` unless ``name_or_path`` names another copy
    of it (a local folder instead of the hub id compares equal by its last path part). A
    different base model, by name or by what is loaded (architecture, embedding
    checksum), raises ``StudentLoadError`` naming both.
    """
    directory = Path(directory)
    meta = _read_meta(directory)
    known = {f.name for f in fields(StudentConfig)}
    cfg = StudentConfig(**{k: v for k, v in meta["config"].items() if k in known})
    saved_base = meta["base_model"]
    cfg.name_or_path = name_or_path or saved_base
    try:
        check_base_model(saved_base, cfg.name_or_path, what=f"student {directory}")
    except ModelLoadError as err:
        raise StudentLoadError(str(err)) from err
    model, tokenizer = _load_base(cfg.name_or_path, device, dtype)
    student = Student(cfg, model, tokenizer)
    found = _base_fingerprint(student)
    if not _same_base(meta["base_fingerprint"], found):
        differs = [k for k in (*_FINGERPRINT_KEYS, "embedding_sample") if meta["base_fingerprint"].get(k) != found[k]]
        raise StudentLoadError(
            f"student {directory} was trained on base model {saved_base!r}, but the model "
            f"loaded from {cfg.name_or_path!r} differs in {', '.join(differs)}; "
            "load it with its own base model"
        )
    _load_adapters(student.lm, directory / _ADAPTER_DIR)
    student._enable_adapter_grads()
    _load_heads(student, directory / _HEADS_FILE)
    log.info("loaded student from %s onto %s", directory, cfg.name_or_path)
    return student


def _load_heads(student: Student, path: Path) -> None:
    """W_v, q_agg and MLP_s from ``heads.safetensors`` (strict: every tensor must fit)."""
    from safetensors.torch import load_file

    heads = load_file(str(path), device=str(student.device))

    def part(prefix: str) -> dict[str, Tensor]:
        return {k[len(prefix):]: v for k, v in heads.items() if k.startswith(prefix)}

    try:
        student.frame_proj.load_state_dict(part("frame_proj."))
        student.scorer.load_state_dict(part("scorer."))
        with torch.no_grad():
            student.q_agg.copy_(heads["q_agg"])
    except (RuntimeError, KeyError) as err:
        raise StudentLoadError(f"{path} does not fit this student: {err}") from err


def _load_adapters(lm, adapter_dir: Path) -> None:
    """Load the saved weights of both named adapters into ``lm`` (same LoRA configs)."""
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    for adapter in ADAPTERS:
        path = adapter_dir / adapter / "adapter_model.safetensors"
        if not path.is_file():
            raise StudentLoadError(f"adapter weights {path} are missing")
        state = load_file(str(path), device=str(next(lm.parameters()).device))
        result = set_peft_model_state_dict(lm, state, adapter_name=adapter)
        missing = [k for k in result.missing_keys if f".{adapter}." in k]
        if missing or result.unexpected_keys:
            raise StudentLoadError(
                f"adapter {adapter} in {path} does not fit this model: missing {missing[:3]}, "
                f"unexpected {list(result.unexpected_keys)[:3]}"
            )
