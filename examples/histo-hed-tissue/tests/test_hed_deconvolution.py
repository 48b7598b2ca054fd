"""The deconvolution and Otsu maths, checked against the forward stain model."""

from __future__ import annotations

import numpy as np
import pytest

from histo_hed_tissue.deconvolution import (
    deconvolve,
    optical_density,
    stain_density,
    stain_matrix,
    synthesise,
)
from histo_hed_tissue.threshold import log_otsu_threshold, otsu_threshold


def test_stain_vectors_are_unit_and_independent() -> None:
    matrix = stain_matrix()
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0)
    assert abs(np.linalg.det(matrix)) > 0.1  # invertible with room to spare


def test_white_glass_has_no_stain() -> None:
    white = np.full((4, 4, 3), 255, dtype=np.uint8)
    np.testing.assert_allclose(optical_density(white), 0.0, atol=1e-6)
    np.testing.assert_allclose(deconvolve(white), 0.0, atol=1e-6)


@pytest.mark.parametrize(
    "amounts", [(0.5, 0.0, 0.0), (0.0, 0.4, 0.0), (0.0, 0.0, 0.6), (0.35, 0.25, 0.0), (0.08, 0.12, 0.05)]
)
def test_deconvolution_recovers_the_stains_an_image_was_made_of(amounts: tuple[float, float, float]) -> None:
    rgb = synthesise(np.array([amounts]))
    # uint8 rounding limits the precision, most for dark pixels
    np.testing.assert_allclose(deconvolve(rgb)[0], amounts, atol=0.02)


def test_stain_density_sums_the_chosen_stains_only() -> None:
    rgb = synthesise(np.array([[0.3, 0.2, 0.4]]))
    he = float(stain_density(rgb)[0])
    dab = float(stain_density(rgb, ["dab"])[0])
    assert he == pytest.approx(0.5, abs=0.03)
    assert dab == pytest.approx(0.4, abs=0.03)
    assert float(stain_density(rgb, ["dab", "dab"])[0]) == pytest.approx(dab)  # repeats count once


def test_optical_density_rejects_non_rgb() -> None:
    with pytest.raises(ValueError, match="RGB"):
        optical_density(np.zeros((4, 4), dtype=np.uint8))


def test_otsu_separates_two_populations() -> None:
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.normal(0.02, 0.01, 5000), rng.normal(0.6, 0.1, 2000)])
    cut = otsu_threshold(values)
    assert 0.1 < cut < 0.45
    # a handful of extreme outliers (pen, black borders) does not drag the cut up
    assert otsu_threshold(np.concatenate([values, np.full(5, 50.0)])) == pytest.approx(cut, abs=0.05)


def test_otsu_of_a_constant_image_selects_nothing() -> None:
    values = np.full(100, 0.3)
    assert not (values > otsu_threshold(values)).any()


def test_log_otsu_keeps_pale_tissue_with_the_dark() -> None:
    # glass, faint stroma and dense nuclei: a linear Otsu cut falls between faint and dense tissue
    rng = np.random.default_rng(2)
    glass = np.abs(rng.normal(0.01, 0.008, 20000))
    pale = rng.normal(0.14, 0.02, 6000)
    dark = rng.normal(0.8, 0.1, 3000)
    values = np.concatenate([glass, pale, dark])
    assert (pale > otsu_threshold(values)).mean() < 0.5
    cut = log_otsu_threshold(values)
    assert (pale > cut).mean() > 0.99
    assert (glass > cut).mean() < 0.01
