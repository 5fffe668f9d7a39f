"""Training data: QA samples joined to the feature cache, a picklable dataset, a resumable sampler.

``training_samples`` reads the manifests (LLaVA-Video-178K, VideoChat2-IT with one sample
per QA item, generic JSONL: whatever ``hfs.manifests`` reads) and keeps the samples whose
video is in the cache. Nothing is dropped silently: every skipped sample or record is
counted by reason in a ``SkipReport`` (printed at start, saved in the run folder).

``QADataset`` holds the kept samples as Arrow columns (no Python object per sample, so
forked DataLoader workers share them without copying) and opens the cache lazily in each
process. An item carries the cached features, timestamps and the JPEG bytes of all N
frames (in one buffer, ``PackedJpegs``): which k the teacher sees depends on the step's own
selection, so the step decodes only those (``frames.decode_jpegs``), on its own device.

``StepSampler`` yields micro-batches as a pure function of (seed, optimiser step): epoch e
visits the samples in the order ``permutation(seed, e)``, optimiser step s of the epoch takes
the next ``batch_size`` of them, and process r of W, micro-step j takes the slice at
``(j·W + r)·micro``. Resuming at step s needs nothing but s; W processes with accumulation
A see exactly the samples one process with accumulation W·A sees. Each sample also gets a
Gumbel-noise seed from (seed, epoch, its place in the epoch's order).
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import torch

from hfs.cache import FeatureCache
from hfs.manifests import QASample, read_manifests
from hfs.manifests.records import ANSWER_MISMATCH, UNREADABLE
from hfs.pipeline.model.hfs_model import Batch

log = logging.getLogger(__name__)

__all__ = [
    "MISSING_VIDEO",
    "FAILED_VIDEO",
    "NO_ANSWER",
    "SkipReport",
    "training_samples",
    "data_fingerprint",
    "QADataset",
    "collate",
    "StepSampler",
    "noise_seed",
    "PackedJpegs",
    "frame_label_vector",
]

MISSING_VIDEO = "video not in the cache"
FAILED_VIDEO = "video failed extraction"
NO_ANSWER = "no answer to train on"
EXAMPLES_PER_REASON = 5

_SAMPLE_SCHEMA = pa.schema([
    ("sample_id", pa.string()),
    ("video_id", pa.string()),
    ("question", pa.string()),
    ("options", pa.list_(pa.string())),
    ("answer_index", pa.int32()),  # -1: open-ended
    ("answer", pa.string()),
])


@dataclass
class SkipReport:
    """What was left out of training, by reason, with a few examples of each."""

    kept: int = 0
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, example: str) -> None:
        self.counts[reason] += 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < EXAMPLES_PER_REASON:
            shown.append(example)

    @property
    def skipped(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        return {"kept": self.kept, "skipped": self.skipped,
                "skipped_by_reason": dict(self.counts.most_common()), "examples": self.examples}


def training_samples(
    data_files: Sequence[str | Path], cache, video_root: str | Path | None = None
) -> tuple[pa.Table, SkipReport]:
    """The trainable QA samples of ``data_files`` whose video is in ``cache`` (a
    ``FeatureCache``), as an Arrow table, and the report of what was skipped and why.

    Skipped: records that cannot be parsed (``UNREADABLE``), multiple-choice answers that
    match no option (``ANSWER_MISMATCH``), samples whose video is not in the cache
    (``MISSING_VIDEO``) or failed extraction (``FAILED_VIDEO``), and samples without an
    answer (``NO_ANSWER``).
    """
    manifest = read_manifests([str(f) for f in data_files], video_root=str(video_root) if video_root else None)
    report = SkipReport()
    for bad in manifest.bad:
        report.add(bad.kind if bad.kind in (UNREADABLE, ANSWER_MISMATCH) else UNREADABLE, str(bad))
    columns: dict[str, list] = {name: [] for name in _SAMPLE_SCHEMA.names}
    for sample in manifest.samples:
        reason = _skip_reason(sample, cache)
        if reason is not None:
            report.add(reason, f"{sample.source} ({sample.sample_id}, video {sample.video_id})")
            continue
        columns["sample_id"].append(sample.sample_id)
        columns["video_id"].append(sample.video_id)
        columns["question"].append(sample.question)
        columns["options"].append(list(sample.options))
        columns["answer_index"].append(-1 if sample.answer_index is None else sample.answer_index)
        columns["answer"].append(sample.answer or "")
    table = pa.Table.from_pydict(columns, schema=_SAMPLE_SCHEMA)
    report.kept = table.num_rows
    return table, report


def data_fingerprint(samples: pa.Table) -> dict[str, Any]:
    """What makes the epochs' order: the number of samples, a SHA-256 of their sorted ids (which
    samples) and one of the ids in the order read (``epoch_order`` permutes that order)."""
    ids = [str(i) for i in samples.column("sample_id").to_pylist()]

    def digest(items: list[str]) -> str:
        return hashlib.sha256("\n".join(items).encode()).hexdigest()

    return {"samples": len(ids), "sample_ids_sha256": digest(sorted(ids)), "order_sha256": digest(ids)}


def _skip_reason(sample: QASample, cache) -> str | None:
    """Why ``sample`` cannot be trained on, or None."""
    if sample.options and sample.answer_index is None:
        return NO_ANSWER
    if not sample.options and not sample.answer:
        return NO_ANSWER
    if sample.video_id in cache:
        return None
    try:
        status = cache.row(sample.video_id)["status"]
    except KeyError:
        return MISSING_VIDEO
    return FAILED_VIDEO if status != "ok" else None


class QADataset(torch.utils.data.Dataset):
    """Map-style dataset of QA samples over a feature cache; picklable, fork-safe.

    ``dataset[i]`` or ``dataset[(i, noise_seed)]`` → a dict with ``features [N, D]``
    float16, ``timestamps [N]`` float32 seconds, ``frames`` (N JPEG byte arrays), the
    question, options, answer and ids. The cache is opened on first use in each process.

    ``frame_labels`` (``losses.supervision = "pseudo_label"``): sample_id → the indices of
    its positive frames (the ground truth's ``grid_hits``); each item then also carries
    ``frame_labels [N]`` float32 (``frame_label_vector``). Every sample must have an entry.
    """

    def __init__(self, samples: pa.Table, cache_path: str | Path, max_open_shards: int = 16,
                 frame_labels: Mapping[str, Sequence[int]] | None = None) -> None:
        self.samples = samples
        self.cache_path = str(cache_path)
        self.max_open_shards = max_open_shards
        self._cache = None
        self.frame_labels = None
        if frame_labels is not None:
            ids = samples.column("sample_id").to_pylist()
            missing = [i for i in ids if i not in frame_labels]
            if missing:
                raise ValueError(f"{len(missing)} of {len(ids)} training samples have no frame labels "
                                 f"(e.g. {', '.join(missing[:3])})")
            self.frame_labels = {i: tuple(int(j) for j in frame_labels[i]) for i in ids}

    def __len__(self) -> int:
        return self.samples.num_rows

    @property
    def cache(self):
        if self._cache is None:
            self._cache = FeatureCache(self.cache_path, max_open_shards=self.max_open_shards)
        return self._cache

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_cache"] = None  # each process opens its own
        return state

    def __getitem__(self, key) -> dict[str, Any]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        row = {name: self.samples.column(name)[index].as_py() for name in self.samples.column_names}
        vid = row["video_id"]
        row["features"] = self.cache.features(vid)
        row["timestamps"] = self.cache.timestamps(vid)
        row["frames"] = PackedJpegs(*(torch.from_numpy(a) for a in self.cache.packed_frames(vid)))
        row["noise_seed"] = seed
        if self.frame_labels is not None:
            row["frame_labels"] = frame_label_vector(self.frame_labels[row["sample_id"]], row["features"].shape[0])
        return row


def frame_label_vector(positives: Sequence[int], n: int) -> np.ndarray:
    """``[n]`` float32: 1 at the frames ``positives``, 0 elsewhere; an index off 0..n−1 raises."""
    off = [i for i in positives if not 0 <= i < n]
    if off:
        raise ValueError(f"frame labels {off[:5]} are off the {n}-frame grid")
    labels = np.zeros(n, dtype=np.float32)
    labels[list(positives)] = 1.0
    return labels


@dataclass
class PackedJpegs:
    """A video's N JPEGs in one uint8 tensor: a sequence whose item j is the bytes of frame j
    (a view). Two tensors cross from a DataLoader worker through shared memory instead of N
    pickled arrays."""

    data: torch.Tensor  # uint8 [total bytes]
    offsets: torch.Tensor  # int64 [N + 1]

    def __len__(self) -> int:
        return self.offsets.numel() - 1

    def __getitem__(self, j: int) -> torch.Tensor:
        return self.data[int(self.offsets[j]):int(self.offsets[j + 1])]


@dataclass
class TrainBatch:
    """A collated micro-batch and the Gumbel-noise seed of each of its samples."""

    batch: Batch
    noise_seeds: list[int | None]


def collate(items: list[dict[str, Any]]) -> TrainBatch:
    """Stack dataset items into a ``Batch`` (features stay float16; the student casts)."""
    n = {it["features"].shape[0] for it in items}
    if len(n) != 1:
        raise ValueError(f"samples in one batch have different frame counts {sorted(n)}; the cache mixes N")
    labels = [it.get("frame_labels") for it in items]
    batch = Batch(
        features=torch.from_numpy(np.stack([it["features"] for it in items])),
        timestamps=torch.from_numpy(np.stack([it["timestamps"] for it in items]).astype(np.float32)),
        questions=[it["question"] for it in items],
        options=[list(it["options"]) for it in items],
        answer_index=torch.tensor([it["answer_index"] for it in items], dtype=torch.long),
        answers=[it["answer"] for it in items],
        frames=[it["frames"] for it in items],
        sample_ids=[it["sample_id"] for it in items],
        frame_labels=torch.from_numpy(np.stack(labels)) if all(x is not None for x in labels) else None,
    )
    return TrainBatch(batch, [it["noise_seed"] for it in items])


def noise_seed(seed: int, epoch: int, position: int) -> int:
    """Seed of the Gumbel noise of the sample at ``position`` of epoch ``epoch``'s order."""
    return int(np.random.SeedSequence([seed, epoch, position]).generate_state(1, dtype=np.uint64)[0] >> 1)


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order in which epoch ``epoch`` visits the ``n`` samples."""
    return np.random.default_rng([seed, epoch]).permutation(n)


class StepSampler(torch.utils.data.Sampler):
    """Batch sampler over optimiser steps ``start_step .. total_steps − 1`` (module docstring).

    Yields, for each step, this process's ``accumulation`` micro-batches in order; each
    micro-batch is a list of ``(sample index, noise seed)``. The last partial batch of an
    epoch is dropped.
    """

    def __init__(self, n: int, batch_size: int, micro_batch_size: int, world_size: int, rank: int,
                 seed: int, start_step: int, total_steps: int) -> None:
        if batch_size % (micro_batch_size * world_size):
            raise ValueError(f"batch_size {batch_size} is not a multiple of {micro_batch_size} × {world_size}")
        if n < batch_size:
            raise ValueError(f"{n} training samples are fewer than one batch of {batch_size}")
        self.n, self.batch_size, self.micro = n, batch_size, micro_batch_size
        self.world_size, self.rank, self.seed = world_size, rank, seed
        self.start_step, self.total_steps = start_step, total_steps
        self.accumulation = batch_size // (micro_batch_size * world_size)
        self.steps_per_epoch = n // batch_size

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step) * self.accumulation

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, step within the epoch) of optimiser step ``step``."""
        return divmod(step, self.steps_per_epoch)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order, order_epoch = None, -1
        for step in range(self.start_step, self.total_steps):
            epoch, within = self.position(step)
            if epoch != order_epoch:
                order, order_epoch = epoch_order(self.n, self.seed, epoch), epoch
            base = within * self.batch_size
            for j in range(self.accumulation):
                start = base + (j * self.world_size + self.rank) * self.micro
                yield [(int(order[p]), noise_seed(self.seed, epoch, p)) for p in range(start, start + self.micro)]
