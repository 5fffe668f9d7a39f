"""The trained selectors: ``hfs`` (the paper's inference) and ``hfs-set`` (our extension).

Both also have a batched form (``register_batch``): the student scores several questions in
one forward pass. Its rows are right-padded and causal, so a question's scores do not depend
on what it is batched with (``pipeline/model/student.py``) beyond float rounding: in fp32 the
scores agree with one question at a time to about 1e-6, in bf16 to about 1e-3, where a near-tie
can swap a frame.
"""

from __future__ import annotations

from hfs.pipeline.evaluation.selectors import Choice, Query, SelectorContext, register_batch, register_selector


def student_selection(query: Query, ctx: SelectorContext):
    """The run's student on one question (Eqs. 1–10 without noise) → ``(indices [k], scores [N])``:
    the top-k of the noise-free keys training sampled by, and the per-frame scores F uses
    (``Selection.scores``), float32 on the CPU."""
    return student_selections([query], ctx)[0]


def student_selections(queries: list[Query], ctx: SelectorContext) -> list[tuple]:
    """``student_selection`` of several questions, one student forward pass per run of
    consecutive questions with the same number of frames N (a video's N is the cache's)."""
    import numpy as np
    import torch  # here, so that listing the selectors (``hfs --help``) does not load torch

    model = ctx.model
    out: list[tuple] = []
    start = 0
    while start < len(queries):
        n = len(queries[start].features)
        end = start + 1
        while end < len(queries) and len(queries[end].features) == n:
            end += 1
        group = queries[start:end]
        features = torch.from_numpy(np.stack([q.features for q in group])).to(model.device)
        selection = model.select(features, [q.question for q in group], [list(q.options) for q in group], k=ctx.k)
        out += [(selection.indices[b].cpu(), selection.scores[b].float().cpu()) for b in range(len(group))]
        start = end
    return out


@register_selector("hfs", needs_run=True)
def hfs(query: Query, ctx: SelectorContext) -> Choice:
    """The k frames with the largest noise-free keys, the quantity training sampled by (paper:
    the largest s_i)."""
    return hfs_batch([query], ctx)[0]


@register_batch("hfs")
def hfs_batch(queries: list[Query], ctx: SelectorContext) -> list[Choice]:
    return [Choice(top.tolist(), s.tolist()) for top, s in student_selections(queries, ctx)]


@register_selector("hfs-set", needs_run=True)
def hfs_set(query: Query, ctx: SelectorContext) -> Choice:
    """Greedy maximisation of F (Eq. 15) over hard masks on the scores training's F used, with
    the run's set-objective config (weights, τ_c, γ, time unit, terms)."""
    return hfs_set_batch([query], ctx)[0]


@register_batch("hfs-set")
def hfs_set_batch(queries: list[Query], ctx: SelectorContext) -> list[Choice]:
    import torch

    from hfs.pipeline.model.set_objective import greedy_set_selection, kernel_times

    cfg = ctx.model.cfg.set_objective
    choices = []
    for query, (_, s) in zip(queries, student_selections(queries, ctx)):
        # s: σ(c·ẑ) on the logit path, s_i = σ(z_i) on the paper's; the greedy pass is per question
        t = kernel_times(torch.from_numpy(query.timestamps).float(), cfg.time_unit)
        indices = greedy_set_selection(s.unsqueeze(0), t, ctx.k, cfg)[0]
        choices.append(Choice(indices.tolist(), s.tolist()))
    return choices
