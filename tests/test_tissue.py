"""Tissue segmentation: each step against a reference implementation, and the whole on real slides."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from histo.interfaces import Mpp, Slide
from histo.manager import Plugins
from histo.plugins.readers import common as reader_common
from histo.plugins.readers.openslide_reader import OpenSlideReader
from histo.plugins.tissue import OtsuConfig, ThresholdConfig
from histo.plugins.tissue.saturation import (
    OtsuSegmenter,
    ThresholdSegmenter,
    clean_mask,
    close_binary,
    fill_holes,
    median_binary,
    odd_window,
    otsu_threshold,
    read_low_resolution,
    remove_small,
    saturation,
)


class ArraySlide(Slide):
    """An in-memory slide with a 2x pyramid: the tests' scene at a chosen pixel size."""

    def __init__(self, image: np.ndarray, mpp: float, levels: int = 1) -> None:
        self.path = Path("array.tiff")
        self.slide_id = "array"
        self._levels = [image]
        for _ in range(levels - 1):
            self._levels.append(np.asarray(Image.fromarray(self._levels[-1]).reduce(2)))
        self._mpp = mpp

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        return tuple((a.shape[1], a.shape[0]) for a in self._levels)

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        return tuple(self._levels[0].shape[1] / a.shape[1] for a in self._levels)

    @property
    def mpp(self) -> Mpp:
        return Mpp(self._mpp, self._mpp, "metadata")

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        scale = self.level_downsamples[level]
        x, y = round(location[0] / scale), round(location[1] / scale)
        out = np.full((size[1], size[0], 3), 255, np.uint8)
        part = self._levels[level][y : y + size[1], x : x + size[0]]
        out[: part.shape[0], : part.shape[1]] = part
        return out


def scene(mpp: float, size_um: float = 4000.0) -> np.ndarray:
    """A pink disc (radius 1200 µm) with a 100 µm hole and a 30 µm speck of dust, on white glass."""
    n = round(size_um / mpp)
    yy, xx = (np.mgrid[0:n, 0:n] + 0.5) * mpp
    image = np.full((n, n, 3), 240, np.uint8)
    disc = np.hypot(xx - 2000, yy - 2000) < 1200
    hole = np.hypot(xx - 2300, yy - 2000) < 100
    dust = np.hypot(xx - 3700, yy - 300) < 30
    image[disc & ~hole] = (200, 120, 170)
    image[dust] = (90, 40, 80)
    return image


def test_segmenters_are_registered(histo_plugins: Plugins) -> None:
    registry = histo_plugins.registry("tissue_segmenters")
    assert isinstance(registry.get("otsu").spec.build(), OtsuSegmenter)
    assert isinstance(registry.get("threshold").spec.build({"threshold": 30}), ThresholdSegmenter)


def test_saturation_matches_the_hsv_definition() -> None:
    high, low = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    valid = low <= high
    rgb = np.stack([high[valid], low[valid], (high[valid] + low[valid]) // 2], axis=1).astype(np.uint8)
    expected = np.where(high[valid] > 0, (high[valid] - low[valid]) * 255 // np.maximum(high[valid], 1), 0)
    np.testing.assert_array_equal(saturation(rgb[None])[0], expected)


def test_otsu_splits_two_populations() -> None:
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(10, 3, 5000), rng.normal(120, 20, 2000)])
    values = values.clip(0, 255).astype(np.uint8)
    cut = otsu_threshold(values)
    assert 25 < cut < 100
    assert ((values > cut) == (np.arange(7000) >= 5000)).mean() > 0.99


def test_sqrt_otsu_is_otsu_of_sqrt_mapped_back() -> None:
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.normal(4, 2, 8000), rng.normal(40, 10, 1500), rng.normal(150, 30, 1500)])
    values = values.clip(0, 255).astype(np.uint8)
    lut = np.rint(np.sqrt(np.arange(256) / 255) * 255).astype(np.uint8)
    cut = otsu_threshold(values, "sqrt")
    np.testing.assert_array_equal(values > cut, lut[values] > otsu_threshold(lut[values]))
    assert cut < otsu_threshold(values)  # the pale population counts as tissue


