"""Writes small DICOM whole-slide image series for tests (pydicom; JPEG frames encoded by Pillow).

A series is what a DICOM archive exports for one slide: one VL Whole Slide Microscopy Image instance
file per pyramid level, TILED_FULL frames, pixel spacing in the shared functional groups.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit, generate_uid

WSI_STORAGE = "1.2.840.10008.5.1.4.1.1.77.1.6"


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _frames(image: np.ndarray, tile: int) -> list[bytes]:
    height, width = image.shape[:2]
    frames = []
    for y in range(0, height, tile):
        for x in range(0, width, tile):
            frame = np.full((tile, tile, 3), 255, np.uint8)
            part = image[y : y + tile, x : x + tile]
            frame[: part.shape[0], : part.shape[1]] = part
            buffer = io.BytesIO()
            Image.fromarray(frame).save(buffer, format="JPEG", quality=92)
            frames.append(buffer.getvalue())
    return frames


def write_instance(
    path: Path, image: np.ndarray, mpp: float, uids: dict[str, str], number: int, tile: int = 256
) -> Path:
    """One instance (one pyramid level) of the series `uids` names, at `mpp` microns per pixel."""
    height, width = image.shape[:2]
    frames = _frames(image, tile)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = WSI_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = WSI_STORAGE, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uids["study"], uids["series"]
    ds.FrameOfReferenceUID = uids["frame"]
    ds.Modality, ds.InstanceNumber, ds.SeriesNumber, ds.StudyID = "SM", number, 1, "1"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"] if number == 1 else [
        "DERIVED", "PRIMARY", "VOLUME", "RESAMPLED"
    ]  # fmt: skip
    ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = "P1", "Test^Slide", "", ""
    ds.Manufacturer, ds.ContainerIdentifier, ds.AccessionNumber, ds.ReferringPhysicianName = "t", "C1", "", ""
    ds.StudyDate = ds.ContentDate = "20260101"
    ds.StudyTime = ds.ContentTime = "000000"
    ds.AcquisitionDateTime = "20260101000000"
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "YBR_FULL_422", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.Rows = ds.Columns = tile
    ds.TotalPixelMatrixColumns, ds.TotalPixelMatrixRows, ds.TotalPixelMatrixFocalPlanes = width, height, 1
    ds.NumberOfFrames, ds.DimensionOrganizationType = len(frames), "TILED_FULL"
    ds.ImagedVolumeWidth, ds.ImagedVolumeHeight = width * mpp / 1000, height * mpp / 1000
    ds.ImagedVolumeDepth = 0.001
    optical_path = Dataset()
    optical_path.OpticalPathIdentifier = "1"
    optical_path.IlluminationTypeCodeSequence = [_code("414298005", "SCT", "Full Spectrum")]
    optical_path.IlluminationColorCodeSequence = [_code("11744", "DCM", "Brightfield illumination")]
    ds.NumberOfOpticalPaths, ds.OpticalPathSequence = 1, [optical_path]
    ds.SpecimenLabelInImage = ds.BurnedInAnnotation = ds.ExtendedDepthOfField = "NO"
    ds.FocusMethod, ds.VolumetricProperties, ds.LossyImageCompression = "AUTO", "VOLUME", "01"
    measures = Dataset()
    measures.PixelSpacing, measures.SliceThickness = [mpp / 1000, mpp / 1000], 0.001  # millimetres
    path_id = Dataset()
    path_id.OpticalPathIdentifier = "1"
    shared = Dataset()
    shared.PixelMeasuresSequence, shared.OpticalPathIdentificationSequence = [measures], [path_id]
    ds.SharedFunctionalGroupsSequence = [shared]
    origin = Dataset()
    origin.XOffsetInSlideCoordinateSystem = origin.YOffsetInSlideCoordinateSystem = 0
    ds.TotalPixelMatrixOriginSequence = [origin]
    ds.ImageOrientationSlide = [0, -1, 0, -1, 0, 0]
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].VR = "OB"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_series(folder: Path, image: np.ndarray, mpp: float, levels: int = 2, tile: int = 256) -> list[Path]:
    """A series of `levels` instance files (level k downsampled 4**k) in `folder`; their paths."""
    uids = {"study": generate_uid(), "series": generate_uid(), "frame": generate_uid()}
    paths, current = [], Image.fromarray(image)
    for level in range(levels):
        name = f"level-{level}.dcm"
        paths.append(
            write_instance(folder / name, np.asarray(current), mpp * 4**level, uids, level + 1, tile)
        )
        current = current.reduce(4)
    return paths
