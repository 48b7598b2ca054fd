"""`tile`: tissue masks and aligned multi-magnification patch grids for a folder of slides.

Outputs in the stage folder (formats in docs/slides.md):
    coords/<magnification>/<slide_id>.h5   patch coordinates and how to read them (per slide)
    qc/<slide_id>.png                      thumbnail, tissue outline, kept patches of every magnification
    slides.csv                             one row per slide: status, mpp and its source, patch counts
    tiling.json                            the resolved settings the extract stage reopens slides with
A slide that cannot be opened or read, or has no mpp, is recorded as a failure and the rest go on.
"""

from __future__ import annotations

import csv
import io
import json
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, field_validator, model_validator

from histo import ComponentSpec
from histo.errors import HistoError
from histo.interfaces import Mpp, Slide, SlideReader, Stage, StageContext, TissueMask, TissueSegmenter
from histo.plugins.readers import IMAGE_EXTENSIONS
from histo.plugins.tiling.inputs import SLIDE_EXTENSIONS
from histo.plugins.tiling.magnification import Magnification, MagnificationField, nest
from histo.plugins.tiling.qc_writer import QcWriter
from histo.plugins.tiling.reads import DEFAULT_BUDGET_BYTES, RecordingSlide
from histo.plugins.tiling.warm import warm_up
from histo.recipe.refs import InputPath, SlideReaderRef, StageRef, TissueSegmenterRef
from histo.run import raise_if_environment

TILING_FORMAT = "histo.tiling/1"
QC_SIZE = 1024  # longer side of the QC thumbnail, pixels


def _default_magnifications() -> list[Magnification]:
    return [Magnification.model_validate("10x"), Magnification.model_validate("20x")]


class TileConfig(BaseModel):
    """Which slides to tile, how to find tissue, and the patch grids to lay over it."""

    model_config = ConfigDict(extra="forbid")

    slides: InputPath | None = Field(
        default=None,
        description="a folder searched recursively for slide files (by `extensions`), or one slide file",
    )
    slides_from: StageRef | None = Field(
        default=None,
        description="instead of `slides`: the id of an earlier stage whose folder holds the slides "
        "(e.g. a `synthesize` stage)",
    )
    extensions: list[str] | None = Field(
        default=None,
        description="file extensions that count as slides when `slides` is a folder (case-insensitive); "
        "default: the reader's own (openslide: "
        + " ".join(SLIDE_EXTENSIONS)
        + "; image: "
        + " ".join(IMAGE_EXTENSIONS)
        + ")",
    )
    reader: SlideReaderRef = Field(
        default_factory=lambda: SlideReaderRef(name="openslide"),
        description="slide reader (see `histo plugins`); the extract stage reopens slides with it",
    )
    segmenter: TissueSegmenterRef = Field(
        default_factory=lambda: TissueSegmenterRef(name="otsu"), description="tissue segmenter"
    )
    magnifications: list[MagnificationField] = Field(
        default_factory=_default_magnifications,
        description="target magnifications: '20x' (= 0.5 µm/px, mpp = 10 / magnification) or "
        "{name, mpp}; they must nest (each coarser mpp an integer multiple of the next finer)",
    )
    patch_size: int = Field(default=256, ge=8, le=16384, description="patch side in pixels at the target mpp")
    overlap: int = Field(default=0, ge=0, description="pixels (target mpp) shared by neighbouring patches")
    min_tissue: float = Field(
        default=0.5, ge=0, le=1, description="keep a patch when at least this fraction of it is tissue"
    )
    parent_rule: Literal["strict", "expand"] = Field(
        default="strict",
        description="strict: a finer patch is kept only if its coarser parent has enough tissue itself; "
        "expand: a coarser patch is also kept when it contains a kept finer patch (more coverage)",
    )
    mpp_overrides: dict[str, PositiveFloat] = Field(
        default_factory=dict,
        description="microns per pixel by slide id, for slides whose files lack it or state it wrongly",
    )
    mpp_csv: InputPath | None = Field(
        default=None, description="a CSV with columns slide_id, mpp; `mpp_overrides` win over it"
    )
    qc_thumbnails: bool = Field(default=True, description="write qc/<slide_id>.png for every slide")

    @field_validator("extensions")
    @classmethod
    def _dotted(cls, values: list[str] | None) -> list[str] | None:
        if values is None:
            return None
        cleaned = [v.strip().lower() for v in values if v.strip()]
        if not cleaned:
            raise ValueError("give at least one extension, e.g. ['.svs']")
        return [v if v.startswith(".") else f".{v}" for v in cleaned]

    @field_validator("magnifications")
    @classmethod
    def _nested(cls, values: list[Magnification]) -> list[Magnification]:
        nest(values)
        return values

    @model_validator(mode="after")
    def _consistent(self) -> TileConfig:
        if (self.slides is None) == (self.slides_from is None):
            raise ValueError("give exactly one of `slides` (a folder or file) and `slides_from` (a stage id)")
        if self.overlap >= self.patch_size:
            raise ValueError(f"overlap ({self.overlap}) must be smaller than patch_size ({self.patch_size})")
        return self


