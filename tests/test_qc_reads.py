"""The QC thumbnail is cut from the pixels the segmenter read, and equals one read afresh."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from histo.interfaces import Slide
from histo.plugins.readers.openslide_reader import OpenSlideReader
from histo.plugins.stages.tile import QC_SIZE
from histo.plugins.tiling import qc
from histo.plugins.tiling.reads import RecordingSlide
from histo.plugins.tissue import OtsuConfig
from histo.plugins.tissue.saturation import OtsuSegmenter


class Counting(RecordingSlide):
    """Counts what reaches the real slide (a RecordingSlide with no budget passes every read on)."""

    def __init__(self, slide: Slide) -> None:
        super().__init__(slide, budget_bytes=0)
        self.reads = 0

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        self.reads += 1
        return super().read_region(location, level, size)


@pytest.mark.parametrize("name", ["cmu-1-small-region.svs", "tcga-cr-7395-01a-01-ts1.svs"])
def test_qc_thumbnail_reuses_the_segmenters_reads(slides_dir: Path, name: str) -> None:
    reader = OpenSlideReader()
    with reader.open(slides_dir / name, 0.25 if name.startswith("tcga") else None) as slide:
        counting = Counting(slide)
        recording = RecordingSlide(counting)
        OtsuSegmenter(OtsuConfig()).segment(recording)
        read_for_segmentation = counting.reads
        assert read_for_segmentation > 0
        image, downsample = qc.thumbnail(recording, QC_SIZE)
        assert counting.reads == read_for_segmentation, "the thumbnail read nothing more from the slide"
        assert recording.reused > 0
        fresh, fresh_downsample = qc.thumbnail(slide, QC_SIZE)
    assert downsample == fresh_downsample
    np.testing.assert_array_equal(image, fresh)


def test_regions_are_cut_from_several_kept_ones_or_read(slides_dir: Path) -> None:
    """A request spanning two kept strips is assembled; one partly outside them is read; nothing is
    kept past the budget."""
    with OpenSlideReader().open(slides_dir / "cmu-1-small-region.svs") as slide:
        counting = Counting(slide)
        recording = RecordingSlide(counting, budget_bytes=2 * 300 * 100 * 4)
        recording.read_region((0, 0), 0, (300, 100))
        recording.read_region((0, 100), 0, (300, 100))
        recording.read_region((0, 200), 0, (300, 100))  # past the budget: not kept
        assert counting.reads == 3
        spanning = recording.read_region((10, 50), 0, (200, 100))
        assert counting.reads == 3 and recording.reused == 1
        np.testing.assert_array_equal(spanning, slide.read_region((10, 50), 0, (200, 100)))
        recording.read_region((10, 150), 0, (200, 100))
        assert counting.reads == 4, "rows 200-249 were not kept: read from the slide"
