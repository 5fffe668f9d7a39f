"""The rooms of `pipeline/` and the one-way rule between them (DESIGN.md, `pipeline/__init__.py`).

Every `import` / `from ... import` in the library is read with `ast` (those inside functions
too): a room may import only the rooms the rule allows, `cache/` and `manifests/` import no
room, and only `stages/` imports `demo/`. The decode child and Stage 1 stay free of torch.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROOMS = ("decode", "extract", "model", "train", "evaluation", "demo")
ALLOWED = {
    "decode": set(),
    "extract": {"decode"},
    "model": set(),
    "train": {"model"},
    "evaluation": {"decode", "extract", "model", "train"},
    "demo": set(ROOMS),
}
"""room → the other rooms it may import (each may import itself, `hfs.cache` and `hfs.manifests`)."""


def imported_modules(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, absolute dotted name) of every hfs import in a file under `root`; relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: the folder it names, as hfs.<folder>.<...>
                base = path.parent
                for _ in range(node.level - 1):
                    base = base.parent
                module = ".".join(("hfs", *base.relative_to(root).parts, *([module] if module else [])))
            out += [(node.lineno, f"{module}.{a.name}") for a in node.names]
    return [(line, name) for line, name in out if name.startswith("hfs.")]


def room_of(dotted: str) -> str | None:
    """"hfs.pipeline.model.student.X" → "model"; None outside pipeline's rooms."""
    parts = dotted.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["hfs", "pipeline"] and parts[2] in ROOMS else None


def violations(root: Path) -> list[str]:
    """Every file or import in `root`'s pipeline/, cache/ and manifests/ that breaks the rule."""
    bad = []
    for path in sorted((root / "pipeline").rglob("*.py")):
        rel = path.relative_to(root / "pipeline").parts
        if len(rel) == 1:
            if rel[0] != "__init__.py":
                bad.append(f"{path.relative_to(root)}: a module at the top of pipeline/ (put it in a room)")
            continue
        room = rel[0]
        if room not in ROOMS:
            bad.append(f"{path.relative_to(root)}: {room}/ is not a room ({', '.join(ROOMS)})")
            continue
        for line, name in imported_modules(path, root):
            if name.startswith("hfs.stages"):
                bad.append(f"{path.relative_to(root)}:{line}: imports {name} (the library never imports stages/)")
            other = room_of(name)
            if other and other != room and other not in ALLOWED[room]:
                bad.append(f"{path.relative_to(root)}:{line}: {room}/ imports {name} ({room}/ may import "
                           f"{', '.join(sorted(ALLOWED[room])) or 'no other room'})")
    for folder in ("cache", "manifests"):
        for path in sorted((root / folder).rglob("*.py")):
            for line, name in imported_modules(path, root):
                if name.startswith(("hfs.pipeline", "hfs.stages")):
                    bad.append(f"{path.relative_to(root)}:{line}: {folder}/ imports {name}")
    return bad


def test_the_rooms_keep_the_one_way_rule():
    assert violations(ROOT) == []


def test_pipeline_has_only_rooms_at_its_top():
    top = sorted(p.name for p in (ROOT / "pipeline").iterdir() if not p.name.startswith(("__pycache__", ".")))
    assert top == sorted(["__init__.py", *ROOMS])


@pytest.mark.parametrize("room, added, found", [
    ("model", "from hfs.pipeline.evaluation.recall import event_recall", "model/ imports hfs.pipeline.evaluation.recall"),
    ("evaluation", "from hfs.pipeline.demo.task import make_task", "evaluation/ imports hfs.pipeline.demo.task"),
    ("train", "def _added():\n    from hfs.pipeline.extract.encoder import load_clip",
     "train/ imports hfs.pipeline.extract.encoder"),
    ("decode", "from ..model import losses", "decode/ imports hfs.pipeline.model.losses"),
    ("extract", "import hfs.stages.cli", "imports hfs.stages.cli"),
])
def test_a_forbidden_import_is_reported(tmp_path, room, added, found):
    """The check can fail: a copy of the library with one forbidden import added to a room."""
    for folder in ("pipeline", "cache", "manifests"):
        for path in (ROOT / folder).rglob("*.py"):
            target = tmp_path / path.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    victim = next(p for p in sorted((tmp_path / "pipeline" / room).glob("*.py")) if p.name != "__init__.py")
    victim.write_text(victim.read_text(encoding="utf-8") + "\n\n" + added + "\n", encoding="utf-8")
    found_now = violations(tmp_path)
    assert any(found in v for v in found_now), found_now


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_decode_and_extract_import_no_torch():
    code = ("import sys, hfs.pipeline, hfs.pipeline.decode, hfs.pipeline.decode.child, hfs.pipeline.extract.run, "
            "hfs.pipeline.evaluation.recall, hfs.pipeline.train.run_folder; "
            "print([m for m in ('torch', 'transformers', 'open_clip', 'peft') if m in sys.modules])")
    assert _run(code) == "[]"
