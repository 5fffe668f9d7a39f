"""`hfs.pipeline` imports light: decoding and extraction do not pay for torch at import."""

from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_decode_and_extract_import_no_torch():
    code = ("import sys, hfs.pipeline, hfs.pipeline.decode, hfs.pipeline.extract; "
            "print([m for m in ('torch', 'transformers', 'open_clip', 'peft') if m in sys.modules])")
    assert _run(code) == "[]"


def test_the_equations_are_still_importable_from_the_package():
    code = ("import sys, types; import hfs.pipeline.set_objective as m; "
            "from hfs.pipeline import gumbel_topk, set_objective, LossTerms, lambda_kl, decode; "
            "import hfs.pipeline as p; "
            "print(callable(gumbel_topk), isinstance(set_objective, types.FunctionType), "
            "p.set_objective is set_objective, isinstance(sys.modules['hfs.pipeline.set_objective'], types.ModuleType), "
            "decode.__name__, sorted(set(p.__all__) - set(dir(p))))")
    assert _run(code) == "True True True True hfs.pipeline.decode []"
