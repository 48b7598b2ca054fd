"""DICOM whole-slide images: a folder of one series' instance files is one slide, opened by OpenSlide.

The series are written here (tests/dicom_wsi.py): no DICOM whole-slide image ships with the real data.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from dicom_wsi import write_series
from PIL import Image, ImageDraw

from histo.errors import SlideOpenError, SlideReadError
from histo.interfaces import Mpp
from histo.manager import Plugins
from histo.plugins.readers.openslide_reader import OpenSlideReader
from histo.plugins.tiling.coords_file import read_coords
from histo.plugins.tiling.inputs import find_slides
from histo.run import run_recipe


def tissue(width: int = 1600, height: int = 1280) -> np.ndarray:
    """A stained ellipse on glass, with some texture, as RGB pixels."""
    image = Image.new("RGB", (width, height), (244, 244, 244))
    ImageDraw.Draw(image).ellipse((150, 120, width - 150, height - 120), fill=(190, 90, 170))
    pixels = np.asarray(image).copy()
    pixels[::7, ::5] = (120, 40, 110)  # nuclei-ish dots, so JPEG has something to keep
    return pixels


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-level series (1600 x 1280 px at 0.5 µm/px, then 400 x 320 px) in folder `case-a`."""
    folder = tmp_path_factory.mktemp("dicom") / "case-a"
    write_series(folder, tissue(), mpp=0.5)
    return folder


def test_a_series_folder_is_one_slide(series: Path) -> None:
    reader = OpenSlideReader()
    with reader.open(series) as slide:
        assert slide.slide_id == "case-a" and slide.path == series
        assert slide.level_dimensions == ((1600, 1280), (400, 320))
        assert slide.mpp == Mpp(0.5, 0.5, "metadata")  # DICOM PixelSpacing, through OpenSlide
        patch = slide.read_region((700, 600), 0, (64, 64)).astype(int)
        assert np.abs(patch.mean(axis=(0, 1)) - tissue()[600:664, 700:764].mean(axis=(0, 1))).max() < 8
    with reader.open(series / "level-1.dcm", mpp_override=0.25) as slide:  # any file opens the series
        assert slide.slide_id == "case-a" and slide.level_count == 2
        assert slide.mpp == Mpp(0.25, 0.25, "override")


def test_find_slides_counts_a_series_once(series: Path, tmp_path: Path) -> None:
    root = tmp_path / "cohort"
    shutil.copytree(series, root / "site-1" / "case-a")
    shutil.copytree(series, root / "site-1" / "case-b")
    assert find_slides(root, [".svs", ".dcm"]) == [root / "site-1" / "case-a", root / "site-1" / "case-b"]
    assert find_slides(root / "site-1" / "case-a" / "level-0.dcm", [".dcm"]) == [root / "site-1" / "case-a"]
    shutil.copytree(series, root / "site-2" / "case-a")
    with pytest.raises(Exception, match="share slide ids"):
        find_slides(root, [".dcm"])


def broken_copy(series: Path, folder: Path, damage: Callable[[Path], Any]) -> Path:
    shutil.copytree(series, folder)
    damage(folder)
    return folder


