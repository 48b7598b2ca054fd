"""Slide readers on real files (../shared/data/slides) and on plain images made from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openslide
import pytest
from PIL import Image

from histo.errors import MissingMppError, SlideOpenError, SlideReadError
from histo.interfaces import Mpp
from histo.manager import Plugins
from histo.plugins.readers import ImageConfig
from histo.plugins.readers.common import to_rgb
from histo.plugins.readers.image_reader import ImageReader
from histo.plugins.readers.openslide_reader import OpenSlideReader

CMU = "cmu-1-small-region.svs"
TCGA = "tcga-cr-7395-01a-01-ts1.svs"


@pytest.fixture
def reader() -> OpenSlideReader:
    return OpenSlideReader()


def test_readers_are_registered(histo_plugins: Plugins) -> None:
    registry = histo_plugins.registry("slide_readers")
    assert isinstance(registry.get("openslide").spec.build(), OpenSlideReader)
    image = registry.get("image").spec.build({"mpp": 0.5})
    assert isinstance(image, ImageReader) and image.config.mpp == 0.5


def test_openslide_geometry_mpp_and_pixels(reader: OpenSlideReader, slides_dir: Path) -> None:
    with reader.open(slides_dir / CMU) as slide:
        assert slide.slide_id == "cmu-1-small-region"
        assert slide.level_dimensions == ((2220, 2967),)
        assert slide.level_downsamples == (1.0,)
        assert slide.mpp == Mpp(0.499, 0.499, "metadata")
        patch = slide.read_region((1100, 2000), 0, (64, 32))
        assert patch.shape == (32, 64, 3) and patch.dtype == np.uint8
        assert patch.flags.writeable
        assert patch.std() > 10  # real tissue, not a blank tile
    expected = openslide.OpenSlide(str(slides_dir / CMU)).read_region((1100, 2000), 0, (64, 32))
    np.testing.assert_array_equal(patch, np.asarray(expected)[..., :3])


def test_out_of_bounds_pixels_are_white(reader: OpenSlideReader, slides_dir: Path) -> None:
    with reader.open(slides_dir / CMU) as slide:
        width, height = slide.dimensions
        patch = slide.read_region((width - 10, height - 10), 0, (20, 20))
    assert patch.shape == (20, 20, 3)
    assert (patch[10:, :] == 255).all() and (patch[:, 10:] == 255).all()


def test_override_wins_over_metadata(reader: OpenSlideReader, slides_dir: Path) -> None:
    with reader.open(slides_dir / CMU, mpp_override=0.25) as slide:
        assert slide.mpp == Mpp(0.25, 0.25, "override")


def test_missing_mpp_names_the_slide_and_the_recipe_keys(reader: OpenSlideReader, slides_dir: Path) -> None:
    with reader.open(slides_dir / TCGA) as slide:
        assert slide.level_count == 2
        with pytest.raises(MissingMppError) as info:
            _ = slide.mpp
    message = str(info.value)
    assert "tcga-cr-7395-01a-01-ts1" in message
    assert "mpp_overrides: {tcga-cr-7395-01a-01-ts1:" in message and "mpp_csv" in message
    with reader.open(slides_dir / TCGA, mpp_override=0.25) as slide:
        assert slide.mpp == Mpp(0.25, 0.25, "override")


def test_unreadable_pixels_raise_naming_slide_and_region(reader: OpenSlideReader, slides_dir: Path) -> None:
    pattern = r"slide unreadable .*16x16 pixels at level 0.*\(0, 0\)"
    unreadable = slides_dir / "openslide-fixtures" / "unreadable.svs"
    with reader.open(unreadable) as slide, pytest.raises(SlideReadError, match=pattern):
        slide.read_region((0, 0), 0, (16, 16))


@pytest.mark.parametrize("name", ["openslide-fixtures/unopenable.tiff", "broken/broken.svs", "missing.svs"])
def test_unopenable_files_raise_naming_the_file(reader: OpenSlideReader, slides_dir: Path, name: str) -> None:
    with pytest.raises(SlideOpenError) as info:
        reader.open(slides_dir / name)
    assert str(slides_dir / name) in str(info.value)


def test_truncated_copy_cannot_be_opened(reader: OpenSlideReader, slides_dir: Path, tmp_path: Path) -> None:
    data = (slides_dir / CMU).read_bytes()
    (tmp_path / "truncated.svs").write_bytes(data[: len(data) // 2])
    with pytest.raises(SlideOpenError, match=r"truncated\.svs"):
        reader.open(tmp_path / "truncated.svs")


def test_corrupt_tiles_fail_on_read_not_as_blank(
    reader: OpenSlideReader, slides_dir: Path, tmp_path: Path
) -> None:
    data = bytearray((slides_dir / CMU).read_bytes())
    data[len(data) // 5 : len(data) // 2] = bytes(len(data) // 2 - len(data) // 5)
    (tmp_path / "corrupt.svs").write_bytes(bytes(data))
    with reader.open(tmp_path / "corrupt.svs") as slide, pytest.raises(SlideReadError, match="corrupt"):
        slide.read_region((0, 0), 0, slide.dimensions)


def test_bad_level_is_an_error(reader: OpenSlideReader, slides_dir: Path) -> None:
    with reader.open(slides_dir / CMU) as slide, pytest.raises(SlideReadError, match="level 3"):
        slide.read_region((0, 0), 3, (8, 8))


# -- plain images ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def region(slides_dir: Path) -> np.ndarray:
    with OpenSlideReader().open(slides_dir / CMU) as slide:
        return slide.read_region((300, 400), 0, (1100, 1300))


def test_image_reader_builds_a_virtual_pyramid(region: np.ndarray, tmp_path: Path) -> None:
    path = tmp_path / "roi.png"
    Image.fromarray(region).save(path)
    with ImageReader(ImageConfig(mpp=0.5, min_level_size=256)).open(path) as slide:
        assert slide.slide_id == "roi"
        assert slide.level_dimensions == ((1100, 1300), (550, 650), (275, 325))
        assert slide.level_downsamples == (1.0, 2.0, 4.0)
        assert slide.mpp == Mpp(0.5, 0.5, "config")
        np.testing.assert_array_equal(slide.read_region((20, 40), 0, (30, 10)), region[40:50, 20:50])
        low = slide.read_region((0, 0), 1, (550, 650)).astype(np.float64)
        expected = region.reshape(650, 2, 550, 2, 3).mean(axis=(1, 3))
        assert np.abs(low - expected).max() <= 1
        edge = slide.read_region((1000, 1200), 2, (50, 50))
        assert (edge[25:] == 255).all() and (edge[:, 25:] == 255).all()
        assert not (edge[:25, :25] == 255).all()


def test_image_reader_single_level_and_override(region: np.ndarray, tmp_path: Path) -> None:
    path = tmp_path / "roi.jpg"
    Image.fromarray(region).save(path, quality=95)
    with ImageReader(ImageConfig(mpp=0.5, pyramid=False)).open(path, mpp_override=0.3) as slide:
        assert slide.level_count == 1
        assert slide.mpp == Mpp(0.3, 0.3, "override")


def test_image_reader_without_mpp_says_how_to_give_it(region: np.ndarray, tmp_path: Path) -> None:
    path = tmp_path / "roi.png"
    Image.fromarray(region).save(path)
    with ImageReader().open(path) as slide, pytest.raises(MissingMppError, match=r"mpp_overrides: \{roi:"):
        _ = slide.mpp


def test_image_reader_truncated_file_fails_on_read(region: np.ndarray, tmp_path: Path) -> None:
    path = tmp_path / "roi.png"
    Image.fromarray(region).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with ImageReader(ImageConfig(mpp=0.5)).open(path) as slide, pytest.raises(SlideReadError, match="roi"):
        slide.read_region((0, 0), 0, (8, 8))
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(SlideOpenError, match=r"notes\.png"):
        ImageReader(ImageConfig(mpp=0.5)).open(tmp_path / "notes.png")


def test_transparency_is_composited_onto_white() -> None:
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[0, 0, 3] = 255  # opaque red-ish
    rgba[0, 1, 3] = 0  # fully transparent
    rgba[1, :, 3] = 128  # half
    rgb = to_rgb(Image.fromarray(rgba, "RGBA"))
    assert rgb[0, 0].tolist() == [200, 0, 0]
    assert rgb[0, 1].tolist() == [255, 255, 255]
    assert abs(int(rgb[1, 0, 0]) - 227) <= 1 and abs(int(rgb[1, 0, 1]) - 127) <= 1


@pytest.mark.parametrize(
    ("suffix", "save", "where"),
    [
        (".png", {"dpi": (50_800, 25_400)}, "PNG pHYs"),
        (".jpg", {"dpi": (50_800, 25_400)}, "JPEG JFIF density"),
        (".tif", {"dpi": (50_800, 25_400)}, "TIFF XResolution"),
        (".tif", {"x_resolution": 20_000, "y_resolution": 10_000, "resolution_unit": 3}, "TIFF XResolution"),
    ],
)
def test_image_reader_takes_the_resolution_the_file_states(
    region: np.ndarray, tmp_path: Path, suffix: str, save: dict[str, object], where: str
) -> None:
    """0.5 x 1 µm/px written as the file format stores it (pixels per inch or per cm)."""
    path = tmp_path / f"roi{suffix}"
    Image.fromarray(region).save(path, **save)
    with ImageReader().open(path) as slide:
        assert slide.mpp == Mpp(pytest.approx(0.5), pytest.approx(1.0), "metadata")
    with ImageReader(ImageConfig(mpp=0.25)).open(path) as slide:  # the file wins over the reader-wide value
        assert slide.mpp.source == "metadata"
    with ImageReader().open(path, mpp_override=0.3) as slide:  # a per-slide override wins over the file
        assert slide.mpp == Mpp(0.3, 0.3, "override")
    from histo.plugins.readers.image_resolution import file_resolution

    with Image.open(path) as image:
        stated = file_resolution(image)
    assert stated is not None and stated.where == where


def test_a_screen_resolution_is_not_taken_for_a_microscope_s(region: np.ndarray, tmp_path: Path) -> None:
    """Image editors write 72 or 96 dpi (353 or 265 µm/px): no scan is that coarse, so it is ignored."""
    path = tmp_path / "screenshot.png"
    Image.fromarray(region).save(path, dpi=(72, 72))
    with ImageReader().open(path) as slide, pytest.raises(MissingMppError) as caught:
        _ = slide.mpp
    message = str(caught.value)
    assert "PNG pHYs states 352.7 x 352.7 µm/px, a screen or print default" in message
    assert "`mpp_overrides: {screenshot: <microns per pixel>}`" in message
    with ImageReader(ImageConfig(mpp=0.5)).open(path) as slide:
        assert slide.mpp == Mpp(0.5, 0.5, "config")
    plain = tmp_path / "plain.png"
    Image.fromarray(region).save(plain)  # no pHYs chunk at all
    with ImageReader().open(plain) as slide, pytest.raises(MissingMppError, match="states no resolution"):
        _ = slide.mpp
