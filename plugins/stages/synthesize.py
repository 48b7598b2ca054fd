"""`synthesize`: writes the embedded demo cohort (slides, labels, survival, omics) into the run.

The quick start runs end to end from it on a machine with no downloaded data. What is generated,
and how the two latent factors drive it, is in docs/demo-data.md. Outputs in the stage folder:
    slides/<slide_id>.tiff   pyramidal tiled JPEG TIFF (OpenSlide "generic tiled TIFF"), mpp set
    cohort.csv               patient_id, slide_id, diagnosis, grade, time (months), event (1 = death)
    omics.csv                patient_id + log2 expression of TUM*, ENV* and BKG* genes
    genesets.gmt             the `tumour` and `microenvironment` gene groups
    latents.csv              ground-truth factors per patient (for tests and reports, not training)
    manifest.json            parameters, class orders, counts, file list
With `scenario: planted` it writes the planted benchmark instead (histo.plugins.synthetic.planted):
the same tables plus feature bags (features/<mag>/*.h5, as an extract stage writes them) and one
split file per seed (splits/splits_<k>.csv), and no slides.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from histo import ComponentSpec
from histo.errors import HistoError
from histo.interfaces import Stage, StageContext
from histo.plugins.synthetic.planted_config import PlantedConfig
from histo.run import raise_if_environment

if TYPE_CHECKING:  # numpy-heavy modules load only when the stage runs
    from histo.plugins.synthetic.cohort import Cohort
    from histo.plugins.synthetic.render import SlideJob

MAX_SIDE = 16384  # the painter holds the whole level-0 image in memory


class SynthesizeConfig(BaseModel):
    """Size and shape of the demo cohort; the recipe's `seed` picks the random draw."""

    model_config = ConfigDict(extra="forbid")

    scenario: Literal["demo", "planted"] = Field(
        "demo",
        description="`demo`: painted slides and tables (the quick start); `planted`: the planted benchmark "
        "for ablations, written as feature bags at 10x and 20x with one split per seed (the `planted` "
        "key; the slide keys are unused)",
    )
    planted: PlantedConfig = Field(
        default_factory=PlantedConfig, description="knobs of the planted benchmark (scenario: planted)"
    )
    patients: int = Field(default=32, ge=1, le=100_000, description="number of patients")
    slides_per_patient: int = Field(
        default=1, ge=1, le=16, description="slides per patient (each drawn separately from the same factors)"
    )
    slide_size: int | tuple[int, int] = Field(
        default=4096,
        description="level-0 size in pixels: one number for a square slide, or [width, height]; "
        f"at most {MAX_SIDE} per side",
    )
    mpp: float = Field(
        default=0.5, ge=0.1, le=2.0, description="micrometres per level-0 pixel (0.5 = 20x, 0.25 = 40x)"
    )
    genes_per_group: int = Field(
        default=48, ge=1, le=10_000, description="genes in each of the `tumour` and `microenvironment` groups"
    )
    noise_genes: int = Field(default=64, ge=0, le=100_000, description="filler genes carrying no signal")
    censoring: float = Field(
        default=0.3,
        ge=0.0,
        le=0.9,
        description="share of patients censored (roughly: drop-out is calibrated to it)",
    )
    jpeg_quality: int = Field(default=85, ge=10, le=100, description="JPEG quality of the slide tiles")
    tile_size: int = Field(
        default=256, ge=64, le=2048, description="TIFF tile side in pixels (a multiple of 16)"
    )
    workers: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="processes painting slides at once; null = one per CPU core, at most 8 "
        "(the slides are the same for any value)",
    )

    @field_validator("slide_size", mode="before")
    @classmethod
    def _one_or_two_numbers(cls, value: Any) -> Any:
        if isinstance(value, list | tuple) and len(value) != 2:
            raise ValueError(f"give one number (a square slide) or [width, height], got {list(value)}")
        return value

    @field_validator("tile_size")
    @classmethod
    def _tile_multiple_of_16(cls, value: int) -> int:
        if value % 16:
            raise ValueError(
                f"must be a multiple of 16 (JPEG tiles with 2x2 chroma subsampling), got {value}"
            )
        return value

    @model_validator(mode="after")
    def _slide_fits(self) -> SynthesizeConfig:
        width, height = self.size
        smallest = 2 * self.tile_size
        if min(width, height) < smallest or max(width, height) > MAX_SIDE:
            raise ValueError(
                f"slide_size {width}x{height} must be between {smallest} (two tiles, so the slide has "
                f"a pyramid) and {MAX_SIDE} pixels per side"
            )
        return self

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of level 0."""
        if isinstance(self.slide_size, int):
            return self.slide_size, self.slide_size
        return self.slide_size

    def worker_count(self) -> int:
        if self.workers is not None:
            return self.workers
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, min(cores, 8))


class SynthesizeStage(Stage[SynthesizeConfig]):
    """Writes the demo cohort; on a resumed run, slides already written are kept."""

    version = "1"

    def run(self, ctx: StageContext) -> None:
        from histo.io import write_json_atomic
        from histo.plugins.synthetic.cohort import STREAM_SLIDES, CohortSpec, make_cohort, write_tables
        from histo.plugins.synthetic.render import SlideJob
        from histo.plugins.synthetic.slide import SlideFactors

        cfg = self.config
        if cfg.scenario == "planted":
            from histo.plugins.synthetic.planted_stage import run_planted

            run_planted(cfg.planted, ctx, self.version)
            return
        cohort = make_cohort(
            CohortSpec(
                cfg.patients, cfg.slides_per_patient, cfg.genes_per_group, cfg.noise_genes, cfg.censoring
            ),
            ctx.seed,
        )
        width, height = cfg.size
        slide_dir = ctx.out_dir / "slides"
        jobs = [
            SlideJob(
                path=slide_dir / f"{slide_id}.tiff",
                slide_id=slide_id,
                width=width,
                height=height,
                mpp=cfg.mpp,
                factors=SlideFactors(float(cohort.tumour[p]), float(cohort.microenvironment[p])),
                seed=ctx.seed,
                keys=(STREAM_SLIDES, p, s),
                tile=cfg.tile_size,
                quality=cfg.jpeg_quality,
            )
            for p, s, slide_id in cohort.slides
        ][ctx.rank :: ctx.world_size]
        if ctx.is_main:  # tables first: cheap, and useful even while slides are still being painted
            tables = write_tables(cohort, ctx.out_dir)
            for name, path in tables.items():
                ctx.add_artifact(path, f"demo cohort: {name}")

        todo = [job for job in jobs if not job.path.exists()]  # atomic writes: existing = complete
        started = time.monotonic()
        self._paint(ctx, todo)
        seconds = time.monotonic() - started

        if ctx.is_main:
            write_json_atomic(
                ctx.out_dir / "manifest.json", _manifest(cfg, ctx.seed, cohort, tables, self.version)
            )
            ctx.add_artifact(ctx.out_dir / "manifest.json", "demo cohort: parameters, class orders, files")
            ctx.add_artifact(slide_dir, "demo cohort: pyramidal TIFF slides (OpenSlide)")
        ctx.barrier()
        ctx.add_metrics(
            patients=cfg.patients,
            slides=len(cohort.slides),
            slides_painted=len(todo),
            slides_reused=len(jobs) - len(todo),
            paint_seconds=round(seconds, 2),
            seconds_per_slide=round(seconds / len(todo), 3) if todo else None,
            events=int(cohort.event.sum()),
            censored_share=round(1 - float(cohort.event.mean()), 3),
        )

    def _paint(self, ctx: StageContext, jobs: list[SlideJob]) -> None:
        """Paint the slides, in a pool of processes when there are several (painting holds the GIL)."""
        from histo.plugins.synthetic.render import image_block_cache, keep_image_blocks, render_slide

        if not jobs:
            ctx.log.info("%s: every slide is already written", ctx.stage_id)
            return
        workers = min(self.config.worker_count(), len(jobs))
        ctx.log.info("%s: painting %d slide(s) with %d process(es)", ctx.stage_id, len(jobs), workers)
        try:
            if workers == 1:
                with image_block_cache():
                    for job in ctx.progress(jobs, description="painting slides"):
                        render_slide(job)
                return
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn, not fork: the parent may hold threads (logging, progress) that fork would copy mid-lock
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=context, initializer=keep_image_blocks) as pool:
                for _ in ctx.progress(
                    pool.map(render_slide, jobs), total=len(jobs), description="painting slides"
                ):
                    pass
        except OSError as exc:
            raise_if_environment(exc, ctx.out_dir / "slides")
            raise HistoError(f"could not write a demo slide under {ctx.out_dir / 'slides'}: {exc}") from exc


def _manifest(
    cfg: SynthesizeConfig, seed: int, cohort: Cohort, tables: dict[str, Path], version: str
) -> dict[str, Any]:
    from histo.plugins.synthetic.cohort import DIAGNOSES, FOLLOW_UP_MONTHS, GRADES
    from histo.plugins.synthetic.tiff import pyramid_sizes

    width, height = cfg.size
    return {
        "generator": "histo synthesize",
        "stage_version": version,
        "seed": seed,
        "params": cfg.model_dump(mode="json", exclude={"workers", "planted"}),
        "counts": {
            "patients": len(cohort.patient_ids),
            "slides": len(cohort.slides),
            "genes": {
                **{name: len(genes) for name, genes in cohort.gene_sets.items()},
                "noise": cfg.noise_genes,
            },
            "events": int(cohort.event.sum()),
            "censored": int(len(cohort.event) - cohort.event.sum()),
        },
        "labels": {
            "diagnosis": list(DIAGNOSES),
            "grade": list(GRADES),
            "time": f"months from diagnosis to death or last follow-up (study ends at {FOLLOW_UP_MONTHS:g})",
            "event": "1 = death observed, 0 = censored (alive at last follow-up)",
        },
        "slides": {
            "format": "generic tiled TIFF (OpenSlide): JPEG YCbCr tiles, levels downsampled by 2",
            "mpp": cfg.mpp,
            "tile_size": cfg.tile_size,
            "level_dimensions": [list(s) for s in pyramid_sizes(width, height, cfg.tile_size)],
        },
        "files": {
            **{name: path.name for name, path in tables.items()},
            "slides": [f"slides/{slide_id}.tiff" for _, _, slide_id in cohort.slides],
        },
    }


SPEC = ComponentSpec(
    name="synthesize",
    factory=SynthesizeStage,
    config=SynthesizeConfig,
    description="write a small deterministic demo cohort: H&E-like slides, labels, survival, omics",
)
