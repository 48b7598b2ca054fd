"""Whole-level reads of the real TCGA slide's JPEG 2000 levels: decoded with imagecodecs on all cores,
they must give OpenSlide's pixels exactly, and fall back to OpenSlide wherever that path does not apply."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from histo.errors import SlideReadError
from histo.plugins.readers import OpenSlideConfig
from histo.plugins.readers.aperio_jp2k import MIN_PIXELS, jp2k_levels
from histo.plugins.readers.common import read_downsampled, read_pool
from histo.plugins.readers.openslide_reader import OpenSlideReader, OpenSlideSlide

pytestmark = pytest.mark.shared_data
TCGA = "tcga-cr-7395-01a-01-ts1.svs"


@pytest.fixture(scope="module")
def tcga(slides_dir: Path) -> Path:
    return slides_dir / TCGA


def open_pair(path: Path) -> tuple[OpenSlideSlide, OpenSlideSlide]:
    fast = OpenSlideReader().open(path, 0.25)
    plain = OpenSlideReader(OpenSlideConfig(fast_jpeg2000=False)).open(path, 0.25)
    assert isinstance(fast, OpenSlideSlide) and isinstance(plain, OpenSlideSlide)
    return fast, plain


def test_both_levels_are_found_as_jpeg2000_tiles(tcga: Path) -> None:
    fast, _ = open_pair(tcga)
    levels = jp2k_levels(tcga, fast.level_dimensions)
    assert sorted(levels) == [0, 1]
    assert (levels[1].width, levels[1].height) == fast.level_dimensions[1]
    assert levels[1].tile_width == levels[1].tile_height == 256


@pytest.mark.parametrize(
    ("location", "level", "size"),
    [
        ((0, 0), 1, None),  # the overview the segmenter and QC read (level 1, downsample 2.0005)
        ((300, 203), 0, (1500, 1100)),  # level 0, an origin inside a tile, edges inside tiles
        ((4443 - 1100, 3567 - 1000), 0, (1100, 1000)),  # up to the level's last (partial) tiles
    ],
)
def test_large_reads_equal_openslide_exactly(
    tcga: Path, location: tuple[int, int], level: int, size: tuple[int, int] | None
) -> None:
    fast, plain = open_pair(tcga)
    size = size or fast.level_dimensions[level]
    assert fast._jp2k is not None
    assert fast._jp2k.read(level, (location[0], location[1]), size) is not None  # the path is taken
    assert np.array_equal(fast.read_region(location, level, size), plain.read_region(location, level, size))


def test_a_read_from_a_read_pool_thread_decodes_in_that_thread(tcga: Path) -> None:
    """Strips read concurrently (integer-downsample levels) must not wait on the pool they run in."""
    fast, plain = open_pair(tcga)
    size = fast.level_dimensions[1]
    pixels = read_pool().submit(fast.read_region, (0, 0), 1, size).result(timeout=60)
    assert np.array_equal(pixels, plain.read_region((0, 0), 1, size))


def test_segmenter_overview_is_unchanged(tcga: Path) -> None:
    fast, plain = open_pair(tcga)
    for downsample in (4.0, 32.0):
        ours, ours_ds = read_downsampled(fast, downsample)
        theirs, theirs_ds = read_downsampled(plain, downsample)
        assert ours_ds == theirs_ds and np.array_equal(ours, theirs)


def test_reads_this_path_does_not_serve_are_left_to_openslide(tcga: Path) -> None:
    fast, _ = open_pair(tcga)
    assert fast._jp2k is not None
    small = (512, 512)
    assert small[0] * small[1] < MIN_PIXELS
    assert fast._jp2k.read(0, (0, 0), small) is None  # patch-sized: OpenSlide's tile cache serves it
    assert fast._jp2k.read(1, (0.5, 0), (1100, 1000)) is None  # OpenSlide interpolates there
    assert fast._jp2k.read(1, (1200, 0), (1100, 1000)) is None  # runs past the level's edge
    assert OpenSlideReader(OpenSlideConfig(fast_jpeg2000=False)).open(tcga, 0.25)._jp2k is None  # type: ignore[attr-defined]


def test_other_formats_take_openslides_path(slides_dir: Path) -> None:
    """CMU-1's levels are JPEG: no JPEG 2000 levels, every read is OpenSlide's."""
    cmu = OpenSlideReader().open(slides_dir / "cmu-1-small-region.svs")
    assert isinstance(cmu, OpenSlideSlide) and cmu._jp2k is not None
    assert cmu._jp2k.levels() == {}
    assert cmu._jp2k.read(0, (0, 0), cmu.level_dimensions[0]) is None


def test_a_tile_that_does_not_decode_gives_openslides_error(tcga: Path, tmp_path: Path) -> None:
    """A damaged tile is not papered over: the read falls back to OpenSlide, whose failure names the file."""
    copy = tmp_path / "damaged.svs"
    shutil.copyfile(tcga, copy)
    slide = OpenSlideReader().open(copy, 0.25)
    assert isinstance(slide, OpenSlideSlide) and slide._jp2k is not None
    tiled = slide._jp2k.levels()[1]
    with copy.open("r+b") as handle:  # keep the codestream's first bytes, garble the rest of tile 5
        handle.seek(tiled.offsets[5] + 16)
        handle.write(b"\xff" * (tiled.byte_counts[5] - 16))
    slide = OpenSlideReader().open(copy, 0.25)
    assert isinstance(slide, OpenSlideSlide) and slide._jp2k is not None
    assert slide._jp2k.read(1, (0, 0), slide.level_dimensions[1]) is None
    with pytest.raises(SlideReadError, match=r"damaged\.svs"):
        slide.read_region((0, 0), 1, slide.level_dimensions[1])
