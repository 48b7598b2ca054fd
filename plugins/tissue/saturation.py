"""The saturation pipeline: low-resolution read, threshold, median, closing, hole filling, area filter.

Stained tissue is coloured and glass is grey or white, so HSV saturation separates them across stains
and scanners better than brightness does. Everything after the read works on a small boolean image
with separable box sums, so a whole slide segments in a few tens of milliseconds.
"""

from __future__ import annotations

import math
from abc import abstractmethod

import numpy as np
from scipy import ndimage

from histo.interfaces import Slide, TissueMask, TissueSegmenter
from histo.plugins.readers.common import read_downsampled

from . import OtsuConfig, SaturationConfig, ThresholdConfig


def read_low_resolution(slide: Slide, target_mpp: float) -> tuple[np.ndarray, float]:
    """The slide as RGB at about `target_mpp` µm/px (never finer than level 0), and its downsample."""
    return read_downsampled(slide, max(target_mpp / slide.mpp.mean, 1.0))


def saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation scaled to 0-255 (uint8), as OpenCV and most pathology tools define it."""
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    high = np.maximum(np.maximum(red, green), blue).astype(np.float32)
    low = np.minimum(np.minimum(red, green), blue)
    # exact: (high - low) * 255 is an exact float32 integer, and IEEE division rounds correctly
    return ((high - low) * 255 / np.maximum(high, 1)).astype(np.uint8)


SQRT_LUT = np.rint(np.sqrt(np.arange(256) / 255) * 255).astype(np.int64)


def otsu_threshold(values: np.ndarray, transform: str = "none") -> int:
    """Otsu's threshold of uint8 values: the cut maximising between-class variance (foreground is > t).

    With `transform="sqrt"` the cut is chosen on sqrt(values) and mapped back: the square root
    compresses the wide spread of stained tissue, so the split falls between glass and tissue instead
    of between pale and dark stain (plain Otsu drops pale stroma on mostly-glass slides).
    """
    hist = np.bincount(values.ravel(), minlength=256).astype(np.float64)
    if transform == "sqrt":
        cut = _otsu_of_histogram(np.bincount(SQRT_LUT, weights=hist, minlength=256))
        return int(np.searchsorted(SQRT_LUT, cut, side="right")) - 1  # last value mapped to <= cut
    return _otsu_of_histogram(hist)


def _otsu_of_histogram(hist: np.ndarray) -> int:
    total = hist.sum()
    if total == 0:
        return 0
    levels = np.arange(256, dtype=np.float64)
    weight0 = np.cumsum(hist)
    weight1 = total - weight0
    sum0 = np.cumsum(hist * levels)
    mean0 = np.divide(sum0, weight0, out=np.zeros(256), where=weight0 > 0)
    mean1 = np.divide(sum0[-1] - sum0, weight1, out=np.zeros(256), where=weight1 > 0)
    between = weight0 * weight1 * (mean0 - mean1) ** 2
    return int(np.argmax(between))


def odd_window(microns: float, mpp: float) -> int:
    """A window width in pixels, rounded to an odd number so it is centred (0 or 1 mean 'off')."""
    pixels = microns / mpp
    return 2 * math.floor((pixels - 1) / 2 + 0.5) + 1 if pixels >= 1 else 1


def box_count(mask: np.ndarray, size: int) -> np.ndarray:
    """Set pixels in the `size` x `size` window centred on each pixel (odd `size`), the image extended
    by repeating its border pixels (scipy's mode "nearest").

    Separable sums of shifted slices in the smallest integer type that holds them: 5x faster than
    `ndimage.uniform_filter`'s float lines at the windows used here (5-9 px), with exact counts.
    """
    radius, (height, width) = size // 2, mask.shape
    dtype = np.uint8 if size * size <= 255 else np.int32
    padded = np.pad(mask, radius, mode="edge").astype(dtype)
    rows = padded[:, :width].copy()
    for shift in range(1, size):
        rows += padded[:, shift : shift + width]
    counts = rows[:height].copy()
    for shift in range(1, size):
        counts += rows[shift : shift + height]
    return counts


def median_binary(mask: np.ndarray, size: int) -> np.ndarray:
    """Median filter of a boolean image: a majority vote over the window, done with box sums.

    Thresholding commutes with the median, so this equals thresholding a median-smoothed image.
    """
    return mask if size <= 1 else box_count(mask, size) > size * size // 2


def close_binary(mask: np.ndarray, size: int) -> np.ndarray:
    """Morphological closing with a square window: dilation (any in window), then erosion (all in window)."""
    if size <= 1:
        return mask
    dilated = box_count(mask, size) > 0
    return box_count(dilated, size) == size * size


def fill_holes(mask: np.ndarray, max_area_px: float) -> np.ndarray:
    """Fill background regions enclosed by tissue whose area is at most `max_area_px`."""
    if max_area_px <= 0:
        return mask
    labels, count = ndimage.label(~mask)
    if count == 0:
        return mask
    areas = np.bincount(labels.ravel(), minlength=count + 1)
    fill = areas <= max_area_px
    border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    fill[border] = False
    fill[0] = False
    return mask | fill[labels]


def remove_small(mask: np.ndarray, min_area_px: float) -> np.ndarray:
    """Drop 8-connected tissue pieces smaller than `min_area_px`."""
    if min_area_px <= 0:
        return mask
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if count == 0:
        return mask
    keep = np.bincount(labels.ravel(), minlength=count + 1) >= min_area_px
    keep[0] = False
    return keep[labels]


def bounding_box(mask: np.ndarray, margin: int) -> tuple[slice, slice] | None:
    """The rows and columns holding any True pixel, widened by `margin` (None for an empty mask)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not rows.size:
        return None
    return (
        slice(max(int(rows[0]) - margin, 0), min(int(rows[-1]) + margin + 1, mask.shape[0])),
        slice(max(int(cols[0]) - margin, 0), min(int(cols[-1]) + margin + 1, mask.shape[1])),
    )


def clean_mask(binary: np.ndarray, mask_mpp: float, config: SaturationConfig) -> np.ndarray:
    """Median, closing, hole filling and the area filter, with every size converted from microns.

    Works on the box around the thresholded pixels, widened so that every step sees only glass
    beyond it: the result is the same as on the whole image, for a fraction of the time on slides
    that are mostly glass.
    """
    median, close = odd_window(config.median_um, mask_mpp), odd_window(config.close_um, mask_mpp)
    out = np.zeros_like(binary)
    box = bounding_box(binary, margin=median + close + 1)
    if box is None:
        return out
    mask = close_binary(median_binary(binary[box], median), close)
    pixel_area = mask_mpp**2
    mask = fill_holes(mask, config.max_hole_area_um2 / pixel_area)
    out[box] = remove_small(mask, config.min_tissue_area_um2 / pixel_area)
    return out


class SaturationSegmenter(TissueSegmenter):
    """Saturation above a threshold is tissue; subclasses choose the threshold."""

    def __init__(self, config: SaturationConfig) -> None:
        self.config = config
        self.last_threshold: int | None = None  # the threshold of the latest slide, for logs and QC

    @abstractmethod
    def threshold(self, sat: np.ndarray) -> int:
        """The saturation cut for this slide (pixels strictly above it are tissue)."""

    def segment(self, slide: Slide) -> TissueMask:
        rgb, downsample = read_low_resolution(slide, self.config.target_mpp)
        sat = saturation(rgb)
        self.last_threshold = self.threshold(sat)
        mask_mpp = slide.mpp.mean * downsample
        return TissueMask(clean_mask(sat > self.last_threshold, mask_mpp, self.config), downsample)


class OtsuSegmenter(SaturationSegmenter):
    config: OtsuConfig

    def threshold(self, sat: np.ndarray) -> int:
        return max(otsu_threshold(sat, self.config.transform), self.config.min_threshold)


class ThresholdSegmenter(SaturationSegmenter):
    config: ThresholdConfig

    def threshold(self, sat: np.ndarray) -> int:
        return self.config.threshold
