"""The trained selectors: ``hfs`` (the paper's inference) and ``hfs-set`` (our extension)."""

from __future__ import annotations

from hfs.pipeline.evaluation.selectors import Choice, Query, SelectorContext, register_selector


def student_selection(query: Query, ctx: SelectorContext):
    """The run's student on one question (Eqs. 1–10 without noise) → ``(indices [k], scores [N])``:
    the top-k of the noise-free keys training sampled by, and the per-frame scores F uses
    (``Selection.scores``), float32 on the CPU."""
    import torch  # here, so that listing the selectors (``hfs --help``) does not load torch

    model = ctx.model
    features = torch.from_numpy(query.features).to(model.device)
    selection = model.select(features, query.question, list(query.options), k=ctx.k)
    return selection.indices[0].cpu(), selection.scores[0].float().cpu()


@register_selector("hfs", needs_run=True)
def hfs(query: Query, ctx: SelectorContext) -> Choice:
    """The k frames with the largest noise-free keys, the quantity training sampled by (paper:
    the largest s_i)."""
    top, s = student_selection(query, ctx)
    return Choice(top.tolist(), s.tolist())


@register_selector("hfs-set", needs_run=True)
def hfs_set(query: Query, ctx: SelectorContext) -> Choice:
    """Greedy maximisation of F (Eq. 15) over hard masks on the scores training's F used, with
    the run's set-objective config (weights, τ_c, γ, time unit, terms)."""
    import torch

    from hfs.pipeline.model.set_objective import greedy_set_selection, kernel_times

    _, s = student_selection(query, ctx)  # σ(c·ẑ) on the logit path, s_i = σ(z_i) on the paper's
    cfg = ctx.model.cfg.set_objective
    t = kernel_times(torch.from_numpy(query.timestamps).float(), cfg.time_unit)
    indices = greedy_set_selection(s.unsqueeze(0), t, ctx.k, cfg)[0]
    return Choice(indices.tolist(), s.tolist())
