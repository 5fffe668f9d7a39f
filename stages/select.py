"""`hfs select`: k frames per question from the cache, with any selector, into a JSONL file.

Questions come from a manifest (any format `hfs extract` reads; its videos must be in the
cache, `hfs extract` first) or a benchmark in its published layout (its videos that the cache
does not hold yet are extracted first, as `hfs evaluate` does). One line per question, in the
README's export format: the benchmark and its view, the question id as the benchmark writes
it, the video path relative to ``--data`` (or as the manifest wrote it), N, the duration, and
the chosen indices and times, so that any harness can take the same frames. The selector
scores ``batch_size`` questions per forward pass (the choices of one at a time, up to float
rounding: see ``selectors/learned.py``).

Questions that cannot be selected for (a bad row, a missing video, a video not in the cache
or that failed extraction) are counted by reason and listed, one JSON line each with its
reason, in ``<out stem>.skipped.jsonl`` next to the output. Both files are written under a
temporary name and renamed; a rerun keeps the lines already written and selects only the rest
(the skipped file is made again).
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Optional, Sequence

from hfs.stages.console import ProgressBar, console, error
from hfs.stages.options import require_cache_folder

log = logging.getLogger(__name__)

SKIPPED_SUFFIX = ".skipped.jsonl"


def skipped_path(out: Path) -> Path:
    """The file listing the questions not selected for, next to ``out``: ``sel.jsonl`` → ``sel.skipped.jsonl``."""
    out = Path(out)
    return out.with_name((out.stem if out.suffix == ".jsonl" else out.name) + SKIPPED_SUFFIX)


def run(cache: Path, out: Path, selector: str, manifests: Sequence[Path] = (), bench: Optional[str] = None,
        data: Optional[Path] = None, run_dir: Optional[Path] = None, k: int = 16, seed: int = 0,
        video_root: Optional[Path] = None, device: str = "cpu", progress: bool = True, batch_size: int = 8,
        preset: Optional[str] = None, workers: Optional[int] = None, scheduler: Optional[str] = None) -> int:
    """Select; returns the exit status (0 done, 2 usage or input error). ``batch_size``: questions
    per selector forward pass; ``preset``, ``workers``, ``scheduler``: the extraction of a
    benchmark's videos (as for `hfs evaluate`)."""
    from hfs.cache import CacheError, FeatureCache
    from hfs.cache.format import atomic_write_bytes
    from hfs.manifests import ManifestError, read_manifests
    from hfs.manifests.benchmarks import BAD_ROW, BenchmarkError, get_benchmark
    from hfs.pipeline.evaluation.predictions import cache_skip_reason, query_of, selection_record
    from hfs.pipeline.evaluation.selectors import SelectorContext, SelectorError, select_batch, selector_needs_run
    from hfs.pipeline.extract.encoder import EncoderError
    from hfs.pipeline.model.loading import ModelLoadError
    from hfs.stages.options import extract_missing_videos

    try:
        if bool(manifests) == bool(bench):
            raise SelectorError("give the questions with --manifest FILE or with --bench NAME --data DIR (one of them)")
        if bench and data is None:
            raise SelectorError(f"--bench {bench} needs --data DIR (the benchmark's files as published)")
        if selector_needs_run(selector) and run_dir is None:
            raise SelectorError(f"selector {selector} needs a trained run: pass --run runs/NAME")
        out = Path(out)
        done = _read_done(out, selector, k)
        skipped: list[dict] = []  # questions not selected for, with their reason (the reader's too)
        if bench:
            try:
                benchmark = get_benchmark(bench)
            except KeyError as err:
                raise BenchmarkError(f"--bench: {err.args[0]}") from None
            read = benchmark.read(data)
            samples, videos = read.samples, read.videos
            source = {"benchmark": bench, "view": read.view}
            skipped += [{**source, "sample_id": None, "question_id": None, "video_path": None, "reason": BAD_ROW,
                         "source": str(b)} for b in read.bad]
            skipped += [{**source, "sample_id": m.sample.sample_id, "question_id": benchmark.question_id(m.sample),
                         "video_path": _relative(m.path, read.data_dir), "reason": m.reason, "source": m.sample.source}
                        for m in read.missing]
            todo = [s for s in samples if s.sample_id not in done]
            if todo:  # as `hfs evaluate` does: the videos the cache does not hold yet
                extract_missing_videos(read, todo, Path(cache), preset, workers=workers, scheduler=scheduler,
                                       progress=progress)
        else:
            require_cache_folder(cache)
            benchmark = None
            manifest = read_manifests([str(m) for m in manifests], video_root=str(video_root) if video_root else None)
            samples, videos = manifest.samples, manifest.videos
            source = {"benchmark": None, "view": None}
            skipped += [{**source, "sample_id": None, "question_id": None, "video_path": None, "reason": b.kind,
                         "source": str(b)} for b in manifest.bad]
        video_key = {v.video_id: v.key for v in videos}

        def identity(sample) -> dict:
            qid = benchmark.question_id(sample) if benchmark is not None else sample.sample_id
            return {**source, "question_id": qid, "video_path": video_key.get(sample.video_id)}

        feature_cache = FeatureCache(cache)
        ctx = SelectorContext(k=k, seed=seed, run=run_dir, cache_config=feature_cache.config, device=device,
                              cache=feature_cache)
        lines = [json.dumps(r) for r in done.values()]
        with ProgressBar("select", len(samples), enabled=progress) as bar:
            pending = []
            for i, sample in enumerate(samples):
                if sample.sample_id not in done:
                    reason = cache_skip_reason(sample, feature_cache, need_options=False)
                    if reason is None:
                        pending.append(sample)
                    else:
                        skipped.append({**source, "sample_id": sample.sample_id, **identity(sample),
                                        "reason": reason, "source": sample.source})
                if pending and (len(pending) == batch_size or i == len(samples) - 1):
                    queries = [query_of(s, feature_cache) for s in pending]
                    for s, query, choice in zip(pending, queries, select_batch(selector, queries, ctx)):
                        duration = feature_cache.row(s.video_id)["duration"]
                        lines.append(json.dumps(selection_record(s, selector, k, choice, query.timestamps,
                                                                 duration_s=duration, **identity(s))))
                    pending = []
                bar.advance()
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, "".join(line + "\n" for line in lines).encode())
        atomic_write_bytes(skipped_path(out), "".join(json.dumps(s) + "\n" for s in skipped).encode())
    except (SelectorError, CacheError, ManifestError, BenchmarkError, EncoderError, ModelLoadError,
            FileNotFoundError) as err:
        error(str(err))
        return 2
    counts = Counter(s["reason"] for s in skipped)
    console.print(f"{selector}: {len(lines)} questions → {out}"
                  + "".join(f"; {n} skipped: {reason}" for reason, n in counts.most_common())
                  + (f" (listed in {skipped_path(out)})" if skipped else ""))
    return 0


