"""DICOM whole-slide images: a folder holding the instance files of one series is one slide.

A DICOM WSI is a series of instances (one file per pyramid level, plus label and overview images).
OpenSlide opens the whole series through any one of its files and silently passes over files it
cannot use, so a broken neighbour surfaces later as an error that names another file. Before opening,
every `.dcm` file of the folder is checked here from its header (pydicom, pixels not read) and its
size, and each problem is reported against its own file with a hint that fits the cause: not DICOM,
a header cut short, pixel data cut short (a partial copy), or a second series in the same folder.
DICOM files of other kinds (annotations, presentation states) are passed over, as OpenSlide does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from histo.errors import SlideOpenError

DICOM_SUFFIX = ".dcm"
WSI_STORAGE = "1.2.840.10008.5.1.4.1.1.77.1.6"  # VL Whole Slide Microscopy Image Storage
SEQUENCE_END = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"  # (FFFE,E0DD), length 0: ends encapsulated pixel data
PREAMBLE = 128  # bytes before the "DICM" marker of a DICOM file
PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010), little endian as whole-slide images are written


@dataclass(frozen=True)
class Instance:
    """One whole-slide image instance file of a series, as its header describes it."""

    path: Path
    series_uid: str
    width: int  # TotalPixelMatrixColumns
    height: int  # TotalPixelMatrixRows
    image_type: tuple[str, ...]  # e.g. ORIGINAL, PRIMARY, VOLUME, NONE

    @property
    def is_volume(self) -> bool:
        """A pyramid level (not a label, overview or thumbnail image)."""
        return len(self.image_type) > 2 and self.image_type[2] == "VOLUME"


def series_folder(path: Path) -> Path | None:
    """The folder that is the slide, for a folder or one of its `.dcm` files; None for other paths."""
    if path.is_dir():
        return path
    if path.suffix.lower() == DICOM_SUFFIX:
        return path.parent
    return None


def instance_files(folder: Path) -> list[Path]:
    """The `.dcm` files directly in `folder` (hidden ones skipped: partial copies), sorted."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() == DICOM_SUFFIX and not p.name.startswith(".") and p.is_file()
    )


def _check(path: Path) -> Instance | str | None:
    """The instance, or what is wrong with the file and what to do (a str), or None when it is a
    valid DICOM file of another kind (not a whole-slide image)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with path.open("rb") as fh:
            head = fh.read(PREAMBLE + 4)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc}): check that it exists and its permissions"
    if len(head) < PREAMBLE + 4 or head[PREAMBLE:] != b"DICM":
        return (
            f"is not a DICOM file (no 'DICM' marker at byte {PREAMBLE}; {path.stat().st_size} bytes): an "
            "interrupted or failed download, or another file named .dcm; fetch it again or remove it"
        )
    cut_short = "has a header that is cut short or corrupt ({}): copy it again from the archive"
    try:
        with path.open("rb") as fh:
            ds = pydicom.dcmread(fh, stop_before_pixels=True)
            at_pixels = fh.read(4) == PIXEL_DATA_TAG  # where the header reading stopped
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError) as exc:
        return cut_short.format(exc)
    sop_class = ds.get("SOPClassUID") or getattr(ds.get("file_meta"), "MediaStorageSOPClassUID", None)
    if not sop_class:
        return cut_short.format("no SOP Class UID")
    if str(sop_class) != WSI_STORAGE:
        return None
    if not at_pixels:
        return cut_short.format(f"it ends at byte {path.stat().st_size:,}, before its pixel data")
    try:
        instance = Instance(
            path=path,
            series_uid=str(ds.SeriesInstanceUID),
            width=int(ds.TotalPixelMatrixColumns),
            height=int(ds.TotalPixelMatrixRows),
            image_type=tuple(str(v).upper() for v in ds.get("ImageType", [])),
        )
    except (AttributeError, TypeError, ValueError) as exc:
        return f"is a whole-slide image instance without {exc}: re-export the series from its archive"
    truncated = _pixel_data_cut_short(path, ds)
    return truncated if truncated else instance


def _pixel_data_cut_short(path: Path, ds: object) -> str:
    """A message when the file ends before its pixel data does (a partial copy), else ''."""
    size = path.stat().st_size
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None and syntax.is_encapsulated:
        with path.open("rb") as fh:
            fh.seek(max(size - len(SEQUENCE_END), 0))
            complete = fh.read() == SEQUENCE_END
    else:
        get = getattr(ds, "get", lambda key, default=None: default)
        frames = int(get("NumberOfFrames", 1) or 1)
        bits, samples = int(get("BitsAllocated", 8) or 8), int(get("SamplesPerPixel", 3) or 3)
        expected = int(get("Rows", 0) or 0) * int(get("Columns", 0) or 0) * samples * bits // 8 * frames
        complete = size >= expected
    if complete:
        return ""
    return (
        f"is truncated: it ends inside its pixel data ({size:,} bytes), as a copy or download that "
        "stopped early does; copy it again from the archive"
    )


def check_series(folder: Path) -> list[Instance]:
    """The whole-slide image instances of the one series in `folder`, largest level first.

    Raises SlideOpenError naming every bad file with its own problem and fix, or the series when the
    folder holds several: each slide's instances belong in a folder of their own.
    """
    files = instance_files(folder)
    if not files:
        raise SlideOpenError(f"DICOM slide folder {folder} holds no .dcm file")
    instances: list[Instance] = []
    problems: list[str] = []
    for path in files:
        result = _check(path)
        if isinstance(result, str):
            problems.append(f"{path.name} {result}")
        elif result is not None:
            instances.append(result)
    if problems:
        raise SlideOpenError(
            f"DICOM slide {folder}: {len(problems)} of its {len(files)} .dcm file(s) cannot be used: "
            + "; ".join(problems)
        )
    if not instances:
        raise SlideOpenError(
            f"DICOM slide folder {folder}: none of its {len(files)} .dcm file(s) is a whole-slide image "
            f"instance (SOP class {WSI_STORAGE}); it holds DICOM files of another kind"
        )
    by_series: dict[str, list[Path]] = {}
    for instance in instances:
        by_series.setdefault(instance.series_uid, []).append(instance.path)
    if len(by_series) > 1:
        listing = "; ".join(
            f"series {uid}: {', '.join(p.name for p in paths)}" for uid, paths in sorted(by_series.items())
        )
        raise SlideOpenError(
            f"DICOM slide folder {folder} holds {len(by_series)} series, so it is not one slide: {listing}. "
            "Move each series' files into a folder of its own (the folder name becomes the slide id)."
        )
    return sorted(instances, key=lambda i: (not i.is_volume, -i.width * i.height, i.path.name))


def level_file(instances: list[Instance], dimensions: tuple[int, int]) -> Path | None:
    """The instance file that holds the pyramid level of these dimensions, to name in read errors."""
    for instance in instances:
        if instance.is_volume and (instance.width, instance.height) == dimensions:
            return instance.path
    return None