@dataclass
class SlideRow:
    """One line of slides.csv."""

    slide_id: str
    path: Path
    status: str = "failed"
    mpp: float | None = None
    mpp_source: str = ""
    mpp_override: float | None = None
    patches: dict[str, int] = field(default_factory=dict)
    error: str = ""


class TileStage(Stage[TileConfig]):
    version = "1"
    _qc: QcWriter  # QC images of this run, drawn in the background

    def run(self, ctx: StageContext) -> None:
        from histo.plugins.tiling.inputs import (
            find_slides,
            merge_overrides,
            read_mpp_csv,
            slide_extensions,
            slide_id,
        )

        cfg = self.config
        root = cfg.slides if cfg.slides is not None else ctx.stage_dir(str(cfg.slides_from))
        reader: SlideReader = cfg.reader.build()
        paths = find_slides(root, slide_extensions(cfg.extensions, reader))
        overrides = merge_overrides(read_mpp_csv(cfg.mpp_csv) if cfg.mpp_csv else {}, cfg.mpp_overrides)
        unused = sorted(set(overrides) - {slide_id(p) for p in paths})
        if unused:
            ctx.log.warning("%s: mpp given for unknown slide ids: %s", ctx.stage_id, ", ".join(unused))
        segmenter: TissueSegmenter = cfg.segmenter.build()
        magnifications = nest(cfg.magnifications)
        ctx.log.info("%s: %d slide(s) below %s", ctx.stage_id, len(paths), root)

        mine = paths[ctx.rank :: ctx.world_size]  # under torchrun each process tiles its share
        rows = []
        self._qc = QcWriter()
        if mine:
            warm_up()  # h5py and the PNG encoder, imported while the first slide is decoded
        try:
            for path in ctx.progress(mine, description="tile"):
                row = SlideRow(slide_id(path), path.absolute(), mpp_override=overrides.get(slide_id(path)))
                if not self._resume(ctx, row, magnifications):
                    self._tile(ctx, row, reader, segmenter, magnifications)
                rows.append(row)
        finally:
            failures = self._qc.finish()
        by_id = {row.slide_id: row for row in rows}
        for failed_id, exc in failures:  # the slide fails, as when drawing its image in line did
            # ... unless the machine failed (a full disk): then the stage fails and a rerun retries
            raise_if_environment(exc, ctx.out_dir / "qc" / f"{failed_id}.png")
            row = by_id[failed_id]
            row.status, row.error = "failed", f"QC image: {type(exc).__name__}: {exc}"
            self._drop(ctx, row, magnifications)
        rows = _gather(ctx, rows, [slide_id(p) for p in paths])

        if ctx.is_main:
            self._write_tables(ctx, rows, magnifications, root)
        ok = [r for r in rows if r.status == "ok"]
        totals = {f"patches_{m.name}": sum(r.patches.get(m.name, 0) for r in ok) for m in magnifications}
        ctx.add_metrics(slides=len(ok), failed=len(rows) - len(ok), **totals)
        if not ok:
            raise HistoError(
                f"no slide could be tiled ({len(rows)} failed); {ctx.out_dir / 'slides.csv'} says why"
            )

    # -- one slide ---------------------------------------------------------------------------------
    def _outputs(self, ctx: StageContext, slide_id: str, magnifications: list[Magnification]) -> list[Path]:
        paths = [ctx.out_dir / "coords" / m.name / f"{slide_id}.h5" for m in magnifications]
        return paths + ([ctx.out_dir / "qc" / f"{slide_id}.png"] if self.config.qc_thumbnails else [])

    def _resume(self, ctx: StageContext, row: SlideRow, magnifications: list[Magnification]) -> bool:
        """Fill `row` from a slide's finished outputs (an interrupted run); False if any is missing."""
        from histo.plugins.tiling.coords_file import read_coords

        outputs = self._outputs(ctx, row.slide_id, magnifications)
        if not all(p.is_file() for p in outputs):
            return False
        try:
            for magnification, path in zip(magnifications, outputs, strict=False):
                coords = read_coords(path)
                row.patches[magnification.name] = len(coords)
                row.mpp, row.mpp_source = float(coords.attrs["source_mpp"]), str(coords.attrs["mpp_source"])
        except (OSError, KeyError, ValueError):  # not ours or damaged outside histo: tile it again
            row.patches.clear()
            return False
        row.status = "ok"
        ctx.log.debug("%s: %s already tiled, kept", ctx.stage_id, row.slide_id)
        return True

    def _tile(
        self,
        ctx: StageContext,
        row: SlideRow,
        reader: SlideReader,
        segmenter: TissueSegmenter,
        magnifications: list[Magnification],
    ) -> None:
        try:
            # the QC thumbnail is cut from the overview the segmenter read (tiling/reads.py)
            budget = DEFAULT_BUDGET_BYTES if self.config.qc_thumbnails else 0
            recording = RecordingSlide(reader.open(row.path, row.mpp_override), budget)
            handed_over = False  # to the QC thread, which closes the slide when its image is written
            try:
                handed_over = self._tile_open(ctx, row, recording, segmenter, magnifications)
            finally:
                if not handed_over:
                    recording.close()
        except HistoError as exc:
            raise_if_environment(exc, row.path)
            row.status, row.error = "failed", str(exc)
        except Exception as exc:  # an unexpected library error on one odd file must not stop the cohort
            raise_if_environment(exc, ctx.out_dir)  # a full disk is not a broken slide: fail the stage
            ctx.log.debug("%s", traceback.format_exc())
            row.status = "failed"
            row.error = f"unexpected {type(exc).__name__}: {exc} (traceback in histo.log)"
        if row.status == "failed":
            self._drop(ctx, row, magnifications)

    def _drop(self, ctx: StageContext, row: SlideRow, magnifications: list[Magnification]) -> None:
        """A failed slide: no outputs (not even an interrupted attempt's) and a recorded reason."""
        row.patches.clear()
        for stale in self._outputs(ctx, row.slide_id, magnifications):
            stale.unlink(missing_ok=True)
        ctx.record_failure(row.slide_id, row.error, path=str(row.path))

    def _tile_open(
        self,
        ctx: StageContext,
        row: SlideRow,
        slide: Slide,
        segmenter: TissueSegmenter,
        magnifications: list[Magnification],
    ) -> bool:
        """Tile one open slide; True when the QC thread took the slide over (it closes it)."""
        from histo.io import atomic_path
        from histo.plugins.tiling import plan_grids, qc, tile
        from histo.plugins.tiling.coords_file import write_coords

        cfg = self.config
        mpp = slide.mpp
        row.mpp, row.mpp_source = mpp.mean, mpp.source
        plans = plan_grids(
            slide.level_downsamples, mpp.mean, magnifications, cfg.patch_size, cfg.overlap, slide=row.slide_id
        )
        mask = segmenter.segment(slide)
        grids = tile(mask, plans, cfg.min_tissue, slide.dimensions, cfg.parent_rule)
        if not any(len(grid) for grid in grids):  # an empty bag would reach the models as a silent zero
            finest = plans[-1].patch_size_level0
            raise HistoError(no_patch_message(row.slide_id, slide, mpp, mask, segmenter, cfg, finest))
        width, height = slide.dimensions
        attrs: dict[str, Any] = {
            "slide_id": row.slide_id,
            "slide_path": str(row.path),
            "reader": cfg.reader.name,
            "reader_params": json.dumps(cfg.reader.params, sort_keys=True),
            "segmenter": cfg.segmenter.name,
            "segmenter_params": json.dumps(cfg.segmenter.params, sort_keys=True),
            "source_mpp": mpp.mean,
            "source_mpp_x": mpp.x,
            "source_mpp_y": mpp.y,
            "mpp_source": mpp.source,
            "level0_width": width,
            "level0_height": height,
            "min_tissue": cfg.min_tissue,
            "parent_rule": cfg.parent_rule,
            "mask_downsample": mask.downsample,
        }
        outputs = self._outputs(ctx, row.slide_id, magnifications)
        for index, (grid, path) in enumerate(zip(grids, outputs, strict=False)):
            links = {}
            if index > 0:
                links["parent_magnification"] = magnifications[index - 1].name
            if index + 1 < len(grids):
                links["child_magnification"] = magnifications[index + 1].name
            write_coords(path, grid, {**attrs, **links})
            row.patches[grid.plan.magnification.name] = len(grid)
        # A slide that may be read from another thread is handed to the QC thread whole: the
        # thumbnail (cut from the segmenter's reads), the overlays and the PNG all leave the critical
        # path. Other readers' slides give their thumbnail here and are closed by the caller.
        handed_over = cfg.qc_thumbnails and slide.concurrent_reads
        if cfg.qc_thumbnails:
            thumbnail = None if handed_over else qc.thumbnail(slide, QC_SIZE)

            def draw(target: Path = outputs[-1]) -> None:
                try:
                    image, downsample = thumbnail or qc.thumbnail(slide, QC_SIZE)
                    with atomic_path(target) as tmp:
                        qc.save(qc.render(image, downsample, mask, grids), tmp)
                finally:
                    if handed_over:
                        slide.close()

            self._qc.submit(row.slide_id, draw)
        row.status = "ok"
        counts = ", ".join(f"{name} {n}" for name, n in row.patches.items())
        ctx.log.info("%s: %s: %s (mpp %.4g, %s)", ctx.stage_id, row.slide_id, counts, mpp.mean, mpp.source)
        return handed_over

    # -- tables --------------------------------------------------------------------------------------
    def _write_tables(
        self, ctx: StageContext, rows: list[SlideRow], magnifications: list[Magnification], root: Path
    ) -> None:
        from histo.io import write_json_atomic, write_text_atomic

        cfg = self.config
        names = [m.name for m in magnifications]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        patch_columns = [f"patches_{n}" for n in names]
        writer.writerow(["slide_id", "path", "status", "mpp", "mpp_source", *patch_columns, "error"])
        for r in rows:
            counts = [r.patches.get(n, "") if r.status == "ok" else "" for n in names]
            mpp = "" if r.mpp is None else f"{r.mpp:.6g}"
            writer.writerow([r.slide_id, str(r.path), r.status, mpp, r.mpp_source, *counts, r.error])
        write_text_atomic(ctx.out_dir / "slides.csv", buffer.getvalue())
        write_json_atomic(
            ctx.out_dir / "tiling.json",
            {
                "format": TILING_FORMAT,
                "slides_root": str(root.absolute()),
                "reader": {"name": cfg.reader.name, "params": cfg.reader.params},
                "segmenter": {"name": cfg.segmenter.name, "params": cfg.segmenter.params},
                "patch_size": cfg.patch_size,
                "overlap": cfg.overlap,
                "min_tissue": cfg.min_tissue,
                "parent_rule": cfg.parent_rule,
                "magnifications": [
                    {
                        "name": m.name,
                        "mpp": m.mpp,
                        "coords_dir": f"coords/{m.name}",
                        "parent": names[i - 1] if i > 0 else None,
                        "child": names[i + 1] if i + 1 < len(names) else None,
                    }
                    for i, m in enumerate(magnifications)
                ],
                "slides": {
                    r.slide_id: {
                        "path": str(r.path),
                        "status": r.status,
                        "mpp": r.mpp,
                        "mpp_source": r.mpp_source or None,
                        "mpp_override": r.mpp_override,
                        "patches": dict(r.patches),
                        "error": r.error or None,
                    }
                    for r in rows
                },
            },
        )
        ctx.add_artifact(ctx.out_dir / "slides.csv", "per slide: status, mpp, patches per magnification")
        ctx.add_artifact(ctx.out_dir / "tiling.json", "resolved tiling settings, per-slide mpp and reader")
        if cfg.qc_thumbnails and any(r.status == "ok" for r in rows):
            ctx.add_artifact(ctx.out_dir / "qc", "QC thumbnails: tissue outline and patch grids per slide")


