"""Colour deconvolution (Ruifrok & Johnston, Anal. Quant. Cytol. Histol. 23:291, 2001), in numpy.

Light through a stained section obeys Beer-Lambert: the optical density OD = -log10(I / I0) of each
RGB channel is a sum of the stains' OD vectors weighted by how much of each stain lies on the pixel.
With three stain vectors as the rows of M, a pixel's OD row is `c @ M`, so the stain amounts are
`c = OD @ inv(M)`. Unlike saturation, this stays large for pale pink or brown (DAB) tissue.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .config import H_AND_E, Stain

# Normalised OD vectors (R, G, B) of each stain, as published by Ruifrok & Johnston.
RUIFROK_JOHNSTON: dict[str, tuple[float, float, float]] = {
    "haematoxylin": (0.65, 0.70, 0.29),
    "eosin": (0.07, 0.99, 0.11),
    "dab": (0.27, 0.57, 0.78),
}
STAIN_ORDER: tuple[Stain, ...] = ("haematoxylin", "eosin", "dab")
BACKGROUND_INTENSITY = 255.0  # I0: the light reaching the sensor through glass alone


def stain_matrix() -> np.ndarray:
    """Rows: unit OD vectors of haematoxylin, eosin and DAB (renormalised: the published ones are rounded)."""
    matrix = np.array([RUIFROK_JOHNSTON[s] for s in STAIN_ORDER], dtype=np.float64)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def optical_density(rgb: np.ndarray) -> np.ndarray:
    """OD per channel, float32 [..., 3]. One is added to intensity and I0 so black pixels stay finite."""
    if rgb.ndim < 1 or rgb.shape[-1] != 3:
        raise ValueError(f"expected an RGB array [..., 3], got shape {rgb.shape}")
    intensity = rgb.astype(np.float32)
    return np.asarray(-np.log10((intensity + 1.0) / (BACKGROUND_INTENSITY + 1.0)), dtype=np.float32)


def deconvolve(rgb: np.ndarray) -> np.ndarray:
    """Stain amounts (OD units) [..., 3] in STAIN_ORDER; negative amounts (noise) are clipped to 0."""
    unmix = np.linalg.inv(stain_matrix()).astype(np.float32)
    amounts = optical_density(rgb) @ unmix
    return np.clip(amounts, 0.0, None, out=amounts)


def stain_density(rgb: np.ndarray, stains: Sequence[Stain] = H_AND_E) -> np.ndarray:
    """Sum of the chosen stains' amounts per pixel, float32 [...]: the image thresholded for tissue."""
    amounts = deconvolve(rgb)
    index = [STAIN_ORDER.index(s) for s in dict.fromkeys(stains)]
    return np.asarray(amounts[..., index].sum(axis=-1), dtype=np.float32)


def synthesise(amounts: np.ndarray) -> np.ndarray:
    """RGB uint8 of given stain amounts [..., 3] (the forward model; tests and demos use it)."""
    od = np.asarray(amounts, dtype=np.float64) @ stain_matrix()
    intensity = (BACKGROUND_INTENSITY + 1.0) * np.power(10.0, -od) - 1.0
    return np.asarray(np.clip(np.rint(intensity), 0, 255), dtype=np.uint8)
