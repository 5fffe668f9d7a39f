"""The terminal output of the verbs: one rich console and an error line.

Errors are printed without wrapping (`soft_wrap`), so a long path stays one
piece a user can copy, and as plain text, so brackets in a file name or a
JSON parser's message are not taken for rich markup.
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

console = Console()


def error(message: str) -> None:
    """Print `error: <message>` in red, unwrapped and without markup."""
    console.print(Text.assemble(("error:", "bold red"), " ", str(message)), soft_wrap=True)


def rank_error(message: str, rank: int | None = None) -> None:
    """``error`` on the first process of a torchrun job (or of a plain run); the others log the
    message with their rank (``rank`` default: the ``RANK`` torchrun set)."""
    import logging
    import os

    rank = int(os.environ.get("RANK", 0)) if rank is None else rank
    if rank == 0:
        error(message)
    else:
        logging.getLogger("hfs").error("rank %d: %s", rank, message)


class ProgressBar:
    """A rich progress bar (count, bar, ETA) that does nothing when not ``enabled``; extra text
    ``fields`` (e.g. ``loss``) are shown after the count and set through ``update``."""

    def __init__(self, label: str, total: int, completed: int = 0, enabled: bool = True, **fields: str) -> None:
        self.enabled = enabled and total > 0
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            columns = [TextColumn(label), BarColumn(), MofNCompleteColumn()]
            columns += [TextColumn(f"{name} {{task.fields[{name}]}}") for name in fields]
            self.progress = Progress(*columns, TimeRemainingColumn(), console=console)
            self.task = self.progress.add_task(label, total=total, completed=completed, **fields)

    def __enter__(self) -> "ProgressBar":
        if self.enabled:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.progress.stop()

    def advance(self, n: int = 1) -> None:
        if self.enabled:
            self.progress.advance(self.task, n)

    def update(self, completed: int, **fields: str) -> None:
        if self.enabled:
            self.progress.update(self.task, completed=completed, **fields)
