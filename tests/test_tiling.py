"""Magnifications, read plans and aligned grids: invariants, checked against a naive reference."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from histo.interfaces import TissueMask
from histo.plugins.tiling import (
    Grid,
    Magnification,
    TilingError,
    choose_level,
    nest,
    plan_grids,
    tile,
)
from histo.plugins.tiling.coords_file import read_coords, write_coords

M = Magnification.model_validate


def naive_fraction(mask: TissueMask, x: int, y: int, size: int) -> float:
    """The per-patch loop the vectorised code replaces: slice the mask, count."""
    d = mask.downsample
    x0, y0 = round(x / d), round(y / d)
    x1, y1 = max(round((x + size) / d), x0 + 1), max(round((y + size) / d), y0 + 1)
    return float(mask.mask[y0:y1, x0:x1].sum() / ((x1 - x0) * (y1 - y0)))


def random_mask(seed: int, shape: tuple[int, int] = (120, 90)) -> np.ndarray:
    """Blobs of tissue: smoothed noise above a level."""
    from scipy import ndimage

    noise = ndimage.gaussian_filter(np.random.default_rng(seed).random(shape), 4)
    return noise > np.quantile(noise, 0.55)


# -- magnifications ---------------------------------------------------------------------------------


def test_magnification_spellings() -> None:
    assert M("20x") == Magnification(name="20x", mpp=0.5)
    assert M("10X").name == "10x" and M("10X").mpp == 1.0
    assert M("2.5x").mpp == 4.0
    assert M({"name": "fine", "mpp": 0.25}).mpp == 0.25
    for bad in ("20", "x20", "twenty", "0x", 20, {"name": "a/b", "mpp": 1}, {"name": "a", "mpp": -1}):
        with pytest.raises(ValidationError):
            M(bad)


def test_nest_orders_coarse_first_and_rejects_non_nesting() -> None:
    assert [m.name for m in nest([M("20x"), M("5x"), M("10x")])] == ["5x", "10x", "20x"]
    with pytest.raises(ValueError, match="do not nest"):
        nest([M("20x"), M("15x")])
    with pytest.raises(ValueError, match="unique"):
        nest([M("20x"), M({"name": "20x", "mpp": 1.0})])
    with pytest.raises(ValueError, match="do not nest"):
        nest([M("20x"), M({"name": "other", "mpp": 0.5})])


# -- plans ------------------------------------------------------------------------------------------


def test_choose_level_picks_the_most_reduced_level_still_detailed_enough() -> None:
    downsamples = (1.0, 2.0005, 4.001, 16.0)
    assert choose_level(downsamples, 1.5) == 0
    assert choose_level(downsamples, 2.0) == 1  # 2.0005 is within 1%
    assert choose_level(downsamples, 3.9) == 1
    assert choose_level(downsamples, 4.0) == 2
    assert choose_level(downsamples, 15.0) == 2
    assert choose_level(downsamples, 100.0) == 3
    assert choose_level((1.0,), 8.0) == 0


def test_plan_on_a_40x_pyramid_reads_the_matching_level() -> None:
    plans = plan_grids((1.0, 2.0, 4.0, 8.0), 0.25, [M("20x"), M("10x")], 256)
    coarse, fine = plans
    assert coarse.magnification.name == "10x" and fine.magnification.name == "20x"
    assert (fine.patch_size_level0, fine.stride_level0, fine.read_level, fine.read_size) == (512, 512, 1, 256)
    assert (coarse.patch_size_level0, coarse.read_level, coarse.read_size) == (1024, 2, 256)
    assert fine.parent == 0 and coarse.parent is None
    assert fine.effective_mpp == 0.5


def test_plan_on_a_single_level_20x_scan_reads_level_0_and_resizes() -> None:
    coarse, fine = plan_grids((1.0,), 0.499, [M("10x"), M("20x")], 256)
    assert (fine.read_level, fine.read_size, fine.patch_size_level0) == (0, 257, 257)
    assert (coarse.read_level, coarse.read_size, coarse.patch_size_level0) == (0, 514, 514)
    assert fine.effective_mpp == pytest.approx(0.5, rel=0.002)


def test_plan_with_overlap_keeps_coarse_patches_whole_multiples() -> None:
    coarse, fine = plan_grids((1.0, 4.0), 0.25, [M("10x"), M("20x")], 256, overlap=64)
    assert (fine.stride_level0, fine.patch_size_level0) == (384, 512)
    assert (coarse.stride_level0, coarse.patch_size_level0) == (768, 1024)


def test_plan_refuses_to_upsample(tmp_path: Path) -> None:
    with pytest.raises(TilingError, match=r"slide s1: .* magnification 40x .* upsampling.*mpp_overrides"):
        plan_grids((1.0,), 0.5, [M("40x")], 256, slide="s1")
    # every magnification the scan cannot give, at once, with the scan's mpp and the finest that works
    with pytest.raises(TilingError) as caught:
        plan_grids((1.0,), 1.0, [M("5x"), M("20x"), M("40x")], 256, slide="s1")
    message = str(caught.value)
    assert "the scan has 1 µm/px (10x)" in message
    assert "magnifications 20x (0.5 µm/px, 2.00x upsampling), 40x (0.25 µm/px, 4.00x upsampling)" in message
    assert "the finest that works on this slide is 0.9091 µm/px (11x" in message
    assert "Remove 20x, 40x from `magnifications` (keeping 5x)" in message
    with pytest.raises(TilingError, match=r"Use magnifications at or below 11x, e.g. \[5x, 10x\]"):
        plan_grids((1.0,), 1.0, [M("20x"), M("40x")], 256, slide="s1")
    (plan,) = plan_grids((1.0,), 0.26, [M("40x")], 256)  # 4% finer than the scan: resize
    assert plan.read_size == plan.patch_size_level0 == 246
    with pytest.raises(ValueError, match="overlap"):
        plan_grids((1.0,), 0.25, [M("20x")], 256, overlap=256)


# -- grids ------------------------------------------------------------------------------------------


def check_alignment(grids: list[Grid], dimensions: tuple[int, int]) -> None:
    """Every invariant a model relies on to walk the hierarchy."""
    for grid in grids:
        stride = grid.plan.stride_level0
        assert grid.coords.dtype == np.int64 and grid.coords.shape[1] == 2
        assert (grid.coords % stride == 0).all()
        assert (grid.coords >= 0).all()
        assert (grid.coords[:, 0] < dimensions[0]).all() and (grid.coords[:, 1] < dimensions[1]).all()
        assert len(np.unique(grid.coords, axis=0)) == len(grid)
    for coarse, fine in itertools.pairwise(grids):
        assert fine.parent is not None and coarse.child_offsets is not None
        assert ((fine.parent >= 0) & (fine.parent < len(coarse))).all()
        parent_xy = coarse.coords[fine.parent]
        size_c, size_f = coarse.plan.patch_size_level0, fine.plan.patch_size_level0
        assert (fine.coords >= parent_xy).all()
        assert (fine.coords + size_f <= parent_xy + size_c).all()  # inside the parent, to the pixel
        offsets = coarse.child_offsets
        assert offsets[0] == 0 and offsets[-1] == len(fine) and (np.diff(offsets) >= 0).all()
        for i in range(len(coarse)):
            assert (fine.parent[offsets[i] : offsets[i + 1]] == i).all()
    assert grids[-1].child_offsets is None and grids[0].parent is None


@pytest.mark.parametrize("seed,mpp", [(0, 0.25), (1, 0.4977)])  # 0.4977: 128.6 px rounds up, 257.2 down
@pytest.mark.parametrize("overlap", [0, 37])
@pytest.mark.parametrize("rule", ["strict", "expand"])
def test_grids_are_aligned_and_match_the_naive_loop(seed: int, mpp: float, overlap: int, rule: str) -> None:
    mask = TissueMask(random_mask(seed), downsample=32.0)
    dimensions = (90 * 32 - 7, 120 * 32 - 13)
    plans = plan_grids((1.0, 2.0, 4.0), mpp, [M("5x"), M("10x"), M("20x")], 128, overlap)
    grids = tile(mask, plans, 0.4, dimensions, rule)
    check_alignment(grids, dimensions)
    assert all(len(g) > 0 for g in grids)
    for grid in grids:
        size = grid.plan.patch_size_level0
        naive = np.array([naive_fraction(mask, x, y, size) for x, y in grid.coords], np.float32)
        np.testing.assert_allclose(grid.tissue, naive, rtol=1e-6)
    if rule == "strict":  # every kept patch has enough tissue itself
        assert all((g.tissue >= 0.4).all() for g in grids)


def test_finer_grid_under_expand_equals_an_independent_grid() -> None:
    mask = TissueMask(random_mask(3), downsample=32.0)
    dims = (90 * 32, 120 * 32)
    both = plan_grids((1.0,), 0.25, [M("10x"), M("20x")], 128)
    alone = plan_grids((1.0,), 0.25, [M("20x")], 128)
    strict = tile(mask, both, 0.5, dims, "strict")
    expand = tile(mask, both, 0.5, dims, "expand")
    (single,) = tile(mask, alone, 0.5, dims)

    def rows(coords: np.ndarray) -> set[tuple[int, int]]:
        return set(map(tuple, coords.tolist()))

    assert rows(expand[1].coords) == rows(single.coords)
    assert rows(strict[1].coords) < rows(single.coords)  # strict drops children of thin parents
    assert rows(strict[0].coords) < rows(expand[0].coords)


def test_min_tissue_threshold() -> None:
    mask = np.zeros((64, 64), bool)
    mask[:, :24] = True  # 24 of 64 columns: cells of 16 mask px are full, 1/2 or empty
    tissue = TissueMask(mask, downsample=8.0)
    (plan,) = plan_grids((1.0,), 0.5, [M("20x")], 128)  # 128 level-0 px = 16 mask px
    xs = {
        t: sorted({int(x) for x, _ in tile(tissue, [plan], t, (512, 512))[0].coords})
        for t in (0.0, 0.5, 0.51, 1.0)
    }
    assert xs[1.0] == [0]
    assert xs[0.5] == [0, 128]  # exactly half tissue is kept at 0.5 ...
    assert xs[0.51] == [0]  # ... and dropped just above it
    assert xs[0.0] == [0, 128, 256, 384]  # 0 keeps every cell of the slide
    counts = [len(tile(tissue, [plan], t, (512, 512))[0]) for t in np.linspace(0, 1, 11)]
    assert counts == sorted(counts, reverse=True)


def test_area_outside_the_slide_counts_as_glass() -> None:
    tissue = TissueMask(np.ones((10, 10), bool), downsample=10.0)  # 100 x 100 level-0 pixels
    (plan,) = plan_grids((1.0,), 1.0, [M({"name": "p", "mpp": 1.0})], 80)
    grid = tile(tissue, [plan], 0.0, (100, 100))[0]
    assert grid.coords.tolist() == [[0, 0], [80, 0], [0, 80], [80, 80]]
    np.testing.assert_allclose(grid.tissue, [1.0, 0.25, 0.25, 0.0625])


def test_empty_mask_gives_empty_grids() -> None:
    tissue = TissueMask(np.zeros((50, 50), bool), downsample=16.0)
    grids = tile(tissue, plan_grids((1.0,), 0.5, [M("10x"), M("20x")], 64), 0.5, (800, 800))
    assert [len(g) for g in grids] == [0, 0]
    assert grids[0].child_offsets is not None and grids[0].child_offsets.tolist() == [0]
    check_alignment(grids, (800, 800))


def test_coords_file_round_trip_is_byte_identical(tmp_path: Path) -> None:
    mask = TissueMask(random_mask(0), downsample=32.0)
    grids = tile(mask, plan_grids((1.0, 4.0), 0.25, [M("10x"), M("20x")], 128), 0.5, (2880, 3840))
    attrs = {"slide_id": "s", "source_mpp": 0.25, "mpp_source": "metadata"}
    for name in ("a.h5", "b.h5"):
        write_coords(tmp_path / name, grids[1], attrs)
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()
    loaded = read_coords(tmp_path / "a.h5")
    np.testing.assert_array_equal(loaded.coords, grids[1].coords)
    assert loaded.parent is not None and grids[1].parent is not None
    np.testing.assert_array_equal(loaded.parent, grids[1].parent)
    assert loaded.attrs["slide_id"] == "s" and loaded.attrs["magnification"] == "20x"
    assert loaded.attrs["patch_size_level0"] == 256 and loaded.attrs["read_level"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5", "b.h5"]  # no temporary file left
