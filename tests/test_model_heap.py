"""Training and inference keep a large bag's activations on the heap between passes (training/heap.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from histo.plugins.extractors import allocator
from histo.plugins.training import trainer
from histo.plugins.training.dataset import PatientDataset
from histo.plugins.training.heap import model_heap

glibc = allocator._glibc() is not None


@pytest.mark.skipif(not glibc, reason="mallopt is glibc's")
def test_model_heap_reuses_bag_sized_blocks_and_keeps_what_a_step_frees(
    faults_of_second_use: Callable[..., int],
) -> None:
    """A 100 MB block (a 100,000-patch bag's concatenated streams) is reused without faults inside and
    re-faulted outside; four of them freed together (more than 256 MiB at the heap's top, as at the end
    of a large bag's step) are kept for the next step, not trimmed and faulted in again."""
    bag_sized, pages = 100 << 20, (100 << 20) // 4096
    with model_heap() as applied:
        assert applied
        assert faults_of_second_use(bag_sized) < pages // 10
        assert faults_of_second_use(bag_sized, 4) < pages // 10
    assert faults_of_second_use(bag_sized) > pages // 2, "glibc's own thresholds are back after the block"
    assert faults_of_second_use(bag_sized, 4) > 2 * pages, "and trims again"


class Probe(torch.nn.Module):
    """Logits of zeros; records whether each forward pass ran under the tuned heap."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[bool] = []

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        self.seen.append(allocator._depth > 0)
        return {"logits": torch.zeros(len(batch["patient_id"]), 2)}


@pytest.mark.skipif(not glibc, reason="mallopt is glibc's")
def test_predict_runs_its_passes_under_it_and_restores() -> None:
    dataset = PatientDataset(["a", "b", "c"], np.array([0, 1, 0]), omics={"g": np.zeros((3, 4), np.float32)})
    probe = Probe()
    result = trainer.predict(probe, dataset, 2, torch.device("cpu"))
    assert result.patient_ids == ["a", "b", "c"] and probe.seen == [True, True]
    assert allocator._depth == 0
