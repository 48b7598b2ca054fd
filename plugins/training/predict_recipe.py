"""`histo predict`: a recipe that tiles and embeds new slides exactly as a finished run did, runs one
of its WSI-only train stages on them, and draws the model's attention on each slide."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from histo.errors import HistoError

HEATMAP_SLIDES = 50  # `--set stages.heatmaps.params.max_slides=N` draws more (or null: all)


def _stages(run_dir: Path) -> dict[str, Any]:
    recipe = run_dir / "recipe.yaml"
    if not recipe.exists():
        raise HistoError(
            f"{run_dir} is not a run directory (no recipe.yaml); give the --out of a `histo run`"
        )
    stages: dict[str, Any] = yaml.safe_load(recipe.read_text())["stages"]
    return stages


def _wsi_only(entry: dict[str, Any]) -> bool:
    params = entry.get("params", {})
    model = params.get("model", {})
    return (
        entry.get("stage") == "train"
        and params.get("features") is not None
        and model.get("slide_encoder") is not None
        and model.get("fusion") is None
        and params.get("omics") is None
    )


def predict_recipe(
    run_dir: Path, slides: Path, stage: str | None = None, mpp: float | None = None
) -> dict[str, Any]:
    """The recipe that predicts `slides` (a file or folder) with train stage `stage` of `run_dir`."""
    stages = _stages(run_dir)
    candidates = [sid for sid, entry in stages.items() if _wsi_only(entry)]
    if stage is None:
        if not candidates:
            raise HistoError(
                f"{run_dir} has no WSI-only train stage (a student); nothing can predict from slides alone"
            )
        stage = candidates[-1]
    elif stage not in candidates:
        raise HistoError(
            f"stage {stage!r} of {run_dir} is not a WSI-only train stage; choose one of {candidates}"
        )
    if not (run_dir / "stages" / stage / "stage.json").exists():
        raise HistoError(f"stage {stage!r} of {run_dir} has not finished; run the recipe to the end first")
    features = stages[stage]["params"]["features"]
    extract_id = features.get("stage")
    if extract_id is None or stages.get(extract_id, {}).get("stage") != "extract":
        raise HistoError(
            f"stage {stage!r} reads features from a folder, not an extract stage of this run: "
            "extract the new slides the same way and use a `predict` stage in a recipe"
        )
    extract = dict(stages[extract_id]["params"])
    tile_id = extract["tiles"]
    tile = dict(stages[tile_id]["params"])
    tile["slides"] = str(slides)
    tile.pop("slides_from", None)
    tile["mpp_overrides"] = {}
    tile["mpp_csv"] = None
    if mpp is not None:  # one value for every slide given (files without mpp metadata)
        from histo.plugins.tiling.inputs import find_slides, slide_extensions, slide_id
        from histo.recipe.refs import SlideReaderRef

        reader = SlideReaderRef.model_validate(tile.get("reader") or "openslide").build()
        files = find_slides(Path(slides), slide_extensions(tile.get("extensions"), reader))
        tile["mpp_overrides"] = {slide_id(p): mpp for p in files}
    extract["tiles"] = "tile"
    return {
        "name": f"predict-{Path(slides).stem}",
        "seed": 0,
        "stages": {
            "tile": {"stage": "tile", "params": tile},
            "extract": {"stage": "extract", "params": extract},
            "predict": {
                "stage": "predict",
                "params": {
                    "model": str((run_dir / "stages" / stage).resolve()),
                    "features": {"stage": "extract", "magnifications": features.get("magnifications")},
                },
            },
            # where the model looked, on each slide's thumbnail (the first 50 slides of a large folder)
            "heatmaps": {
                "stage": "heatmaps",
                "params": {"predictions": "predict", "tiles": "tile", "max_slides": HEATMAP_SLIDES},
            },
        },
    }