def _relative(path: str, data_dir: str) -> str:
    """``path`` relative to the benchmark folder (as the readers make video keys), else as it is."""
    try:
        if os.path.commonpath([os.path.abspath(path), os.path.abspath(data_dir)]) == os.path.abspath(data_dir):
            return os.path.relpath(path, data_dir).replace(os.sep, "/")
    except ValueError:  # another drive
        pass
    return path


def _read_done(out: Path, selector: str, k: int) -> dict[str, dict]:
    """The lines of an earlier run into ``out`` with the same selector and k, by question id. Lines
    written before the export format (no ``n_frames``) are not kept: their questions are selected
    again, so that every line of the file carries every field."""
    if not out.is_file():
        return {}
    from hfs.pipeline.evaluation.selectors import SelectorError

    done, older = {}, 0
    for line in out.read_text().splitlines():
        record = json.loads(line)
        if record.get("selector") != selector:
            raise SelectorError(f"{out} holds selections of {record.get('selector')!r}; choose another --out")
        if record.get("k") != k:
            raise SelectorError(f"{out} holds selections of {record.get('k')} frames, not --k {k}; choose another --out")
        if "n_frames" not in record:
            older += 1
            continue
        done[record["sample_id"]] = record
    if older:
        log.warning("%s: %d line(s) written before the export format (no benchmark, question_id, video_path, "
                    "n_frames, duration_s); selecting those questions again", out, older)
    return done
