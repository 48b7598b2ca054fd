"""Knobs of the planted benchmark (`synthesize` with `scenario: planted`); the generator is planted.py."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class PlantedConfig(BaseModel):
    """What is planted and how strongly; docs/demo-data.md ("The planted benchmark") says why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seeds: int = Field(
        10,
        ge=1,
        le=1000,
        description="independent cohorts, one fold each (splits/splits_<k>.csv): the seeds of an ablation",
    )
    patients_per_seed: int = Field(96, ge=8, le=100_000, description="patients in each seed's cohort")
    test_fraction: float = Field(0.25, gt=0, lt=1, description="share of a seed's patients in its test set")
    val_fraction: float = Field(0.2, ge=0, lt=1, description="share of the rest held out for validation")
    grid: int = Field(
        8,
        ge=2,
        le=128,
        description="patches per side: every bag is grid x grid patches at both magnifications",
    )
    feature_dim: int = Field(32, ge=2, le=4096, description="width of the patch features")
    genes_per_group: int = Field(
        16, ge=1, le=10_000, description="genes in each of `tumour` and `microenvironment`"
    )
    noise_genes: int = Field(16, ge=0, le=100_000, description="filler genes carrying no signal")
    tumour_rna_noise: float = Field(0.3, ge=0, description="noise sd of the tumour genes (loadings 0.6-1.4)")
    microenvironment_rna_noise: float = Field(
        0.6,
        ge=0,
        description="noise sd of the microenvironment genes: larger, so the subspaces differ in confidence",
    )
    slide_signal: float = Field(
        0.8,
        ge=0,
        description="shift of an informative patch's features per unit factor (noise sd 1): weak on purpose",
    )
    informative_fraction: float = Field(
        0.25,
        gt=0,
        le=1,
        description="share of each bag's patches (one contiguous disc) that carry the slide signal",
    )
    signal_magnification: Literal["10x", "20x"] = Field(
        "20x", description="the only magnification whose patches carry signal; the other is pure noise"
    )
    label_noise: float = Field(0.05, ge=0, lt=0.5, description="share of labels flipped at random")
