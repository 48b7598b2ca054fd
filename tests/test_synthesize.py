"""The `synthesize` stage: the embedded demo cohort the quick start runs on."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import spearmanr

from histo.cli import main
from histo.errors import RecipeError
from histo.plugins.synthetic.cohort import DIAGNOSES, FOLLOW_UP_MONTHS, GRADES, CohortSpec, make_cohort
from histo.run.runner import DONE, IN_PROGRESS

PATIENTS = 16
SEED = 3
TABLES = ("cohort.csv", "omics.csv", "genesets.gmt", "latents.csv", "manifest.json")


def _recipe(tmp: Path, seed: int = SEED, **params: Any) -> Path:
    params = {"patients": PATIENTS, "slide_size": 1024, "workers": 1, **params}
    path = tmp / f"recipe-{seed}.yaml"
    path.write_text(
        json.dumps(
            {"name": "demo", "seed": seed, "stages": {"synth": {"stage": "synthesize", "params": params}}}
        ),
        encoding="utf-8",
    )
    return path


def _run(recipe: Path, out: Path) -> dict[str, Any]:
    assert main(["run", str(recipe), "--out", str(out), "--quiet"]) == 0
    summary: dict[str, Any] = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return summary["stages"][0]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run of 16 patients with 1024 px slides; returns the stage folder."""
    tmp = tmp_path_factory.mktemp("synth")
    record = _run(_recipe(tmp), tmp / "run")
    assert record["status"] == "done"
    return tmp / "run" / "stages" / "synth"


def _level(path: Path, level: int) -> np.ndarray:
    import openslide

    with openslide.OpenSlide(path) as slide:
        return np.asarray(slide.read_region((0, 0), level, slide.level_dimensions[level]).convert("RGB"))


def test_every_slide_opens_in_openslide_with_mpp_and_pyramid(demo: Path) -> None:
    import openslide

    slides = sorted((demo / "slides").glob("*.tiff"))
    assert len(slides) == PATIENTS
    for path in slides:
        with openslide.OpenSlide(path) as slide:
            assert slide.level_count == 3  # 1024 -> 512 -> 256 (one tile)
            assert slide.level_dimensions[0] == (1024, 1024)
            assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(0.5, rel=1e-3)
            assert float(slide.properties["openslide.mpp-y"]) == pytest.approx(0.5, rel=1e-3)
            for level in range(slide.level_count):
                region = np.asarray(slide.read_region((0, 0), level, (64, 64)))
                assert region.shape == (64, 64, 4)
            centre = np.asarray(slide.read_region((384, 384), 0, (256, 256)).convert("RGB"))
            assert centre.std() > 5  # not a blank tile