def truncate(path: Path, keep: float = 0.6) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_each_bad_file_is_named_with_its_own_cause(series: Path, tmp_path: Path) -> None:
    reader = OpenSlideReader()

    def error(folder: Path) -> str:
        with pytest.raises(SlideOpenError) as caught:
            reader.open(folder)
        return str(caught.value)

    # the level-0 file cut short: OpenSlide would open the series and fail later, naming no file
    cut = broken_copy(series, tmp_path / "cut", lambda f: truncate(f / "level-0.dcm"))
    message = error(cut)
    assert "1 of its 2 .dcm file(s) cannot be used: level-0.dcm is truncated" in message
    assert "copy it again from the archive" in message and "level-1.dcm" not in message
    # the same, opened through the intact neighbour: still the broken file that is named
    with pytest.raises(SlideOpenError, match=r"level-0\.dcm is truncated"):
        reader.open(cut / "level-1.dcm")
    # a header cut short, a download that is an error page, and a file of another series
    header = broken_copy(series, tmp_path / "header", lambda f: truncate(f / "level-1.dcm", 0.02))
    assert "level-1.dcm has a header that is cut short or corrupt" in error(header)
    page = broken_copy(series, tmp_path / "page", lambda f: (f / "extra.dcm").write_text("<html>404</html>"))
    assert "extra.dcm is not a DICOM file (no 'DICM' marker at byte 128" in error(page)
    mixed = tmp_path / "mixed"
    shutil.copytree(series, mixed)
    write_series(tmp_path / "other", tissue(400, 320), mpp=0.5, levels=1)
    shutil.copy(tmp_path / "other" / "level-0.dcm", mixed / "other-slide.dcm")
    message = error(mixed)
    assert "holds 2 series, so it is not one slide" in message and "other-slide.dcm" in message
    assert "Move each series' files into a folder of its own" in message
    with pytest.raises(SlideOpenError, match=r"holds no \.dcm file"):
        reader.open(_empty(tmp_path))


def _empty(tmp_path: Path) -> Path:
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


def test_a_frame_that_does_not_decode_names_its_file(series: Path, tmp_path: Path) -> None:
    folder = shutil.copytree(series, tmp_path / "corrupt")
    data = bytearray((folder / "level-0.dcm").read_bytes())
    second_frame = data.find(b"\xff\xd8\xff", data.find(b"\xff\xd8\xff") + 3)
    data[second_frame : second_frame + 300] = bytes(300)  # same length: the file is complete
    (folder / "level-0.dcm").write_bytes(bytes(data))
    with OpenSlideReader().open(folder) as slide, pytest.raises(SlideReadError) as caught:
        slide.read_region((0, 0), 0, (1600, 1280))
    message = str(caught.value)
    assert "slide corrupt (DICOM folder" in message and "level 0 in level-0.dcm" in message
    assert "level-0.dcm is complete but holds a frame that does not decode" in message


def test_a_dicom_series_tiles_with_default_settings(
    series: Path, histo_plugins: Plugins, load_recipe_text: Callable[..., Any], tmp_path: Path
) -> None:
    """`slides:` and nothing else: the series folder is found, tiled at 10x and 20x from its own mpp,
    and a broken series beside it is a recorded failure naming its broken file."""
    root = tmp_path / "archive"
    shutil.copytree(series, root / "case-a")
    broken_copy(series, root / "case-b", lambda f: truncate(f / "level-0.dcm"))
    text = yaml.safe_dump(
        {"name": "d", "stages": {"tile": {"stage": "tile", "params": {"slides": str(root)}}}}
    )
    result = run_recipe(load_recipe_text(text), tmp_path / "run", plugins=histo_plugins, quiet=True)
    out = result.run_dir / "stages" / "tile"
    with (out / "slides.csv").open(newline="") as fh:
        table = {row["slide_id"]: row for row in csv.DictReader(fh)}
    assert (table["case-a"]["status"], table["case-a"]["mpp"], table["case-a"]["mpp_source"]) == (
        "ok", "0.5", "metadata"
    )  # fmt: skip
    assert int(table["case-a"]["patches_20x"]) > int(table["case-a"]["patches_10x"]) > 0
    assert table["case-a"]["path"] == str(root / "case-a")
    assert table["case-b"]["status"] == "failed" and "level-0.dcm is truncated" in table["case-b"]["error"]
    # the extract stage reopens the slide from the coords file: the folder, with the same reader
    coords = read_coords(out / "coords" / "20x" / "case-a.h5")
    with OpenSlideReader().open(Path(str(coords.attrs["slide_path"]))) as slide:
        x, y = (int(v) for v in coords.coords[0])
        assert slide.read_region((x, y), 0, (256, 256)).shape == (256, 256, 3)
