"""The hfs library: decoding, CLIP encoding, extraction, the student, selection,
the set objective, teachers and losses.

The paper's equations are importable from here (`from hfs.pipeline import
gumbel_topk`). Note that `hfs.pipeline.set_objective` is the function of
Eq. 15; its module is `hfs.pipeline.set_objective` in `sys.modules`.
"""

from hfs.pipeline.losses import (
    LossTerms,
    answer_ce,
    kl_from_logits,
    kl_teacher_student,
    separation_loss,
    student_distribution,
    total_loss,
)
from hfs.pipeline.queries import gather_task_queries, task_query_positions
from hfs.pipeline.schedules import gumbel_tau, lambda_kl
from hfs.pipeline.selection import GumbelTopK, SelectionConfig, gumbel_topk, topk_select
from hfs.pipeline.set_objective import (
    SetObjectiveConfig,
    coverage,
    greedy_set_selection,
    redundancy,
    relevance,
    set_objective,
    temporal_kernel,
)

__all__ = [
    "task_query_positions", "gather_task_queries", "separation_loss",
    "gumbel_topk", "topk_select", "GumbelTopK", "SelectionConfig",
    "relevance", "coverage", "temporal_kernel", "redundancy", "set_objective", "SetObjectiveConfig",
    "greedy_set_selection", "answer_ce", "student_distribution", "kl_teacher_student", "kl_from_logits",
    "total_loss", "LossTerms", "gumbel_tau", "lambda_kl",
]
