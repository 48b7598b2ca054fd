"""The `hed_threshold` tissue segmenter: deconvolve a thumbnail, threshold, clean up in microns."""

from __future__ import annotations

import numpy as np
from histo.errors import SlideReadError
from histo.interfaces import Slide, TissueMask, TissueSegmenter

from .config import HedThresholdConfig
from .deconvolution import stain_density
from .morphology import close, fill_small_holes, remove_small_objects
from .threshold import log_otsu_threshold


class HedThresholdSegmenter(TissueSegmenter):
    """Finds tissue by stain optical density, which stays high for pale or IHC-stained tissue whose
    saturation is too low for a saturation-Otsu segmenter."""

    def __init__(self, config: HedThresholdConfig) -> None:
        self.config = config

    def segment(self, slide: Slide) -> TissueMask:
        mpp = slide.mpp  # first: a slide without mpp fails (MissingMppError) before any pixel is read
        image, downsample = slide.thumbnail(self.config.thumbnail_size)
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] not in (3, 4):
            raise SlideReadError(
                f"{slide.path}: the slide reader returned an image of shape {image.shape}, not RGB "
                "[height, width, 3]; this is a bug in the reader plugin"
            )
        density = stain_density(image[..., :3], self.config.stains)
        mask = density > self.cut(density)

        pixel_um = (mpp.x * downsample, mpp.y * downsample)  # size of one mask pixel in microns
        pixel_area = pixel_um[0] * pixel_um[1]
        mask = close(mask, self.config.closing_radius_um / min(pixel_um))
        mask = fill_small_holes(mask, self.config.max_hole_area_um2 / pixel_area)
        mask = remove_small_objects(mask, self.config.min_tissue_area_um2 / pixel_area)
        return TissueMask(mask=mask, downsample=float(downsample))

    def cut(self, density: np.ndarray) -> float:
        """The optical density above which a pixel is tissue."""
        if self.config.threshold == "otsu":
            return max(log_otsu_threshold(density), self.config.min_od)
        return float(self.config.threshold)
