"""glibc malloc kept from unmapping a model's bag-sized tensors between the passes of training and
inference.

glibc serves every block above its mmap threshold (at most 32 MiB, however it adapts) with a fresh
`mmap` and unmaps it on free. A bag's per-patch activations grow with its patches: at 100,000 patches
a 128-wide token tensor is 51 MB, so every such tensor of every forward and backward pass page-faults
its memory in again. The `dmf` teacher then spent 15-20% of a training step and of an inference
pass in the kernel at 100,000 patches, and almost none at 25,000 (docs/performance.md, "The
teacher's cost per patch"). Under `model_heap()` blocks below 256 MiB come from the heap, and the
heap is not trimmed while the block runs, so the next pass reuses the pages. (Keeping only 256 MiB
free at its top was not enough: a 100,000-patch training step frees more than that there, glibc gave
it back, and the next step faulted it in again, its resident memory swinging by up to 400 MB between
steps; a page fault costs ~60 us on the VM this was measured on.) The price is memory: a heap holds
freed blocks where a later, larger one may not fit, so the peak resident memory of a 100,000-patch
training step rose by a fifth to a third (2.1-2.3 to 2.6-2.9 GB) in the benchmark, and the block
holds its largest pass's memory until it ends (a fit, a predict), when the heap is trimmed once; bags
whose tensors stay below 32 MiB (~60,000 patches at width 128) are served from the heap already and
see no difference.

The settings apply while the block runs and are undone after it (the extraction's `tuned_malloc`,
with a lower mmap ceiling: blocks above 256 MiB, such as a large bag's input features, are mapped
and unmapped unless the heap's free memory can serve them). `HISTO_MALLOC_TUNING=0` turns it off; it
does nothing where the C library is not glibc or another allocator is preloaded.
"""

from __future__ import annotations

import contextlib

from histo.plugins.extractors.allocator import tuned_malloc

MODEL_MMAP_THRESHOLD = 256 << 20  # a 100,000-patch bag's activations (51-102 MB) stay on the heap
MODEL_TRIM_THRESHOLD = (1 << 31) - 1  # never trimmed during the block: the next pass reuses it all


def model_heap() -> contextlib.AbstractContextManager[bool]:
    """Context manager (and decorator) for the passes of training and inference; yields whether the
    tuning applied."""
    return tuned_malloc(MODEL_MMAP_THRESHOLD, MODEL_TRIM_THRESHOLD)
