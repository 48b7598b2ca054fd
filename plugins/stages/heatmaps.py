"""`heatmaps`: attention heatmaps of a predict or train stage's slides, over thumbnails of the slides.

Reads `attention/<slide>.npz` of the predict stage (or of a train stage: its test patients' attention,
each from the fold that tested it) (`<mag>_coords` and one or more weight arrays per
magnification, see histo.plugins.report.heatmap.read_weight_maps) and reopens each slide the way the
tile stage did (its reader and mpp overrides) for a thumbnail. Outputs in the stage folder:
    heatmaps/<slide>_<mag>_<name>.png   weights over the thumbnail, with a colour bar
    heatmaps/index.json                 one record per PNG: slide, magnification, name, file, patches
A slide that cannot be opened, or that the tile stage did not tile, is recorded as a failure.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from histo import ComponentSpec
from histo.errors import HistoError
from histo.interfaces import Stage, StageContext
from histo.recipe.refs import StageRef
from histo.run import raise_if_environment


class HeatmapsConfig(BaseModel):
    """Which predictions to draw, where their slides were tiled, and how many and how large."""

    model_config = ConfigDict(extra="forbid")

    predictions: StageRef = Field(
        description="id of the predict stage, or train stage (out-of-fold test attention), whose "
        "attention/ files to draw"
    )
    tiles: StageRef = Field(
        description="id of the tile stage that tiled those slides (slides.csv, tiling.json, coords/)"
    )
    max_slides: int | None = Field(
        default=20, ge=1, description="draw at most this many slides (in slide id order); null: all"
    )
    thumbnail_size: int = Field(
        default=1024, ge=64, le=8192, description="longer side of the slide thumbnail, pixels"
    )


class HeatmapsStage(Stage[HeatmapsConfig]):
    version = "1"

    def run(self, ctx: StageContext) -> None:
        from histo.plugins.extractors.tiles import read_tile_folder

        attention_dir = ctx.stage_dir(self.config.predictions) / "attention"
        if not attention_dir.is_dir():
            raise HistoError(
                f"{attention_dir} is missing: `predictions` ({self.config.predictions!r}) must name a "
                "predict stage or a train stage of a WSI model (they write attention/<slide>.npz)"
            )
        tiles = read_tile_folder(ctx.stage_dir(self.config.tiles))
        files = sorted(attention_dir.glob("*.npz"))
        if not files:
            ctx.log.warning(
                "%s: %s holds no attention maps (does the model have attention? mean pooling has none)",
                ctx.stage_id,
                attention_dir,
            )
        if self.config.max_slides is not None and len(files) > self.config.max_slides:
            ctx.log.info(
                "%s: drawing %d of %d slides (max_slides)", ctx.stage_id, self.config.max_slides, len(files)
            )
            files = files[: self.config.max_slides]
        out = ctx.out_dir / "heatmaps"
        out.mkdir(parents=True, exist_ok=True)
        mine = files[ctx.rank :: ctx.world_size]
        records: list[dict[str, Any]] = []
        for path in ctx.progress(mine, description=f"{ctx.stage_id}: slides"):
            records += self._slide(ctx, path, tiles, out)
        records = _gather(ctx, records)
        if not ctx.is_main:
            return
        from histo.io import write_json_atomic

        write_json_atomic(out / "index.json", records)
        for record in records:
            ctx.add_artifact(
                ctx.out_dir / record["file"],
                f"attention heatmap: slide {record['slide']}, {record['magnification']}, {record['name']}",
            )
        ctx.add_artifact(out / "index.json", "heatmap index: slide, magnification, name, file, patches")
        ctx.add_metrics(heatmaps=len(records), slides=len({r["slide"] for r in records}))
        if files and not records:
            raise HistoError(
                f"no heatmap could be drawn for {len(files)} slide(s); "
                f"{ctx.out_dir / 'failures.jsonl'} says why"
            )

    def _slide(self, ctx: StageContext, path: Path, tiles: Any, out: Path) -> list[dict[str, Any]]:
        """The heatmaps of one slide (skipping those an interrupted run already wrote)."""
        from histo.plugins.report.heatmap import file_name, read_weight_maps

        slide_id = path.stem
        try:
            maps = read_weight_maps(path)
        except (OSError, ValueError) as exc:
            ctx.record_failure(slide_id, f"cannot read {path}: {exc}")
            return []
        if not maps:
            ctx.record_failure(slide_id, f"{path} holds no <mag>_coords with matching weight arrays")
            return []
        targets = [out / file_name(slide_id, m.magnification, m.name) for m in maps]
        records = [
            {
                "slide": slide_id,
                "magnification": m.magnification,
                "name": m.name,
                "file": f"heatmaps/{target.name}",
                "patches": len(m.weights),
            }
            for m, target in zip(maps, targets, strict=True)
        ]
        if all(t.is_file() for t in targets):
            return records
        try:
            self._draw(slide_id, maps, targets, tiles)
        except HistoError as exc:
            ctx.record_failure(slide_id, str(exc), error=exc)
            return []
        except Exception as exc:  # one odd slide must not stop the others
            raise_if_environment(exc, ctx.out_dir)
            ctx.log.debug("%s", traceback.format_exc())
            ctx.record_failure(slide_id, f"unexpected {type(exc).__name__}: {exc} (traceback in histo.log)")
            return []
        return records

    def _draw(self, slide_id: str, maps: list[Any], targets: list[Path], tiles: Any) -> None:
        """Open the slide once for its thumbnail, then draw each of its maps."""
        from histo.manager import get_plugins
        from histo.plugins.extractors.coords import read_grid
        from histo.plugins.report.heatmap import render_heatmap
        from histo.plugins.tiling import qc

        grids = {}
        for magnification in sorted({m.magnification for m in maps}):
            coords_path = tiles.coords_path(magnification, slide_id)
            if not coords_path.is_file():
                raise HistoError(
                    f"{coords_path} is missing: the tile stage {self.config.tiles!r} did not tile slide "
                    f"{slide_id} at {magnification}; point `tiles` at the tile stage the predictions "
                    "came from"
                )
            grids[magnification] = read_grid(coords_path, magnification)
        grid = next(iter(grids.values()))
        reader_name, reader_params = tiles.reader_for(grid.reader, grid.reader_params)
        reader = get_plugins().registry("slide_readers").build(reader_name, reader_params)
        with reader.open(grid.slide_path, grid.mpp_override) as slide:
            thumbnail, downsample = qc.thumbnail(slide, self.config.thumbnail_size)
        for weight_map, target in zip(maps, targets, strict=True):
            grid = grids[weight_map.magnification]
            if "patch_size_level0" not in grid.attrs:
                raise HistoError(f"{grid.path} has no patch_size_level0 attribute; rerun the tile stage")
            render_heatmap(
                thumbnail,
                downsample,
                weight_map.coords,
                float(grid.attrs["patch_size_level0"]),
                weight_map.weights,
                target,
                f"{slide_id} · {weight_map.magnification} · {weight_map.name}",
            )


def _gather(ctx: StageContext, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every process's records on every process, in slide order (torchrun)."""
    if ctx.world_size == 1:
        return records
    import torch.distributed as dist

    parts: list[list[dict[str, Any]] | None] = [None] * ctx.world_size
    dist.all_gather_object(parts, records)
    merged = [r for part in parts for r in part or []]
    return sorted(merged, key=lambda r: (r["slide"], r["magnification"], r["name"]))


SPEC = ComponentSpec(
    name="heatmaps",
    factory=HeatmapsStage,
    config=HeatmapsConfig,
    description="attention heatmaps of a predict stage's slides over their thumbnails (heatmaps/*.png)",
)
