"""HFS end to end (paper §3, Eqs. 1–21): student → Gumbel-TopK → teacher → losses.

``HFSConfig`` gathers every hyper-parameter of the paper, each ablation of Tables 3–8 a
switch; ``HFSModel`` holds the student M_s (θ1, θ2, W_v, q_agg, MLP_s), the teacher M_t
(θ3) and the teacher scorer MLP_t, and has three paths:

* ``forward(batch, step, steps_per_epoch)``: training. Logits z (Eqs. 1–9) → keys
  (``selection.score_path``, float32, autocast off from here to the losses) → Gumbel-TopK
  (Eq. 10, τ from the schedule) → F(m) on the soft mask (Eqs. 11–15) → the teacher sees
  the selected frames in time order (Eq. 16) → answer CE (Eq. 17) → KL(p_t ‖ p_s)
  (Eqs. 18–20) → total (Eq. 21). The CE reaches the student by ``selection.estimator``:
  REINFORCE over R sampled subsets (default) or each frame's visual tokens times its
  straight-through hard-mask value. Returns ``(LossTerms, Selection)``.
* ``evaluate(batch)``: plain top-k of the noise-free keys (monotone in s on the paper's path)
  and the teacher's answer, no gradients.
* ``select(features, questions, options, k)``: the student alone.

Ablation switches (paper tables → config fields):

=========  ==========================================================================
Table 3    ``student.use_cot`` (CoT-Query), ``losses.use_set`` (set objective),
           ``losses.use_kl`` (KL distillation), ``losses.use_sep`` (L_sep); baseline:
           ``student.static_query`` with only CE
Table 4    ``student.K`` = 0..4 (K = 0: no task analyzer pass)
Table 5    ``set_objective.terms`` ⊆ ("rel", "cov", "red")
Table 6    ``set_objective.weights`` (λ_rel, λ_cov, λ_red)
Table 7    ``losses.supervision`` = "pseudo_label" (offline per-frame labels, no teacher
           in training), or "answer" with ``losses.use_kl`` off (CE) / on (CE + KL)
Table 8    ``selection.k`` (k_sel)
=========  ==========================================================================
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hfs.pipeline.model.losses import LossTerms, answer_ce, kl_from_logits, separation_loss, total_loss
from hfs.pipeline.model.schedules import lambda_kl
from hfs.pipeline.model.selection import (
    SelectionConfig,
    frame_scores,
    gumbel_noise,
    gumbel_topk_keys,
    plackett_luce_log_prob,
    selection_keys,
    topk_select,
)
from hfs.pipeline.model.set_objective import SetObjectiveConfig, SetObjectiveTerms, kernel_times, set_objective_terms
from hfs.pipeline.model.student import CONTEXT_AGGREGATOR, TASK_ANALYZER, Student, StudentConfig

log = logging.getLogger(__name__)

__all__ = [
    "LossConfig",
    "TeacherConfig",
    "HFSConfig",
    "Batch",
    "Selection",
    "Evaluation",
    "pseudo_label_loss",
    "leave_one_out_advantage",
    "score_function_surrogate",
    "HFSModel",
    "read_saved_config",
    "saved_before_score_path",
    "trained_groups",
]

SUPERVISIONS = ("answer", "pseudo_label")


# --- configuration ------------------------------------------------------------------------


@dataclass
class LossConfig:
    """Weights and switches of Eq. 21 (paper §4.1 defaults).

    Attributes:
        lambda_kl_start: λ_KL at step 0; it rises linearly to ``lambda_kl_end`` over the
            first epoch (paper: 0.1 → 1.0), then stays.
        lambda_kl_end: λ_KL after the first epoch.
        lambda_set: λ_set, weight of −F(m). Paper: 1e-4.
        lambda_sep: λ_sep, weight of L_sep (Eq. 6). Paper: 0.01.
        tau_d: distillation temperature τ_d of p_s (Eq. 19). Paper: 0.5.
        use_kl: mutual-learning KL term (Eqs. 18–20) on/off (Tables 3, 7). Off: MLP_t is
            not run and gets no gradient.
        use_set: −λ_set·F(m) on/off (Table 3). F is still computed and logged.
        use_sep: λ_sep·L_sep on/off (Table 3).
        kl_on: what p_s (Eq. 19) is a softmax of over the selected frames, divided by τ_d:
            "scores" (default): the per-frame scores in (0, 1) that F uses (σ(c·ẑ) on the
            logit score path, s = σ(z) on the paper's), as Eq. 19 writes it; "keys": the
            noise-free keys (c·ẑ on the logit path, log s on the paper's), unbounded.
        supervision: "answer" (paper): the teacher's answer CE (Eq. 17; open-ended samples
            use its token CE). "pseudo_label" (Table 7, first row): binary cross-entropy
            of s_i against offline per-frame labels ``Batch.frame_labels``; the teacher is
            not run in training, so KL must be off.
    """

    lambda_kl_start: float = 0.1
    lambda_kl_end: float = 1.0
    lambda_set: float = 1e-4
    lambda_sep: float = 0.01
    tau_d: float = 0.5
    use_kl: bool = True
    use_set: bool = True
    use_sep: bool = True
    kl_on: Literal["scores", "keys"] = "scores"
    supervision: Literal["answer", "pseudo_label"] = "answer"

    def __post_init__(self) -> None:
        if self.supervision not in SUPERVISIONS:
            raise ValueError(f"losses.supervision must be one of {SUPERVISIONS}, got {self.supervision!r}")
        if self.supervision == "pseudo_label" and self.use_kl:
            raise ValueError("losses.supervision='pseudo_label' runs no teacher in training; set losses.use_kl=False")
        if self.tau_d <= 0:
            raise ValueError(f"losses.tau_d must be > 0, got {self.tau_d}")
        if self.kl_on not in ("scores", "keys"):
            raise ValueError(f"losses.kl_on must be 'scores' or 'keys', got {self.kl_on!r}")


@dataclass
class TeacherConfig:
    """The teacher M_t and its scorer MLP_t (paper §3.4, §4.1).

    Attributes:
        kind: registered teacher ("qwen2_5_vl", "internvl"; see ``teachers.list_teachers``).
        name_or_path: Hugging Face id or local folder; None = the kind's default
            (Qwen2.5-VL-7B-Instruct, InternVL3-8B-hf).
        lora_r: rank of θ3 on the language model (paper: 8); 0 = frozen teacher.
        lora_alpha: LoRA scaling α of θ3.
        lora_dropout: dropout on θ3's input.
        mlp_hidden: hidden width of MLP_t (Eq. 18).
        max_tiles: InternVL only: 448-px tiles per frame. 1 (default) resizes each
            frame to one tile (256 tokens), as InternVL3 runs video; n > 1 splits a
            frame into up to n tiles plus a thumbnail, like its image chat (a 16:9
            frame: 3 tiles, 3x the teacher's tokens and memory).
    """

    kind: str = "qwen2_5_vl"
    name_or_path: str | None = None
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    mlp_hidden: int = 512
    max_tiles: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.max_tiles, bool) or not isinstance(self.max_tiles, int) or self.max_tiles < 1:
            raise ValueError(f"teacher.max_tiles must be an int >= 1 (tiles per frame), got {self.max_tiles!r}")


_SECTIONS: dict[str, type] = {
    "student": StudentConfig,
    "selection": SelectionConfig,
    "set_objective": SetObjectiveConfig,
    "losses": LossConfig,
    "teacher": TeacherConfig,
}


@dataclass
class HFSConfig:
    """Everything HFSModel needs; one section per part of the paper.

    Attributes:
        student: M_s (Eqs. 1–9): base LM, K, LoRA θ1/θ2, CoT and static-query ablations.
        selection: Gumbel-TopK (Eq. 10): k_sel, τ schedule, relaxation.
        set_objective: F(m) (Eqs. 11–15): weights, τ_c, γ, time unit, enabled terms.
        losses: Eq. 21: λ schedule and weights, τ_d, switches.
        teacher: M_t and MLP_t (Eqs. 16–18): kind, model, LoRA θ3.
    """

    student: StudentConfig = field(default_factory=StudentConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    set_objective: SetObjectiveConfig = field(default_factory=SetObjectiveConfig)
    losses: LossConfig = field(default_factory=LossConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain JSON-able dict (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, dict[str, Any]]) -> "HFSConfig":
        """Inverse of ``to_dict``; missing sections/fields keep their defaults, unknown ones
        raise ``ValueError`` naming them."""
        unknown = set(data) - set(_SECTIONS)
        if unknown:
            raise ValueError(f"unknown config sections {sorted(unknown)}; known: {sorted(_SECTIONS)}")
        parts = {}
        for name, section_cls in _SECTIONS.items():
            values = dict(data.get(name) or {})
            bad = set(values) - {f.name for f in fields(section_cls)}
            if bad:
                raise ValueError(f"unknown fields {sorted(bad)} in config section {name!r}")
            parts[name] = section_cls(**values)
        return cls(**parts)

    @classmethod
    def tiny(cls, teacher: str = "qwen2_5_vl", workdir: str | Path | None = None) -> "HFSConfig":
        """Paper settings on tiny random models (pipeline/model/tiny.py), for CPU tests and the demo.

        The models are built into ``workdir`` (reused when already there) or, without one,
        taken from the per-process tiny presets. Only sizes shrink: MLP widths and
        k_sel = 4 (tiny videos have few frames); K, λs, τs and the switches are the paper's.
        """
        from hfs.pipeline.model.tiny import TEACHER_KINDS, build_tiny_student, build_tiny_teacher

        if teacher not in TEACHER_KINDS:
            raise ValueError(f"unknown tiny teacher {teacher!r}; expected one of {TEACHER_KINDS}")
        if workdir is None:
            student_path, teacher_path = "tiny-student", f"tiny-{teacher}"
        else:
            root = Path(workdir)
            student_path, teacher_path = root / "tiny-student", root / f"tiny-{teacher}"
            if not (student_path / "config.json").is_file():
                build_tiny_student(student_path)
            if not (teacher_path / "config.json").is_file():
                build_tiny_teacher(teacher, teacher_path)
        return cls(
            student=StudentConfig(name_or_path=str(student_path), mlp_hidden=32),
            selection=SelectionConfig(k=4),
            teacher=TeacherConfig(kind=teacher, name_or_path=str(teacher_path), mlp_hidden=32),
        )


# --- inputs and outputs ---------------------------------------------------------------------


JpegFrames = Sequence[Any]
"""One sample's N teacher frames as JPEG bytes (``bytes``, uint8 numpy arrays or uint8
tensors), in time order: what ``FeatureCache.frames`` returns."""


@dataclass
class Batch:
    """A collated micro-batch of B questions over N cached frames each.

    Attributes:
        features: Φ_v(V_i), cached CLIP embeddings ``[B, N, clip_dim]``.
        timestamps: frame times ``[B, N]`` in seconds.
        questions: B question texts.
        options: B option lists; ``[]`` for an open-ended question.
        answer_index: ``[B]`` long, index of the correct option; −1 for open-ended.
        answers: B reference answer texts (used for open-ended questions).
        frames: B lists of the N teacher frames as JPEG bytes. Only the k selected ones
            are decoded, inside the step, on the model's device (``frames.decode_jpegs``).
        frame_labels: optional ``[B, N]`` per-frame pseudo-labels in [0, 1], only for
            ``losses.supervision = "pseudo_label"``.
        sample_ids: optional B sample ids (logs, predictions).
    """

    features: Tensor
    timestamps: Tensor
    questions: list[str]
    options: list[list[str]]
    answer_index: Tensor
    answers: list[str]
    frames: list[JpegFrames]
    frame_labels: Tensor | None = None
    sample_ids: list[str] | None = None

    def __len__(self) -> int:
        return len(self.questions)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent field."""
        B = len(self.questions)
        if self.features.dim() != 3 or self.features.shape[0] != B:
            raise ValueError(f"features must be [B={B}, N, d], got {tuple(self.features.shape)}")
        N = self.features.shape[1]
        if tuple(self.timestamps.shape) != (B, N):
            raise ValueError(f"timestamps must be [B, N]=[{B}, {N}], got {tuple(self.timestamps.shape)}")
        if tuple(self.answer_index.shape) != (B,):
            raise ValueError(f"answer_index must be [B]=[{B}], got {tuple(self.answer_index.shape)}")
        if len(self.options) != B or len(self.answers) != B:
            raise ValueError(f"{B} questions but {len(self.options)} option lists and {len(self.answers)} answers")
        for b, (opts, y) in enumerate(zip(self.options, self.answer_index.tolist())):
            if opts and not 0 <= y < len(opts):
                raise ValueError(f"sample {b}: answer_index {y} for {len(opts)} options")
            if not opts and y != -1:
                raise ValueError(f"sample {b}: open-ended (no options) but answer_index {y}, expected -1")
        if len(self.frames) != B or any(len(f) != N for f in self.frames):
            raise ValueError(f"frames must hold N={N} JPEGs for each of the {B} samples, got "
                             f"{[len(f) for f in self.frames]}")
        if self.frame_labels is not None and tuple(self.frame_labels.shape) != (B, N):
            raise ValueError(f"frame_labels must be [B, N]=[{B}, {N}], got {tuple(self.frame_labels.shape)}")


class Selection(NamedTuple):
    """Which frames the student chose.

    indices: S ``[B, k]`` (long), ascending (time order).
    scores: per-frame scores in (0, 1) ``[B, N]`` that F uses (``selection.frame_scores``):
        σ(c·ẑ) on the "logit" path, s = σ(z) (Eq. 9) on the "sigmoid" path.
    soft_mask: m ``[B, N]`` of Eq. 10 in training; None for plain top-k.
    tau: Gumbel-TopK temperature used; None for plain top-k.
    keys: noise-free keys ``[B, N]`` (``selection.selection_keys``), what training sampled
        by and inference ranks by (ties in ``scores`` are not ties here).
    """

    indices: Tensor
    scores: Tensor
    soft_mask: Tensor | None = None
    tau: float | None = None
    keys: Tensor | None = None


class Evaluation(NamedTuple):
    """``HFSModel.evaluate``: the selection and the teacher's answer.

    predicted: ``[B]`` long, index of the option with the largest z; −1 for open-ended.
    option_logits: z ``[B, Cmax]`` (Eq. 16), −inf where a sample has fewer options.
    """

    selection: Selection
    predicted: Tensor
    option_logits: Tensor


def pseudo_label_loss(s: Tensor, labels: Tensor) -> Tensor:
    """Table 7 "pseudo-label" supervision: mean over frames of BCE(s_i, y_i).

    ``s [B, N]`` in (0, 1) (Eq. 9, or ``frame_scores``), ``labels [B, N]`` in [0, 1] → ``[B]``.
    """
    if s.shape != labels.shape:
        raise ValueError(f"labels must match scores {tuple(s.shape)}, got {tuple(labels.shape)}")
    return F.binary_cross_entropy(s.clamp(1e-7, 1 - 1e-7), labels.to(s), reduction="none").mean(-1)


def leave_one_out_advantage(cost: Tensor) -> Tensor:
    """Cost minus the mean cost of the other samples of the same question: ``[B, R]`` → ``[B, R]``.

    The baseline of sample r does not depend on sample r, so the score-function estimate
    stays unbiased (Kool et al., "Buy 4 REINFORCE samples, get a baseline for free!", 2019).
    """
    R = cost.shape[-1]
    if R < 2:
        raise ValueError(f"a leave-one-out baseline needs >= 2 samples, got {R}")
    return cost - (cost.sum(-1, keepdim=True) - cost) / (R - 1)


def score_function_surrogate(log_prob: Tensor, cost: Tensor) -> Tensor:
    """REINFORCE surrogate ``[B]``: mean_r A_r·(log p_r − log p_r.detach()), A = ``leave_one_out_advantage``.

    Its value is 0; its gradient is the score-function estimate of ∇ E[cost]. ``log_prob,
    cost [B, R]``; ``cost`` is detached.
    """
    adv = leave_one_out_advantage(cost.detach())
    return (adv * (log_prob - log_prob.detach())).mean(-1)


# --- the model -----------------------------------------------------------------------------


class HFSModel(nn.Module):
    """Student M_s + teacher M_t + teacher scorer MLP_t, trained end to end (Eq. 21)."""

    def __init__(self, cfg: HFSConfig, student: Student, teacher: nn.Module, teacher_scorer: nn.Module) -> None:
        super().__init__()
        self.cfg = cfg
        self.student = student
        self.teacher = teacher
        self.teacher_scorer = teacher_scorer  # MLP_t, Eq. 18

    @classmethod
    def build(
        cls, cfg: HFSConfig, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> "HFSModel":
        """Load both models (bf16 on GPU, fp32 on CPU unless ``dtype``), add fresh adapters
        and heads, and freeze what the config leaves unused (``configure_trainable``).
        Fresh weights come from torch's global RNG: seed it first."""
        from hfs.pipeline.model.student import build_student
        from hfs.pipeline.model.teachers import TeacherScorer

        device = _device(device)
        student = build_student(cfg.student, device=device, dtype=dtype)
        teacher = _teacher_from_config(cfg.teacher, device, dtype)
        scorer = TeacherScorer(teacher.hidden_size, cfg.teacher.mlp_hidden).to(device)
        return cls(cfg, student, teacher, scorer).configure_trainable()

    @property
    def device(self) -> torch.device:
        return self.student.device

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The parts that can train, by name: θ1, θ2 (student LoRA), θ3 (teacher LoRA),
        W_v, q_agg, MLP_s, MLP_t, whether or not the config trains them. Every other
        weight (both base models, the vision tower) is always frozen."""
        groups = self.student.trainable_named_parameters()
        theta3 = [p for n, p in self.teacher.named_parameters() if "lora_" in n]
        return {
            "theta1": groups[TASK_ANALYZER],
            "theta2": groups[CONTEXT_AGGREGATOR],
            "theta3": theta3,
            "W_v": groups["W_v"],
            "q_agg": groups["q_agg"],
            "MLP_s": groups["MLP_s"],
            "MLP_t": list(self.teacher_scorer.parameters()),
        }

    def trainable_parameters(self) -> dict[str, list[nn.Parameter]]:
        """What the optimiser updates, by name (``trained_groups(cfg)``); every other weight
        is frozen, so DDP needs no ``find_unused_parameters``."""
        trained = trained_groups(self.cfg)
        return {name: ps for name, ps in self.parameter_groups().items() if ps and name in trained}

    def configure_trainable(self) -> "HFSModel":
        """Freeze the parts the config does not use (``trained_groups``) and train the rest."""
        trained = trained_groups(self.cfg)
        for name, params in self.parameter_groups().items():
            for p in params:
                p.requires_grad_(name in trained)
        self.student.train_task_analyzer = "theta1" in trained
        self.student._enable_adapter_grads()
        return self

    def set_gradient_checkpointing(self, enabled: bool) -> "HFSModel":
        """Activation checkpointing on (or off) in the student's LM and the teacher's language
        model and vision tower: each decoder / vision block keeps only its input in the forward
        pass and runs again in the backward pass (transformers' own per-layer checkpointing,
        non-reentrant, RNG state preserved, so dropout draws the same masks: the loss and the
        gradients do not change, only memory for time). The vision tower runs without
        gradients in training, so there it keeps nothing either way."""
        from hfs.pipeline.model.loading import set_activation_checkpointing

        self.student.set_gradient_checkpointing(enabled)
        set_activation_checkpointing(self.teacher.hf_model, enabled)
        return self

    def check_trainable_fp32(self) -> None:
        """Raise if a trained parameter is not float32: Adam updates of ~1e-5 vanish in
        bf16 (peft below 0.19 created new adapters in the base model's dtype)."""
        bad = [f"{group} ({p.dtype})" for group, ps in self.trainable_parameters().items() for p in ps
               if p.dtype != torch.float32]
        if bad:
            raise RuntimeError(f"trainable parameters must be float32, found {', '.join(sorted(set(bad)))}; "
                               "upgrade peft to >= 0.19")

    # --- pieces of the training path ------------------------------------------------------

    def _set_objective(self, s: Tensor, soft: Tensor, timestamps: Tensor) -> SetObjectiveTerms:
        """Eqs. 11–15 on the soft mask: Rel, Cov, Red and F, each ``[B]``."""
        c = self.cfg.set_objective
        t = kernel_times(timestamps, c.time_unit).to(s.device)
        return set_objective_terms(s, soft, t, c.weights, c.tau_c, c.gamma, c.terms)

    def _teacher(self, batch: Batch, indices: Tensor, gates: Tensor, answers: bool):
        """Eq. 16: the teacher on the selected frames (time order), each gated by ``gates [B, k]``.

        Only the k selected JPEGs of each sample are decoded, here, on the teacher's device."""
        from hfs.pipeline.model.frames import decode_jpegs

        idx = indices.tolist()
        device = self.teacher.device
        images = [decode_jpegs([batch.frames[b][i] for i in rows], device=device) for b, rows in enumerate(idx)]
        times = batch.timestamps.gather(1, indices.to(batch.timestamps.device)).tolist()
        open_ended = any(not o for o in batch.options)
        return self.teacher(
            images, gates, batch.questions, batch.options, timestamps=times,
            answers=list(batch.answers) if (answers and open_ended) else None,
        )

    def _answer_ce(self, out, batch: Batch) -> Tensor:
        """Eq. 17 per sample ``[B]``: option-letter CE where there are options, the teacher's
        token CE of the reference answer for open-ended samples."""
        y = batch.answer_index.to(out.option_logits.device)
        ce = out.option_logits.new_zeros(len(batch))
        mc = (y >= 0).nonzero().squeeze(1)
        if len(mc):
            ce = ce.index_put((mc,), answer_ce(out.option_logits[mc], y[mc]))
        open_rows = (y < 0).nonzero().squeeze(1)
        if len(open_rows):
            if out.answer_loss is None or not bool(out.answer_mask[open_rows].all()):
                raise ValueError("open-ended samples need a non-empty reference answer in Batch.answers")
            ce = ce.index_put((open_rows,), out.answer_loss[open_rows].to(ce))
        return ce

    # --- the three paths --------------------------------------------------------------------

    def forward(
        self,
        batch: Batch,
        step: int,
        steps_per_epoch: int,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
    ) -> tuple[LossTerms, Selection]:
        """Training step, Eqs. 1–21. ``step``: optimiser step (τ and λ_KL schedules);
        the Gumbel noise is ``noise [B, N]`` when given (training draws it per sample,
        ``selection.per_sample_noise``), else drawn from ``generator``."""
        batch.validate()
        sel_cfg, loss_cfg = self.cfg.selection, self.cfg.losses
        out = self.student(batch.features, batch.questions, batch.options)
        tau = sel_cfg.tau(step)
        R = sel_cfg.num_samples
        g = self._training_noise(out.logits, R, generator, noise)  # [B, R, N]
        with _fp32(out.logits):  # selection, F and the KL in float32 (the teacher keeps autocast)
            keys = selection_keys(out.logits, sel_cfg.score_path, sel_cfg.logit_scale)
            s = frame_scores(keys, sel_cfg.score_path)
            mask = gumbel_topk_keys(keys, sel_cfg.k, tau, hard=sel_cfg.straight_through,
                                    relaxation=sel_cfg.relaxation, noise=g[:, 0])
            f = self._set_objective(s, mask.soft, batch.timestamps)
            sep = separation_loss(out.task_queries.float())
        kl = None
        if loss_cfg.supervision == "pseudo_label":
            if batch.frame_labels is None:
                raise ValueError("losses.supervision='pseudo_label' needs Batch.frame_labels")
            with _fp32(s):
                ce = pseudo_label_loss(s, batch.frame_labels.to(s.device))
        elif sel_cfg.estimator == "score_function":
            ce, kl = self._score_function_ce(batch, keys, g)
        else:
            gates = mask.hard.gather(1, mask.indices)  # 1.0 forward, ∂/∂m backward
            t_out = self._teacher(batch, mask.indices, gates, answers=True)
            ce = self._answer_ce(t_out, batch)
            if loss_cfg.use_kl:
                kl = self._kl(t_out, keys, mask.indices)
        lam_kl = lambda_kl(step, steps_per_epoch, loss_cfg.lambda_kl_start, loss_cfg.lambda_kl_end) if kl is not None else 0.0
        lam_set = loss_cfg.lambda_set if loss_cfg.use_set else 0.0
        lam_sep = loss_cfg.lambda_sep if loss_cfg.use_sep else 0.0
        total = total_loss(ce, kl, f.f, sep, lam_kl, lam_set, lam_sep)
        terms = LossTerms(
            total=total, ce=ce, kl=kl, set_objective=f.f, relevance=f.relevance,
            coverage=f.coverage, redundancy=f.redundancy, sep=sep,
            lambda_kl=lam_kl, lambda_set=lam_set, lambda_sep=lam_sep,
        )
        return terms, Selection(mask.indices, s, mask.soft, tau, keys)

    def _training_noise(self, logits: Tensor, samples: int, generator, noise: Tensor | None) -> Tensor:
        """Gumbel noise ``[B, samples, N]``: ``noise`` (``[B, N]`` for one sample) or drawn from ``generator``."""
        B, N = logits.shape
        if noise is None:
            return gumbel_noise((B, samples, N), generator=generator, device=logits.device)
        noise = noise.to(logits.device, torch.float32)
        if noise.dim() == 2:
            noise = noise.unsqueeze(1)
        if tuple(noise.shape) != (B, samples, N):
            raise ValueError(f"noise must be [B, N] or [B, samples, N] = [{B}, {samples}, {N}] "
                             f"(selection.samples), got {tuple(noise.shape)}")
        return noise

    def _kl(self, t_out, keys: Tensor, indices: Tensor) -> Tensor:
        """Eqs. 18–20 per row: KL(softmax(MLP_t) ‖ softmax(x_S/τ_d)), x = the frame scores F
        uses (``losses.kl_on = "scores"``: s_i on the paper's path, σ(c·ẑ_i) on the logit
        path) or the noise-free keys ("keys")."""
        z_t = self.teacher_scorer(t_out.frame_hidden, t_out.context_hidden)  # Eq. 18
        with _fp32(keys):
            student = keys.gather(1, indices)
            if self.cfg.losses.kl_on == "scores":
                student = frame_scores(student, self.cfg.selection.score_path)
            return kl_from_logits(z_t.float(), student, self.cfg.losses.tau_d)  # Eqs. 19–20

    def _score_function_ce(self, batch: Batch, keys: Tensor, g: Tensor) -> tuple[Tensor, Tensor | None]:
        """Answer CE ``[B]`` with a score-function gradient (``selection.estimator``).

        R = ``g.shape[1]`` Gumbel-top-k samples per question (Plackett–Luce samples without
        replacement); the teacher answers each (gates 1.0, no pathwise gradient); the value
        is the mean CE over samples, the student's gradient that of
        ``score_function_surrogate`` on the ordered PL log-probability of each sample. The
        KL (if on) is the mean over samples."""
        B, R, N = g.shape
        k = self.cfg.selection.k
        with _fp32(keys):
            perturbed = keys.detach().unsqueeze(1) + g  # [B, R, N]
            order = perturbed.topk(k, dim=-1).indices  # drawn order, [B, R, k]
            rows = keys.unsqueeze(1).expand(B, R, N).reshape(B * R, N)
            log_prob = plackett_luce_log_prob(rows, order.reshape(B * R, k)).view(B, R)
        indices = order.sort(dim=-1).values.reshape(B * R, k)
        many = _repeat_batch(batch, R)
        t_out = self._teacher(many, indices, torch.ones(B * R, k, device=self.device), answers=True)
        ce = self._answer_ce(t_out, many).view(B, R)
        kl = None
        if self.cfg.losses.use_kl:
            kl = self._kl(t_out, keys.repeat_interleave(R, 0), indices).view(B, R).mean(-1)
        with _fp32(log_prob):
            ce = ce.float().mean(-1) + score_function_surrogate(log_prob, ce.float())
        return ce, kl

    @torch.no_grad()
    def select(
        self,
        features: Tensor,
        questions: str | Sequence[str],
        options: Sequence[str] | Sequence[Sequence[str]] | None = None,
        k: int | None = None,
    ) -> Selection:
        """Inference selection: the k frames with the largest noise-free keys (what training
        sampled by; on the paper's path log s_i, i.e. the largest s_i).

        ``features [B, N, clip_dim]`` with B questions and option lists, or one video
        ``[N, clip_dim]`` with one question string and its option list. k defaults to
        ``selection.k``.
        """
        if isinstance(questions, str):
            if features.dim() != 2:
                raise ValueError(f"one question needs features [N, d], got {tuple(features.shape)}")
            features, questions, options = features.unsqueeze(0), [questions], [list(options or [])]
        options = [list(o or []) for o in (options or [[] for _ in questions])]
        sel_cfg = self.cfg.selection
        with _eval_mode(self.student):  # only the student runs: the teacher's modules stay as they are
            z = self.student(features, list(questions), options).logits
        with _fp32(z):
            keys = selection_keys(z, sel_cfg.score_path, sel_cfg.logit_scale)
            s = frame_scores(keys, sel_cfg.score_path)
        return Selection(topk_select(keys, k or sel_cfg.k), s, keys=keys)

    @torch.no_grad()
    def evaluate(self, batch: Batch) -> Evaluation:
        """Top-k of the noise-free keys (``select``) and the teacher's answer (argmax of z over the options)."""
        batch.validate()
        selection = self.select(batch.features, batch.questions, batch.options)
        gates = torch.ones(selection.indices.shape, device=self.device)
        with _eval_mode(self):
            out = self._teacher(batch, selection.indices, gates, answers=False)
        z = out.option_logits
        has_options = torch.tensor([bool(o) for o in batch.options], device=z.device)
        predicted = z.argmax(-1) if z.shape[1] else torch.zeros(len(batch), dtype=torch.long, device=z.device)
        predicted = torch.where(has_options, predicted, torch.full_like(predicted, -1))
        return Evaluation(selection, predicted, z)

    # --- checkpoints --------------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write ``hfs_config.json``, ``student/`` (see ``save_student``), ``teacher_lora/``
        (θ3, peft) and ``teacher_scorer.safetensors`` (MLP_t). Base weights are not written."""
        from hfs.pipeline.model.student import save_student
        from hfs.pipeline.model.teachers import save_scorer

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "hfs_config.json").write_text(json.dumps(self.cfg.to_dict(), indent=2))
        save_student(self.student, directory / "student")
        if self.cfg.teacher.lora_r > 0:
            self.teacher.save_adapter(directory / "teacher_lora")
        save_scorer(self.teacher_scorer, directory / "teacher_scorer.safetensors")
        return directory

    @classmethod
    def load(
        cls, directory: str | Path, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> "HFSModel":
        """Load what ``save`` wrote, onto the base models named in its config; every config
        field that shapes the model (``teacher.max_tiles`` included) comes back as saved."""
        from hfs.pipeline.model.loading import ModelLoadError
        from hfs.pipeline.model.student import load_student
        from hfs.pipeline.model.teachers import load_scorer

        directory = Path(directory)
        cfg = read_saved_config(directory)
        device = _device(device)
        student = load_student(directory / "student", device=device, dtype=dtype)
        if student.cfg != cfg.student:
            raise ModelLoadError(f"{directory}: student/student.json and hfs_config.json disagree about the student")
        adapter = directory / "teacher_lora" if cfg.teacher.lora_r > 0 else None
        teacher = _teacher_from_config(cfg.teacher, device, dtype, adapter=adapter)
        scorer = load_scorer(directory / "teacher_scorer.safetensors", device=device)
        return cls(cfg, student, teacher, scorer).configure_trainable()


def saved_before_score_path(data: dict[str, Any], where: str = "saved config") -> dict[str, Any]:
    """A saved config dict as it was trained: one written before ``selection.score_path``
    existed trained on the paper's σ path with straight-through, so it gets ``score_path =
    "sigmoid"`` and ``estimator = "straight_through"`` (logged)."""
    selection = data.get("selection")
    if isinstance(selection, dict) and "score_path" not in selection:
        log.warning("%s predates selection.score_path: loading it with the paper's sigmoid score path "
                    "and the straight-through estimator", where)
        data = {**data, "selection": {"estimator": "straight_through", **selection, "score_path": "sigmoid"}}
    return data


def read_saved_config(directory: str | Path) -> HFSConfig:
    """The ``HFSConfig`` a saved model was made with (``hfs_config.json``); see
    ``saved_before_score_path`` for configs written before the score path option."""
    from hfs.pipeline.model.loading import ModelLoadError

    config_file = Path(directory) / "hfs_config.json"
    if not config_file.is_file():
        raise ModelLoadError(f"{directory} is not a saved HFS model: hfs_config.json is missing")
    try:
        return HFSConfig.from_dict(saved_before_score_path(json.loads(config_file.read_text()), str(config_file)))
    except (ValueError, TypeError) as err:
        raise ModelLoadError(f"{config_file}: {err}") from err


def trained_groups(cfg: HFSConfig) -> set[str]:
    """Which parameter groups the config trains: everything the forward pass uses.

    θ1 only with task queries (K > 0 and no static query); θ3 and MLP_t only when the
    teacher runs in training (answer supervision), MLP_t only with the KL term, θ3 only
    with a teacher adapter (lora_r > 0).
    """
    groups = {"theta2", "W_v", "q_agg", "MLP_s"}
    if cfg.student.num_task_queries > 0:
        groups.add("theta1")
    if cfg.losses.supervision == "answer":
        if cfg.teacher.lora_r > 0:
            groups.add("theta3")
        if cfg.losses.use_kl:
            groups.add("MLP_t")
    return groups


def _device(device: torch.device | str | None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _teacher_from_config(t: TeacherConfig, device: torch.device, dtype: torch.dtype | None, adapter=None):
    """The teacher a ``TeacherConfig`` describes, fresh LoRA or the one saved in ``adapter``."""
    from hfs.pipeline.model.teachers import load_teacher

    teacher = load_teacher(
        t.kind, t.name_or_path, device=device, dtype=dtype, lora_r=t.lora_r, lora_alpha=t.lora_alpha,
        lora_dropout=t.lora_dropout, adapter=adapter,
    )
    teacher.max_tiles = t.max_tiles
    return teacher


def _fp32(t: Tensor):
    """Autocast off on ``t``'s device: what runs inside stays in the inputs' float32."""
    return torch.autocast(device_type=t.device.type, enabled=False)


def _repeat_batch(batch: Batch, r: int) -> Batch:
    """Each question of ``batch`` r times in a row (row b·r + j is question b): ``[B·r, ...]``."""
    def rows(xs):
        return None if xs is None else [x for x in xs for _ in range(r)]

    def tensor(x):
        return None if x is None else x.repeat_interleave(r, 0)

    return replace(batch, features=tensor(batch.features), timestamps=tensor(batch.timestamps),
                   questions=rows(batch.questions), options=rows(batch.options),
                   answer_index=tensor(batch.answer_index), answers=rows(batch.answers), frames=rows(batch.frames),
                   frame_labels=tensor(batch.frame_labels), sample_ids=rows(batch.sample_ids))


class _eval_mode:
    """Context manager: ``module.eval()`` inside, the previous train/eval mode restored after."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def __enter__(self) -> None:
        self.was_training = self.module.training
        if self.was_training:  # .eval() walks every submodule: skip it when there is nothing to change
            self.module.eval()

    def __exit__(self, *exc) -> None:
        if self.was_training:
            self.module.train()
