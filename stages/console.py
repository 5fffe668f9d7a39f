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
