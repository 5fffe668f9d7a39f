"""`hfs select`: k frames per question from the cache, with any selector, into a JSONL file.

Questions come from a manifest (any format `hfs extract` reads) or a benchmark in its
published layout; their videos must be in the cache (`hfs extract` first). One line per
question (layout in the README); questions that cannot be selected for are counted by
reason. The output is written under a temporary name and renamed; a rerun keeps the lines
already written and selects only the rest.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Optional, Sequence

from hfs.stages.console import ProgressBar, console, error
from hfs.stages.options import require_cache_folder

log = logging.getLogger(__name__)


def run(cache: Path, out: Path, selector: str, manifests: Sequence[Path] = (), bench: Optional[str] = None,
        data: Optional[Path] = None, run_dir: Optional[Path] = None, k: int = 16, seed: int = 0,
        video_root: Optional[Path] = None, device: str = "cpu", progress: bool = True) -> int:
    """Select; returns the exit status (0 done, 2 usage or input error)."""
    from hfs.cache import CacheError, FeatureCache
    from hfs.cache.format import atomic_write_bytes
    from hfs.manifests import ManifestError, read_manifests
    from hfs.manifests.benchmarks import BenchmarkError, get_benchmark
    from hfs.pipeline.evaluation.predictions import cache_skip_reason, query_of, selection_record
    from hfs.pipeline.evaluation.selectors import (
        SelectorContext,
        SelectorError,
        check_choice,
        get_selector,
        selector_needs_run,
    )
    from hfs.pipeline.extract.encoder import EncoderError
    from hfs.pipeline.model.loading import ModelLoadError

    try:
        if bool(manifests) == bool(bench):
            raise SelectorError("give the questions with --manifest FILE or with --bench NAME --data DIR (one of them)")
        if bench and data is None:
            raise SelectorError(f"--bench {bench} needs --data DIR (the benchmark's files as published)")
        fn = get_selector(selector)
        if selector_needs_run(selector) and run_dir is None:
            raise SelectorError(f"selector {selector} needs a trained run: pass --run runs/NAME")
        require_cache_folder(cache)
        feature_cache = FeatureCache(cache)
        skipped: Counter = Counter()  # questions not selected for, by reason (the reader's too)
        if bench:
            try:
                benchmark = get_benchmark(bench)
            except KeyError as err:
                raise BenchmarkError(f"--bench: {err.args[0]}") from None
            read = benchmark.read(data)
            samples = read.samples
            skipped.update(read.skip_counts())
        else:
            manifest = read_manifests([str(m) for m in manifests], video_root=str(video_root) if video_root else None)
            samples = manifest.samples
            skipped.update(bad.kind for bad in manifest.bad)
        ctx = SelectorContext(k=k, seed=seed, run=run_dir, cache_config=feature_cache.config, device=device,
                              cache=feature_cache)
        out = Path(out)
        done = _read_done(out, selector, k)
        lines = [json.dumps(r) for r in done.values()]
        with ProgressBar("select", len(samples), enabled=progress) as bar:
            for sample in samples:
                bar.advance()
                if sample.sample_id in done:
                    continue
                reason = cache_skip_reason(sample, feature_cache, need_options=False)
                if reason is not None:
                    skipped[reason] += 1
                    continue
                query = query_of(sample, feature_cache)
                choice = check_choice(fn(query, ctx), len(query.features), k, selector)
                lines.append(json.dumps(selection_record(sample, selector, k, choice, query.timestamps)))
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, "".join(line + "\n" for line in lines).encode())
    except (SelectorError, CacheError, ManifestError, BenchmarkError, EncoderError, ModelLoadError,
            FileNotFoundError) as err:
        error(str(err))
        return 2
    console.print(f"{selector}: {len(lines)} questions → {out}"
                  + "".join(f"; {n} skipped: {reason}" for reason, n in skipped.most_common()))
    return 0


def _read_done(out: Path, selector: str, k: int) -> dict[str, dict]:
    """The lines of an earlier run into ``out`` with the same selector and k, by question id."""
    if not out.is_file():
        return {}
    from hfs.pipeline.evaluation.selectors import SelectorError

    done = {}
    for line in out.read_text().splitlines():
        record = json.loads(line)
        if record.get("selector") != selector:
            raise SelectorError(f"{out} holds selections of {record.get('selector')!r}; choose another --out")
        if record.get("k") != k:
            raise SelectorError(f"{out} holds selections of {record.get('k')} frames, not --k {k}; choose another --out")
        done[record["sample_id"]] = record
    return done