@pytest.mark.parametrize("size", [3, 5, 7])
def test_median_of_binary_is_the_median_filter(size: int) -> None:
    mask = np.random.default_rng(size).random((60, 80)) > 0.55
    expected = ndimage.median_filter(mask.astype(np.uint8), size=size, mode="nearest") > 0
    np.testing.assert_array_equal(median_binary(mask, size), expected)


@pytest.mark.parametrize("size", [3, 5])
def test_box_closing_is_grey_closing(size: int) -> None:
    mask = np.random.default_rng(size).random((50, 70)) > 0.7
    expected = ndimage.grey_closing(mask.astype(np.uint8), size=(size, size), mode="nearest") > 0
    np.testing.assert_array_equal(close_binary(mask, size), expected)


def test_fill_holes_only_small_enclosed_ones() -> None:
    mask = np.zeros((40, 40), bool)
    mask[5:35, 5:35] = True
    mask[10:12, 10:12] = False  # 4 px hole: filled
    mask[20:30, 20:30] = False  # 100 px hole: kept
    mask[0:40, 0:2] = False  # glass at the border is never a hole
    filled = fill_holes(mask, max_area_px=10)
    assert filled[10:12, 10:12].all()
    assert not filled[20:30, 20:30].any()
    assert not filled[:, 0:2].any()
    assert fill_holes(mask, 0) is mask


def test_remove_small_uses_8_connectivity() -> None:
    mask = np.zeros((30, 30), bool)
    mask[2:12, 2:12] = True  # 100 px: kept
    mask[20, 20] = mask[21, 21] = mask[22, 22] = True  # 3 px diagonal chain: one piece
    assert remove_small(mask, 3)[20:23, 20:23].sum() == 3
    cleaned = remove_small(mask, 4)
    assert cleaned[2:12, 2:12].all() and not cleaned[15:, 15:].any()


def test_windows_are_odd_and_nearest() -> None:
    widths = {um: odd_window(um, 8.0) for um in (0, 4, 8, 16, 32, 40, 48, 56)}
    assert widths == {0: 1, 4: 1, 8: 1, 16: 3, 32: 5, 40: 5, 48: 7, 56: 7}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cleaning_the_tissue_box_equals_cleaning_the_whole_mask(seed: int) -> None:
    rng = np.random.default_rng(seed)
    binary = np.zeros((200, 160), bool)
    noise = ndimage.gaussian_filter(rng.random((90, 80)), 3)
    binary[40:130, 0:80] = noise > np.quantile(noise, 0.5)  # touches the left border
    binary[150, 150] = True  # a lone speck far away widens the box
    config = OtsuConfig(max_hole_area_um2=20 * 64, min_tissue_area_um2=60 * 64)  # 20 and 60 px at 8 µm
    full = remove_small(fill_holes(close_binary(median_binary(binary, 7), 5), 20), 60)
    np.testing.assert_array_equal(clean_mask(binary, 8.0, config), full)
    assert full.any() and not clean_mask(np.zeros_like(binary), 8.0, config).any()


def test_read_low_resolution_in_strips_equals_one_read(monkeypatch: pytest.MonkeyPatch) -> None:
    slide = ArraySlide(scene(2.0), mpp=2.0)
    whole, downsample = read_low_resolution(slide, 8.0)
    monkeypatch.setattr(reader_common, "STRIP_BYTES", 3 * 2000 * 16)  # 16 rows per strip
    striped, striped_downsample = read_low_resolution(slide, 8.0)
    np.testing.assert_array_equal(whole, striped)
    assert downsample == striped_downsample == 4.0
    assert whole.shape == (500, 500, 3)


