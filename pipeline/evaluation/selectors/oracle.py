"""``oracle``: a synthetic task's answer-bearing frames, read from its ground truth (a ceiling)."""

from __future__ import annotations

from hfs.pipeline.evaluation.recall import oracle_indices
from hfs.pipeline.evaluation.selectors import Choice, Query, SelectorContext, SelectorError, register_selector


@register_selector("oracle")
def oracle(query: Query, ctx: SelectorContext) -> Choice:
    """The question's answer-bearing grid frames from the ground truth (``ctx.truth``), filled up
    to k with segment centres (``recall.oracle_indices``): what a perfect selector would pick."""
    truth = ctx.ground_truth.get(query.sample_id)
    if truth is None:
        raise SelectorError(f"oracle: {query.sample_id} is not in the ground truth")
    if truth.grid_n != len(query.features):
        raise SelectorError(f"oracle: the ground truth of {query.sample_id} indexes a {truth.grid_n}-frame grid, "
                            f"the cache holds {len(query.features)} frames")
    return Choice(oracle_indices(truth, ctx.k))