def test_tables_are_consistent(demo: Path) -> None:
    cohort = _rows(demo / "cohort.csv")
    omics = _rows(demo / "omics.csv")
    latents = _rows(demo / "latents.csv")
    assert list(cohort[0]) == ["patient_id", "slide_id", "diagnosis", "grade", "time", "event"]
    patients = {row["patient_id"] for row in omics}
    assert len(patients) == len(omics) == len(latents) == PATIENTS
    assert {row["patient_id"] for row in latents} == patients
    assert {row["patient_id"] for row in cohort} == patients
    assert {row["slide_id"] for row in cohort} == {p.stem for p in (demo / "slides").glob("*.tiff")}
    for row in cohort:
        assert row["diagnosis"] in DIAGNOSES and row["grade"] in GRADES
        assert float(row["time"]) > 0 and row["event"] in {"0", "1"}
    values = np.array([[float(v) for k, v in row.items() if k != "patient_id"] for row in omics])
    assert np.isfinite(values).all() and (values >= 0).all() and values.max() < 20  # log2 scale

    groups = {
        line.split("\t")[0]: line.rstrip("\n").split("\t")[2:] for line in (demo / "genesets.gmt").open()
    }
    assert set(groups) == {"tumour", "microenvironment"}
    assert all(len(genes) == 48 for genes in groups.values())
    columns = list(omics[0])[1:]
    assert set(groups["tumour"]) | set(groups["microenvironment"]) < set(columns)
    assert len(columns) == 48 * 2 + 64

    manifest = json.loads((demo / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["labels"]["diagnosis"] == list(DIAGNOSES)
    assert manifest["counts"]["slides"] == PATIENTS
    assert manifest["slides"]["level_dimensions"] == [[1024, 1024], [512, 512], [256, 256]]
    files = manifest["files"]
    listed = [files[k] for k in ("cohort", "omics", "genesets", "latents")] + files["slides"]
    assert all((demo / name).is_file() for name in listed)
    assert not list(demo.rglob("*.partial"))


def test_slides_show_the_latent_factors(demo: Path) -> None:
    """A plain colour statistic of each slide recovers its patient's factors."""
    latents = {row["patient_id"]: row for row in _rows(demo / "latents.csv")}
    purple, dark, tumour, micro = [], [], [], []
    for row in _rows(demo / "cohort.csv"):
        rgb = _level(demo / "slides" / f"{row['slide_id']}.tiff", 1).astype(np.int32)
        tissue = rgb.mean(axis=-1) < 215
        purple.append((rgb[..., 0][tissue] < 200).mean())  # haematoxylin-stained share of the tissue
        dark.append((rgb.sum(axis=-1)[tissue] < 260).mean())  # near-black nuclei: lymphocytes
        tumour.append(float(latents[row["patient_id"]]["tumour"]))
        micro.append(float(latents[row["patient_id"]]["microenvironment"]))
    assert spearmanr(purple, tumour)[0] > 0.5
    assert spearmanr(dark, micro)[0] > 0.5


def test_slides_have_tumour_rich_and_stromal_regions(demo: Path) -> None:
    """Inside one slide, tiles differ: attention heatmaps have something to point at."""
    rgb = _level(demo / "slides" / "SYN-0001-1.tiff", 0).astype(np.int32)
    tiles = rgb.reshape(8, 128, 8, 128, 3).transpose(0, 2, 1, 3, 4).reshape(64, -1, 3)
    tissue = tiles.mean(axis=-1) < 215
    full = tissue.mean(axis=1) > 0.9
    assert full.sum() >= 8
    purple = np.array([(t[m, 0] < 200).mean() for t, m in zip(tiles[full], tissue[full], strict=True)])
    assert purple.max() - purple.min() > 0.3


def test_same_seed_same_bytes_other_seed_other_cohort(demo: Path, tmp_path: Path) -> None:
    again = tmp_path / "again" / "stages" / "synth"
    _run(_recipe(tmp_path), tmp_path / "again")
    for name in TABLES:
        assert (again / name).read_bytes() == (demo / name).read_bytes(), name
    for path in sorted((demo / "slides").glob("*.tiff"))[:4]:
        assert np.array_equal(_level(path, 0), _level(again / "slides" / path.name, 0))

    other = tmp_path / "other"
    _run(_recipe(tmp_path, seed=SEED + 1, patients=2, slide_size=512), other)
    assert _rows(other / "stages/synth/latents.csv")[0] != _rows(demo / "latents.csv")[0]


def test_rerun_is_cached_and_resume_keeps_written_slides(tmp_path: Path) -> None:
    recipe, out = _recipe(tmp_path, patients=3, slide_size=512), tmp_path / "run"
    first = _run(recipe, out)
    assert first["status"] == "done" and first["metrics"]["slides_painted"] == 3
    assert _run(recipe, out)["status"] == "cached"

    # simulate a run killed after two slides: the runner keeps the folder of an interrupted stage
    stage = out / "stages" / "synth"
    done = json.loads((stage / DONE).read_text(encoding="utf-8"))
    (stage / DONE).unlink()
    (stage / IN_PROGRESS).write_text(json.dumps({"fingerprint": done["fingerprint"]}), encoding="utf-8")
    kept = stage / "slides" / "SYN-0001-1.tiff"
    before = kept.stat().st_mtime_ns
    (stage / "slides" / "SYN-0003-1.tiff").unlink()
    resumed = _run(recipe, out)
    assert resumed["status"] == "done"
    assert resumed["metrics"]["slides_painted"] == 1 and resumed["metrics"]["slides_reused"] == 2
    assert kept.stat().st_mtime_ns == before
    assert (stage / "slides" / "SYN-0003-1.tiff").is_file()


@pytest.mark.slow
def test_process_pool_paints_the_same_slides(tmp_path: Path) -> None:
    """Two worker processes give the same slides as one; two slides per patient; non-square, 40x."""
    import openslide

    params: dict[str, Any] = {"patients": 1, "slides_per_patient": 2, "slide_size": [768, 512], "mpp": 0.25}
    pooled, serial = tmp_path / "pooled", tmp_path / "serial"
    _run(_recipe(tmp_path, **params, workers=2), pooled)
    _run(_recipe(tmp_path, **params, workers=1), serial)
    slides = sorted((pooled / "stages/synth/slides").glob("*.tiff"))
    assert [p.stem for p in slides] == ["SYN-0001-1", "SYN-0001-2"]
    for path in slides:
        with openslide.OpenSlide(path) as slide:
            assert slide.level_dimensions[0] == (768, 512)
            assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(0.25, rel=1e-3)
        assert np.array_equal(_level(path, 0), _level(serial / "stages/synth/slides" / path.name, 0))
    assert _level(slides[0], 0).tobytes() != _level(slides[1], 0).tobytes()  # a patient's slides differ


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"slide_size": 300}, "slide_size 300x300 must be between 512"),
        ({"slide_size": [1024]}, "give one number (a square slide) or [width, height]"),
        ({"tile_size": 200}, "multiple of 16"),
        ({"censoring": 1.5}, "censoring"),
        ({"patients": 0}, "patients"),
        ({"slides": 3}, "slides"),
    ],
)
def test_bad_params_are_clear_errors(
    load_recipe_text: Callable[..., Any], params: dict[str, Any], message: str
) -> None:
    recipe = {"stages": {"synth": {"stage": "synthesize", "params": params}}}
    with pytest.raises(RecipeError) as caught:
        load_recipe_text(json.dumps(recipe))
    assert "stages.synth.params" in str(caught.value)
    assert message in str(caught.value)


