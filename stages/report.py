"""`hfs report`: selections (and predictions, ground truth, a run's curves) → one self-contained HTML file.

Reads `hfs select` JSONL files (one selector each) and/or an `hfs evaluate`
`predictions.jsonl`, the question texts from a benchmark folder or manifests when
given, the synthetic task's ground truth and a training run's `metrics.jsonl`, and
writes the page `pipeline/evaluation/report/` renders. A missing or garbled input is one
`error:` line naming the file (exit status 2).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence

from hfs.stages.console import console, error
from hfs.stages.options import require_cache_folder

log = logging.getLogger(__name__)


def run(cache: Path, out: Path, selections: Sequence[Path] = (), predictions: Optional[Path] = None,
        run_dir: Optional[Path] = None, bench: Optional[str] = None, data: Optional[Path] = None,
        manifests: Sequence[Path] = (), video_root: Optional[Path] = None, truth: Optional[Path] = None,
        max_questions: int = 50, title: Optional[str] = None) -> int:
    """Write the report; returns the exit status (0 written, 2 usage or input error)."""
    from hfs.cache import CacheError
    from hfs.manifests import ManifestError, read_manifests
    from hfs.manifests.benchmarks import BenchmarkError, get_benchmark
    from hfs.pipeline.evaluation.recall import TruthError, read_ground_truth
    from hfs.pipeline.evaluation.report.inputs import ReportError, read_predictions, read_run, read_selection_files
    from hfs.pipeline.evaluation.report.page import render_report

    try:
        if not selections and predictions is None:
            raise ReportError("nothing to report: give --selections FILE (repeatable) and/or --predictions FILE")
        if bench and data is None:
            raise ReportError(f"--bench {bench} needs --data DIR (the benchmark's files as published)")
        if data is not None and not bench:
            raise ReportError("--data needs --bench NAME (which benchmark the folder holds)")
        require_cache_folder(cache)
        selection_records = read_selection_files(selections) if selections else []
        prediction_records = read_predictions(predictions) if predictions is not None else []
        questions = {}
        if bench:
            try:
                benchmark = get_benchmark(bench)
            except KeyError as err:
                raise BenchmarkError(f"--bench: {err.args[0]}") from None
            questions.update({s.sample_id: s for s in benchmark.read(data).samples})
        if manifests:
            manifest = read_manifests([str(m) for m in manifests], video_root=str(video_root) if video_root else None)
            questions.update({s.sample_id: s for s in manifest.samples})
        summary = render_report(
            out, cache, selections=selection_records, predictions=prediction_records, questions=questions,
            truth=read_ground_truth(truth) if truth is not None else None,
            run=read_run(run_dir) if run_dir is not None else None,
            title=title or "hfs report: frame selections",
            sources=[str(p) for p in [*selections, *([predictions] if predictions else [])]],
            max_questions=max_questions,
        )
    except (ReportError, TruthError, CacheError, ManifestError, BenchmarkError) as err:
        error(str(err))
        return 2
    except OSError as err:  # an unreadable input or an --out that cannot be written; the message names the path
        error(f"{err.filename or out}: {err.strerror or err}")
        return 2
    shown = str(summary.questions_total)
    if summary.questions_shown < summary.questions_total:
        shown = f"{summary.questions_shown} of {shown}"
    console.print(f"report: {shown} questions, {len(summary.selectors)} selectors "
                  f"({', '.join(summary.selectors)}), {summary.bytes / 1e6:.1f} MB")
    console.print(str(summary.path), soft_wrap=True)
    return 0
