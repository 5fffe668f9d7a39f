"""The trained selectors: ``hfs`` (the paper's inference) and ``hfs-set`` (our extension)."""

from __future__ import annotations

from hfs.pipeline.evaluation.selectors import Choice, Query, SelectorContext, register_selector


def student_scores(query: Query, ctx: SelectorContext):
    """s_i of the run's student for one question (Eqs. 1–9) → ``[N]`` float32 tensor on the CPU."""
    import torch  # here, so that listing the selectors (``hfs --help``) does not load torch

    model = ctx.model
    features = torch.from_numpy(query.features).to(model.device)
    selection = model.select(features, query.question, list(query.options), k=ctx.k)
    return selection.scores[0].float().cpu()


@register_selector("hfs", needs_run=True)
def hfs(query: Query, ctx: SelectorContext) -> Choice:
    """The k frames with the largest s_i, no noise (paper, inference)."""
    s = student_scores(query, ctx)
    top = s.topk(ctx.k).indices.sort().values
    return Choice(top.tolist(), s.tolist())


@register_selector("hfs-set", needs_run=True)
def hfs_set(query: Query, ctx: SelectorContext) -> Choice:
    """Greedy maximisation of F (Eq. 15) over hard masks on the student's s_i, with the run's
    set-objective config (weights, τ_c, γ, time unit, terms)."""
    import torch

    from hfs.pipeline.model.set_objective import greedy_set_selection, kernel_times

    s = student_scores(query, ctx)
    cfg = ctx.model.cfg.set_objective
    t = kernel_times(torch.from_numpy(query.timestamps).float(), cfg.time_unit)
    indices = greedy_set_selection(s.unsqueeze(0), t, ctx.k, cfg)[0]
    return Choice(indices.tolist(), s.tolist())
