"""Shared test fixtures. Real data lives in ../shared/data beside the checkout, never in the repo."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or skip: the real slides and tables are not shipped with the repository."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (expected beside the checkout)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def slides_dir(shared_data: Path) -> Path:
    return shared_data / "slides"


@pytest.fixture(scope="session")
def cmu_patches(slides_dir: Path) -> Any:
    """Twelve real 224-px RGB patches of cmu-1-small-region.svs at level 0, uint8 [12, 224, 224, 3]."""
    import numpy as np
    import openslide
    import torch

    with openslide.OpenSlide(str(slides_dir / "cmu-1-small-region.svs")) as slide:
        patches = [
            np.asarray(slide.read_region((x, y), 0, (224, 224)).convert("RGB"))
            for y in range(200, 1800, 400)
            for x in range(200, 2000, 300)
        ][:12]
    return torch.from_numpy(np.stack(patches))


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread for a module of tiny models: thread start-up costs more than it saves, badly so
    on a busy machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _faults_of_second_use(size: int, count: int = 1) -> int:
    """Minor page faults of writing `count` blocks of `size` bytes each that were just freed (together)
    and malloc'ed again: about count x size / 4096 where glibc unmapped or trimmed them on free, about 0
    where its heap kept the pages."""
    import ctypes
    import resource

    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    before = 0
    for i in range(2):
        blocks = [libc.malloc(size) for _ in range(count)]
        if i == 1:
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for block in blocks:
            ctypes.memset(block, 1, size)
        for block in blocks:
            libc.free(block)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.fixture
def faults_of_second_use() -> Callable[..., int]:
    """The allocator tests' probe: page faults of reusing a freed block of a given size."""
    return _faults_of_second_use
