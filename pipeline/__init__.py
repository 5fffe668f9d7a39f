"""The hfs library: decoding, CLIP encoding, extraction, the student, selection,
the set objective, teachers and losses.

The paper's equations are importable from here (`from hfs.pipeline import
gumbel_topk`). They are loaded on first use (PEP 562 `__getattr__`): they
need torch, and a process that only decodes or extracts
(`hfs.pipeline.decode`, `hfs.pipeline.extract`, the decode subprocess) must
not pay for importing it. Note that `hfs.pipeline.set_objective` is the
function of Eq. 15; its module is `hfs.pipeline.set_objective` in `sys.modules`.
"""

from __future__ import annotations

import importlib
import sys
import types

_EXPORTS = {
    "losses": ("LossTerms", "answer_ce", "kl_from_logits", "kl_teacher_student", "separation_loss",
               "student_distribution", "total_loss"),
    "queries": ("gather_task_queries", "task_query_positions"),
    "schedules": ("gumbel_tau", "lambda_kl"),
    "selection": ("GumbelTopK", "SelectionConfig", "gumbel_topk", "topk_select"),
    "set_objective": ("SetObjectiveConfig", "coverage", "greedy_set_selection", "redundancy", "relevance",
                      "set_objective", "temporal_kernel"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "task_query_positions", "gather_task_queries", "separation_loss",
    "gumbel_topk", "topk_select", "GumbelTopK", "SelectionConfig",
    "relevance", "coverage", "temporal_kernel", "redundancy", "set_objective", "SetObjectiveConfig",
    "greedy_set_selection", "answer_ce", "student_distribution", "kl_teacher_student", "kl_from_logits",
    "total_loss", "LossTerms", "gumbel_tau", "lambda_kl",
]


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """The import system binds a submodule to its parent's attribute of the same name when it
    is first imported; `set_objective` names the Eq. 15 function here, not its module."""

    def __setattr__(self, name: str, value) -> None:
        if name in _MODULE_OF and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
