"""Smooth random fields and textures, made in the Fourier domain so their cost does not grow with scale.

The slide painter builds from these everything smoother than a nucleus (the low-resolution maps of
tissue, tumour nests and stain drift) and the full-resolution stroma textures tiled across a slide.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _frequencies(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Frequency grids (cycles per pixel) matching `np.fft.rfft2` of a (height, width) array."""
    fy = np.fft.fftfreq(height).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(width).astype(np.float32)[None, :]
    return fy, fx


def _standardise(field: np.ndarray) -> np.ndarray:
    """Zero mean, unit standard deviation per leading item (a flat field stays zero)."""
    axes = (-2, -1)
    centred = field - field.mean(axis=axes, keepdims=True)
    scale = centred.std(axis=axes, keepdims=True)
    return (centred / np.where(scale > 0, scale, 1)).astype(np.float32)


def smooth_noise(shape: tuple[int, int], sigmas_px: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """Standardised Gaussian random fields, one per correlation length in `sigmas_px` (periodic).

    Equivalent to Gaussian-blurring white noise, at a cost independent of the blur; one batched FFT.
    Returns [len(sigmas_px), h, w] float32.
    """
    height, width = shape
    fy, fx = _frequencies(height, width)
    sigma = np.maximum(np.asarray(sigmas_px, dtype=np.float32), 0.5)[:, None, None]
    gain = np.exp(-2.0 * (np.pi * sigma) ** 2 * (fy**2 + fx**2))
    white = rng.standard_normal((len(sigma), height, width), dtype=np.float32)
    return _standardise(np.fft.irfft2(np.fft.rfft2(white) * gain, s=(height, width)))


def fibre_noise(
    size: int, along_px: float, across_px: float, angles: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Anisotropic fields, one per angle (radians): streaks `along_px` long and `across_px` wide.

    Collagen fibres in stroma run in bundles; blending a few orientations gives wavy bundles.
    Returns [len(angles), size, size] float32, standardised.
    """
    fy, fx = _frequencies(size, size)
    cos = np.cos(angles).astype(np.float32)[:, None, None]
    sin = np.sin(angles).astype(np.float32)[:, None, None]
    along = fx * cos + fy * sin  # frequency component along the fibre direction
    across = -fx * sin + fy * cos
    gain = np.exp(-2.0 * np.pi**2 * ((along * along_px) ** 2 + (across * across_px) ** 2))
    white = rng.standard_normal((len(angles), size, size), dtype=np.float32)
    return _standardise(np.fft.irfft2(np.fft.rfft2(white) * gain, s=(size, size)))


def to_unit(field: np.ndarray) -> np.ndarray:
    """Map a field in [0, 1] to uint8 [0, 255] (values outside are clipped)."""
    return np.clip(np.rint(field * 255.0), 0, 255).astype(np.uint8)


def tile_texture(texture: np.ndarray, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Cover (height, width) with copies of a periodic texture, starting at a random phase.

    Fourier-made textures wrap around, so the copies meet without seams; costs one copy of the output.
    """
    size_y, size_x = texture.shape
    shift = (int(rng.integers(size_y)), int(rng.integers(size_x)))
    rolled = np.roll(texture, shift, axis=(0, 1))
    out = np.empty((height, width), dtype=texture.dtype)
    for y in range(0, height, size_y):
        for x in range(0, width, size_x):
            h, w = min(size_y, height - y), min(size_x, width - x)
            out[y : y + h, x : x + w] = rolled[:h, :w]
    return out
