"""Extraction's allocator set-up and per-slice forward passes change no feature."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from histo.manager import Plugins
from histo.plugins.extractors import allocator
from histo.plugins.extractors.engine import CPU_MODEL_BATCH, Engine

glibc = allocator._glibc() is not None


@pytest.mark.skipif(not glibc, reason="mallopt is glibc's")
def test_tuned_malloc_keeps_large_blocks_on_the_heap_then_restores(
    monkeypatch: pytest.MonkeyPatch, faults_of_second_use: Callable[[int], int]
) -> None:
    """Inside, freeing a 64 MB block and allocating it again faults no fresh pages (the heap kept
    them); outside, glibc's default returns them (so the test would fail if tuning did nothing)."""
    size = 64 << 20
    pages = size // 4096
    with allocator.tuned_malloc() as applied:
        assert applied
        with allocator.tuned_malloc() as nested:  # nesting keeps the outer settings
            assert nested
        assert faults_of_second_use(size) < pages // 10
    assert faults_of_second_use(size) > pages // 2, "glibc's own thresholds are back after the block"
    monkeypatch.setenv(allocator.ENV, "0")
    with allocator.tuned_malloc() as applied:
        assert not applied


def test_slices_give_the_same_features_bit_for_bit(cmu_patches: torch.Tensor, histo_plugins: Plugins) -> None:
    """The default extractor on real patches: one 12-patch forward pass or slices of 5 give identical
    floats (the engine slices batches on a CPU, `CPU_MODEL_BATCH` patches at a time)."""
    extractor = histo_plugins.registry("feature_extractors").build("efficientnet_lite0", {})
    model = extractor.build()
    images = cmu_patches
    whole = Engine(extractor, model, batch_size=12, num_workers=0, threads=1, model_batch=12)
    assert Engine(extractor, model, batch_size=12, num_workers=0).model_batch == CPU_MODEL_BATCH
    reference = whole.embed(images)
    sliced = Engine(extractor, model, batch_size=12, num_workers=0, threads=1, model_batch=5)
    assert torch.equal(sliced.embed(images), reference)