@pytest.mark.parametrize("mpp,levels", [(4.0, 1), (2.0, 3)])
def test_otsu_finds_the_disc_in_square_microns(mpp: float, levels: int) -> None:
    """The same scene at two pixel sizes gives the same mask: sizes are in microns, not pixels."""
    slide = ArraySlide(scene(mpp), mpp=mpp, levels=levels)
    segmenter = OtsuSegmenter(OtsuConfig(min_tissue_area_um2=10_000, max_hole_area_um2=50_000))
    mask = segmenter.segment(slide)
    mask_mpp = mask.downsample * mpp
    assert mask_mpp == pytest.approx(8.0, rel=0.01)
    area = mask.mask.sum() * mask_mpp**2
    assert area == pytest.approx(np.pi * 1200**2, rel=0.03)  # hole (31,400 µm²) filled, dust dropped
    centre = round(2300 / mask_mpp)
    assert mask.mask[round(2000 / mask_mpp), centre]  # the filled hole
    assert not mask.mask[: round(600 / mask_mpp), round(3400 / mask_mpp) :].any()  # the dust


def test_holes_above_the_limit_stay_open() -> None:
    slide = ArraySlide(scene(4.0), mpp=4.0)
    mask = OtsuSegmenter(OtsuConfig(max_hole_area_um2=20_000)).segment(slide)
    mask_mpp = mask.downsample * 4.0
    assert not mask.mask[round(2000 / mask_mpp), round(2300 / mask_mpp)]


def test_threshold_segmenter_uses_its_threshold() -> None:
    slide = ArraySlide(scene(4.0), mpp=4.0)
    assert ThresholdSegmenter(ThresholdConfig(threshold=250)).segment(slide).mask.sum() == 0
    assert ThresholdSegmenter(ThresholdConfig(threshold=20)).segment(slide).tissue_fraction > 0.25


def test_blank_glass_has_no_tissue() -> None:
    rng = np.random.default_rng(0)
    glass = (235 + rng.integers(-4, 5, (1000, 1000, 3))).astype(np.uint8)
    assert OtsuSegmenter(OtsuConfig()).segment(ArraySlide(glass, mpp=1.0)).mask.sum() == 0


@pytest.mark.parametrize("name,override,low,high", [("cmu-1-small-region.svs", None, 0.3, 0.5),
                                                    ("tcga-cr-7395-01a-01-ts1.svs", 0.25, 0.55, 0.75)])
def test_real_slides(slides_dir: Path, name: str, override: float | None, low: float, high: float) -> None:
    with OpenSlideReader().open(slides_dir / name, override) as slide:
        mask = OtsuSegmenter(OtsuConfig()).segment(slide)
        width, height = slide.dimensions
        mask_mpp = mask.downsample * slide.mpp.mean
    assert mask_mpp == pytest.approx(8.0, rel=0.05)
    assert mask.mask.shape == (round(height / mask.downsample), round(width / mask.downsample))
    assert low < mask.tissue_fraction < high


@pytest.mark.parametrize(
    "name,mpp,downsample",
    [
        ("cmu-1-small-region.svs", None, 16.0),
        ("cmu-1-small-region.svs", None, 2.9),
        ("tcga-cr-7395-01a-01-ts1.svs", 0.25, 32.0),
    ],
)
def test_concurrent_strip_reads_equal_one_read(
    slides_dir: Path, monkeypatch: pytest.MonkeyPatch, name: str, mpp: float | None, downsample: float
) -> None:
    """Strips decoded on several threads give the pixels of one sequential read (the TCGA slide's
    level 1 is 2.0005x, where strips would shift: it is read in one piece)."""
    monkeypatch.setattr(reader_common, "usable_cores", lambda: 3)
    with OpenSlideReader().open(slides_dir / name, mpp) as slide:
        assert slide.concurrent_reads
        calls: list[tuple[int, int]] = []
        read = slide.read_region

        def counting(location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
            calls.append(size)
            return read(location, level, size)

        monkeypatch.setattr(slide, "read_region", counting)
        together, together_downsample = reader_common.read_downsampled(slide, downsample)
        strips = len(calls)
        monkeypatch.setattr(slide, "concurrent_reads", False)
        alone, alone_downsample = reader_common.read_downsampled(slide, downsample)
    assert strips == (1 if name.startswith("tcga") else 3) and len(calls) == strips + 1
    np.testing.assert_array_equal(together, alone)
    assert together_downsample == alone_downsample