def no_patch_message(
    slide_id: str,
    slide: Slide,
    mpp: Mpp,
    mask: TissueMask,
    segmenter: TissueSegmenter,
    cfg: TileConfig,
    finest_patch_level0: int,
) -> str:
    """Why a slide has no patch: it is smaller than one, its tissue mask is empty (fix the segmenter),
    or its tissue fills no patch to `min_tissue`."""
    size = f"slide {slide.dimensions[0]} x {slide.dimensions[1]} px at {mpp.mean:.3g} µm/px"
    names = ", ".join(m.name for m in nest(cfg.magnifications))
    width, height = slide.dimensions
    side = finest_patch_level0
    if min(width, side) * min(height, side) < cfg.min_tissue * side**2:  # even all tissue would not do
        return (
            f"slide {slide_id}: the whole {size} covers less than `min_tissue` ({cfg.min_tissue:.0%}) of one "
            f"{cfg.patch_size} px patch at {names} ({finest_patch_level0} level-0 px at the finest); lower "
            "`patch_size` or `min_tissue`, or remove the slide if it is a thumbnail or a crop"
        )
    seg_config = getattr(segmenter, "config", None)
    min_area = getattr(seg_config, "min_tissue_area_um2", None)
    if not mask.mask.any():
        area_hint = (
            f"lower the segmenter's `min_tissue_area_um2` (now {min_area:g} µm²: smaller pieces are "
            f"dropped as dust; `segmenter: {{name: {cfg.segmenter.name}, params: {{min_tissue_area_um2: "
            f"{min_area / 10:g}}}}}`), "
            if isinstance(min_area, int | float) and min_area > 0
            else ""
        )
        return (
            f"slide {slide_id}: the tissue mask is empty: segmenter `{cfg.segmenter.name}` found no tissue "
            f"({size}), so no patch can reach `min_tissue`. If the slide does hold tissue, {area_hint}"
            "lower its threshold (`threshold`, or `min_threshold` for otsu) or try another `segmenter`"
        )
    tissue_mm2 = float(mask.mask.sum()) * (mask.downsample * mpp.mean) ** 2 / 1e6
    return (
        f"slide {slide_id}: no {cfg.patch_size} px patch at {names} "
        f"has {cfg.min_tissue:.0%} tissue or more ({size}; the tissue mask holds {tissue_mm2:.3g} mm², "
        "too little or too scattered to fill a patch); lower `min_tissue`, or check the tissue "
        "detection (`segmenter`) if the slide holds more tissue than that"
    )


def _gather(ctx: StageContext, rows: list[SlideRow], order: list[str]) -> list[SlideRow]:
    """Every process's rows, in slide order, on every process (all ranks then agree on the outcome)."""
    if ctx.world_size == 1:
        return rows
    import torch.distributed as dist

    parts: list[list[SlideRow] | None] = [None] * ctx.world_size
    dist.all_gather_object(parts, rows)
    position = {sid: i for i, sid in enumerate(order)}
    return sorted((row for part in parts for row in part or []), key=lambda row: position[row.slide_id])


SPEC = ComponentSpec(
    name="tile",
    factory=TileStage,
    config=TileConfig,
    description="tissue masks and aligned multi-magnification patch grids (coords/<mag>/<slide>.h5)",
)
