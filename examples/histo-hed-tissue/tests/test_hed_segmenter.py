"""The segmenter on synthetic slides: tissue versus glass, pale tissue, clean-up in microns."""

from __future__ import annotations

import numpy as np
import pytest
from histo.errors import MissingMppError, SlideReadError
from synthetic import ArraySlide, disk, stained

from histo_hed_tissue.config import HedThresholdConfig
from histo_hed_tissue.segmenter import HedThresholdSegmenter

SHAPE = (600, 800)
MPP = 2.0  # microns per pixel of the synthetic images: 1.2 x 1.6 mm, like a small biopsy at 5x


def segment(image: np.ndarray, mpp: float | None = MPP, **params: object) -> tuple[np.ndarray, float]:
    result = HedThresholdSegmenter(HedThresholdConfig.model_validate(params)).segment(ArraySlide(image, mpp))
    assert result.mask.dtype == bool
    return result.mask, result.downsample


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_finds_he_tissue_on_glass_and_drops_debris() -> None:
    tissue = disk(SHAPE, (300, 300), 180)
    speck = disk(SHAPE, (80, 700), 4)  # ~50 px = 200 um^2: far below the minimum area
    image = stained([(tissue, (0.45, 0.35, 0.0)), (speck, (0.6, 0.2, 0.0))], SHAPE)
    mask, downsample = segment(image, thumbnail_size=800)
    assert downsample == pytest.approx(1.0)
    assert mask.shape == SHAPE
    assert iou(mask, tissue) > 0.97
    assert not mask[speck].any()


def test_finds_pale_tissue_that_has_little_colour() -> None:
    # faint eosin-dominated stroma next to a darker nucleus-rich region, as on a pale or faded slide
    pale = disk(SHAPE, (300, 250), 150)
    dark = disk(SHAPE, (300, 600), 100)
    image = stained([(pale, (0.04, 0.1, 0.0)), (dark, (0.5, 0.3, 0.0))], SHAPE)
    mask, _ = segment(image, thumbnail_size=800)
    assert iou(mask, pale | dark) > 0.95


def test_dab_only_tissue_needs_the_dab_stain() -> None:
    brown = disk(SHAPE, (300, 400), 150)
    image = stained([(brown, (0.0, 0.0, 0.5))], SHAPE)
    with_dab, _ = segment(image, stains=["haematoxylin", "eosin", "dab"], thumbnail_size=800)
    assert iou(with_dab, brown) > 0.97
    assert segment(image, stains=["dab"], thumbnail_size=800)[0].sum() == with_dab.sum()


def test_blank_glass_has_no_tissue() -> None:
    mask, _ = segment(stained([], SHAPE), thumbnail_size=800)
    assert not mask.any()


def test_fixed_threshold_keeps_only_denser_stain() -> None:
    light = disk(SHAPE, (300, 200), 120)
    dense = disk(SHAPE, (300, 600), 120)
    image = stained([(light, (0.05, 0.05, 0.0)), (dense, (0.4, 0.3, 0.0))], SHAPE)
    mask, _ = segment(image, threshold=0.3, thumbnail_size=800)
    assert iou(mask, dense) > 0.97
    assert not mask[light].any()


def test_small_holes_are_filled_and_lumens_kept() -> None:
    tissue = disk(SHAPE, (300, 400), 250)
    small_hole = disk(SHAPE, (300, 250), 10)  # ~314 px = 1300 um^2
    lumen = disk(SHAPE, (300, 500), 60)  # ~11300 px = 45000 um^2
    image = stained([(tissue & ~small_hole & ~lumen, (0.4, 0.3, 0.0))], SHAPE)
    mask, _ = segment(image, thumbnail_size=800, closing_radius_um=0, max_hole_area_um2=5000)
    assert mask[small_hole].all()
    assert not mask[lumen].any()
    kept, _ = segment(image, thumbnail_size=800, closing_radius_um=0, max_hole_area_um2=0)
    assert not kept[small_hole].any()


def test_sizes_are_in_microns_so_mpp_changes_what_is_debris() -> None:
    blob = disk(SHAPE, (300, 400), 40)  # ~5000 px
    image = stained([(blob, (0.4, 0.3, 0.0))], SHAPE)
    # at 0.5 mpp the blob is ~1250 um^2, at 4 mpp ~80000 um^2; the minimum is 20000 um^2
    assert not segment(image, mpp=0.5, thumbnail_size=800)[0].any()
    assert segment(image, mpp=4.0, thumbnail_size=800)[0].sum() > 4500


def test_mask_is_computed_on_a_thumbnail_with_its_downsample() -> None:
    tissue = disk(SHAPE, (300, 400), 200)
    image = stained([(tissue, (0.4, 0.3, 0.0))], SHAPE)
    mask, downsample = segment(image, thumbnail_size=200)
    assert mask.shape == (150, 200)
    assert downsample == pytest.approx(4.0)
    expected = disk((150, 200), (75, 100), 50)
    assert iou(mask, expected) > 0.9


def test_a_slide_without_mpp_is_an_error_not_a_guess() -> None:
    image = stained([(disk(SHAPE, (300, 400), 200), (0.4, 0.3, 0.0))], SHAPE)
    with pytest.raises(MissingMppError, match=r"synthetic\.png"):
        segment(image, mpp=None)


def test_a_reader_returning_grey_images_is_reported_with_the_file() -> None:
    grey = np.full(SHAPE, 240, dtype=np.uint8)
    with pytest.raises(SlideReadError, match=r"synthetic\.png: .*not RGB"):
        segment(grey)