def test_cohort_tables_carry_the_factors() -> None:
    """On a large cohort: omics groups track their factor, labels and survival follow the design."""
    spec = CohortSpec(patients=400, slides_per_patient=1, genes_per_group=48, noise_genes=64, censoring=0.3)
    cohort = make_cohort(spec, seed=0)
    index = {g: i for i, g in enumerate(cohort.genes)}
    z = (cohort.expression - cohort.expression.mean(0)) / cohort.expression.std(0)

    def group_mean(genes: list[str]) -> np.ndarray:
        return np.asarray(z[:, [index[g] for g in genes]].mean(axis=1))

    tumour, micro = cohort.tumour, cohort.microenvironment
    assert spearmanr(group_mean(cohort.gene_sets["tumour"]), tumour)[0] > 0.7
    assert spearmanr(group_mean(cohort.gene_sets["microenvironment"]), micro)[0] > 0.7
    assert abs(spearmanr(group_mean(cohort.gene_sets["tumour"]), micro)[0]) < 0.2
    noise = [g for g in cohort.genes if g.startswith("BKG")]
    assert max(abs(spearmanr(z[:, index[g]], tumour)[0]) for g in noise) < 0.25

    assert set(cohort.diagnosis) == set(DIAGNOSES) and set(cohort.grade) == set(GRADES)
    grade = np.array([GRADES.index(g) for g in cohort.grade])
    assert spearmanr(grade, tumour)[0] > 0.6
    invasive = np.array([d.startswith("invasive") for d in cohort.diagnosis])
    assert tumour[invasive].mean() > 0.5 and tumour[~invasive].mean() < -0.5

    assert abs(1 - cohort.event.mean() - 0.3) < 0.07
    died = cohort.event == 1
    risk = 0.8 * tumour - 0.5 * micro
    assert spearmanr(cohort.time[died], risk[died])[0] < -0.5  # higher hazard, earlier death
    assert (cohort.time > 0).all()

    no_censoring = make_cohort(CohortSpec(400, 1, 4, 0, censoring=0.0), seed=0)
    alive = no_censoring.event == 0
    assert alive.mean() < 0.15 and (no_censoring.time[alive] == FOLLOW_UP_MONTHS).all()  # alive at study end
    np.testing.assert_array_equal(no_censoring.tumour, tumour)  # factors do not depend on gene counts
