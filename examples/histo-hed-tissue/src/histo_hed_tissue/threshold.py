"""Otsu's threshold (IEEE Trans. SMC 9:62, 1979) on a float image, in numpy."""

from __future__ import annotations

import numpy as np


def otsu_threshold(values: np.ndarray, bins: int = 256, upper_quantile: float = 0.999) -> float:
    """The cut that maximises the between-class variance of `values`.

    The histogram spans [min, `upper_quantile`] rather than [min, max], so a few black pen or scanner
    pixels (huge OD) do not squeeze tissue and glass into the same bins. A constant image has no
    cut: its single value is returned, so `values > cut` is empty.
    """
    flat = np.asarray(values, dtype=np.float64).ravel()
    flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        raise ValueError("Otsu's threshold needs at least one finite value")
    low, high = float(flat.min()), float(np.quantile(flat, upper_quantile))
    if high <= low:
        high = float(flat.max())
        if high <= low:
            return low
    counts, edges = np.histogram(np.clip(flat, low, high), bins=bins, range=(low, high))
    centres = (edges[:-1] + edges[1:]) / 2
    weight_below = np.cumsum(counts)[:-1].astype(np.float64)
    weight_above = flat.size - weight_below
    sum_below = np.cumsum(counts * centres)[:-1]
    mean_below = sum_below / np.maximum(weight_below, 1)
    mean_above = (float((counts * centres).sum()) - sum_below) / np.maximum(weight_above, 1)
    between = weight_below * weight_above * (mean_below - mean_above) ** 2
    return float(edges[1:-1][int(np.argmax(between))])


def log_otsu_threshold(density: np.ndarray, offset: float = 0.01) -> float:
    """Otsu's cut of optical density computed on log10(OD + offset), returned in OD units.

    Stain OD is right-skewed: glass is a narrow peak near 0 while tissue spreads over a decade
    (0.05 for faded stroma to 1 for nuclei). On a linear scale Otsu then tends to split pale tissue
    from dark tissue; on a log scale glass and tissue are two compact modes and the cut falls between
    them. `offset` keeps the exact zeros of clipped deconvolution finite.
    """
    log_cut = otsu_threshold(np.log10(np.asarray(density, dtype=np.float64) + offset))
    return float(10.0**log_cut - offset)
