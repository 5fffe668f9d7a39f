"""Training data: the step sampler's order, its split over processes, the packed frames and the frame labels."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from hfs.pipeline.train.data import (
    PackedJpegs,
    QADataset,
    StepSampler,
    collate,
    epoch_order,
    frame_label_vector,
    noise_seed,
)


def _steps(sampler: StepSampler) -> list[list[int]]:
    """The sample indices of each micro-batch the sampler yields."""
    return [[i for i, _ in micro] for micro in sampler]


def test_one_optimiser_step_takes_the_next_batch_of_the_epochs_order():
    s = StepSampler(n=10, batch_size=4, micro_batch_size=2, world_size=1, rank=0, seed=3, start_step=0, total_steps=3)
    assert s.steps_per_epoch == 2 and s.accumulation == 2 and len(s) == 6
    e0, e1 = epoch_order(10, 3, 0).tolist(), epoch_order(10, 3, 1).tolist()
    # steps 0 and 1 take e0[0:4] and e0[4:8] (e0[8:10] dropped: not a whole batch); step 2 starts epoch 1
    assert _steps(s) == [e0[0:2], e0[2:4], e0[4:6], e0[6:8], e1[0:2], e1[2:4]]
    assert sorted(e0) == list(range(10)) and e0 != e1


def test_two_processes_see_what_one_sees_with_twice_the_accumulation():
    one = _steps(StepSampler(32, 8, 2, world_size=1, rank=0, seed=0, start_step=0, total_steps=5))
    ranks = [_steps(StepSampler(32, 8, 2, world_size=2, rank=r, seed=0, start_step=0, total_steps=5)) for r in (0, 1)]
    for step in range(5):
        # one process: micro-batches j = 0..3; two processes: micro-batch j of rank r is j·2 + r
        assert one[4 * step: 4 * step + 4] == [ranks[0][2 * step], ranks[1][2 * step],
                                               ranks[0][2 * step + 1], ranks[1][2 * step + 1]]


def test_resuming_at_a_step_yields_the_rest_of_the_uninterrupted_order():
    full = list(StepSampler(20, 4, 2, 1, 0, seed=1, start_step=0, total_steps=9))
    rest = list(StepSampler(20, 4, 2, 1, 0, seed=1, start_step=4, total_steps=9))
    assert rest == full[8:]  # 2 micro-batches per step, and the same noise seeds


def test_noise_seeds_depend_on_the_place_in_the_order_not_on_the_layout():
    seeds = {noise_seed(0, e, p) for e in range(3) for p in range(50)}
    assert len(seeds) == 150 and all(0 <= x < 2**63 for x in seeds)
    one = [pair for micro in StepSampler(16, 8, 2, 1, 0, seed=0, start_step=0, total_steps=2) for pair in micro]
    two = [pair for r in (0, 1) for micro in StepSampler(16, 8, 2, 2, r, seed=0, start_step=0, total_steps=2)
           for pair in micro]
    assert sorted(one) == sorted(two)


def test_fewer_samples_than_a_batch_is_an_error():
    with pytest.raises(ValueError, match="fewer than one batch"):
        StepSampler(3, 4, 2, 1, 0, 0, 0, 1)


def test_packed_jpegs_are_the_frames_one_by_one():
    frames = [bytes([j]) * (j + 3) for j in range(5)]
    data = torch.from_numpy(np.frombuffer(b"".join(frames), dtype=np.uint8).copy())
    offsets = torch.tensor(np.cumsum([0] + [len(f) for f in frames]))
    packed = PackedJpegs(data, offsets)
    assert len(packed) == 5 and [packed[j].numpy().tobytes() for j in range(5)] == frames


def test_frame_label_vector_marks_the_positive_frames():
    assert frame_label_vector((0, 3), 5).tolist() == [1.0, 0.0, 0.0, 1.0, 0.0]
    assert frame_label_vector((), 3).tolist() == [0.0, 0.0, 0.0]
    assert frame_label_vector((2,), 4).dtype == np.float32
    with pytest.raises(ValueError, match="off the 4-frame grid"):
        frame_label_vector((4,), 4)


def _item(sample_id: str, labels=None) -> dict:
    item = {"features": np.zeros((4, 2), np.float16), "timestamps": np.arange(4, dtype=np.float32),
            "question": "q", "options": ["a", "b"], "answer_index": 0, "answer": "a",
            "frames": PackedJpegs(torch.zeros(0, dtype=torch.uint8), torch.zeros(5, dtype=torch.long)),
            "sample_id": sample_id, "noise_seed": None}
    if labels is not None:
        item["frame_labels"] = frame_label_vector(labels, 4)
    return item


def test_collate_stacks_frame_labels_when_every_item_has_them():
    labelled = collate([_item("a", (1,)), _item("b", (0, 3))]).batch
    assert labelled.frame_labels.tolist() == [[0, 1, 0, 0], [1, 0, 0, 1]]
    assert collate([_item("a"), _item("b")]).batch.frame_labels is None


def test_a_dataset_with_frame_labels_needs_them_for_every_sample():
    samples = pa.table({"sample_id": ["a", "b", "c"]})
    with pytest.raises(ValueError, match="2 of 3 training samples have no frame labels"):
        QADataset(samples, "unused", frame_labels={"a": (1,)})
    assert QADataset(samples, "unused", frame_labels={"a": (1,), "b": [], "c": (0, 2)}).frame_labels["c"] == (0, 2)
