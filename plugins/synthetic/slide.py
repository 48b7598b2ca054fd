"""Paints one H&E-like slide whose look is driven by a patient's latent factors.

The picture is built as two stain concentration maps, haematoxylin H (nuclei) and eosin E (stroma,
cytoplasm), turned into colour by Beer-Lambert absorption with per-slide stain vectors:
    RGB = glass * exp(-H * h_vector) * exp(-E * e_vector)
which factorises into two 1-D lookup tables per channel, so colour costs six table look-ups and
three multiplies of 8-bit images. Anything smoother than a nucleus (tissue outline, tumour nests,
lymphoid aggregates, stain drift) is made on a grid of about 8 um per pixel and resized. The stroma
texture is a periodic tile repeated from a random phase; it carries no factor, so callers may share
a few tiles between slides. Only the tissue's bounding box is painted at full resolution; the rest
is bare glass.

What the factors change (docs/demo-data.md has the table):
- tumour factor: share of the tissue in tumour nests, and the density, size, pleomorphism,
  hyperchromasia, vesicular chromatin and nucleoli of tumour nuclei;
- microenvironment factor: density of small dark lymphocytes in stroma and nests, and the number
  of lymphoid aggregates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops

from .fields import fibre_noise, smooth_noise, tile_texture, to_unit
from .nuclei import NucleusShape, block_size, make_bank, scatter

LOWRES_UM = 8.0  # micrometres per pixel of the low-resolution maps
TEXTURE_UM = 256.0  # side of the periodic stroma texture tile, in micrometres
BANK_SIZE = 64  # nucleus templates per cell type and slide

# reference stain optical densities (RGB) per unit concentration, before per-slide variation
HAEMATOXYLIN = np.array([0.65, 0.70, 0.29])
EOSIN = np.array([0.10, 0.90, 0.40])

# nuclei per square micrometre (1e-4 = 1 per 100 x 100 um)
TUMOUR_DENSITY = (0.0045, 0.004)  # base + extra at a high tumour factor
FIBROBLAST_DENSITY = 0.0005
LYMPHOCYTE_DENSITY = {"stroma": 0.0004, "nests": 0.00025, "aggregate": 0.01}
AGGREGATES_PER_MM2 = 0.8  # lymphoid aggregates per mm^2 of tissue at an average microenvironment


@dataclass(frozen=True)
class SlideFactors:
    """The latent factors a slide shows; standard normal across the cohort."""

    tumour: float
    microenvironment: float


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def tumour_shape(tumour: float) -> NucleusShape:
    """Tumour-cell nuclei: bigger, more varied, darker and more often vesicular as the factor rises."""
    s = _sigmoid(1.3 * tumour)
    return NucleusShape(
        radius_um=3.3 + 2.6 * s,
        size_cv=0.08 + 0.25 * s,
        aspect=(0.55 + 0.2 * (1 - s), 0.95),
        intensity=0.38 + 0.2 * s,
        intensity_sd=0.03 + 0.05 * s,
        vesicular=0.1 + 0.6 * s,
        nucleolus=0.05 + 0.6 * s,
        chromatin=0.1 + 0.1 * s,
        ceiling=0.75,  # lymphocytes stay the darkest nuclei
    )


LYMPHOCYTE = NucleusShape(
    radius_um=3.0, size_cv=0.08, aspect=(0.85, 1.0), intensity=0.97, intensity_sd=0.03, chromatin=0.05
)
FIBROBLAST = NucleusShape(
    radius_um=5.0,
    size_cv=0.15,
    aspect=(0.2, 0.32),
    intensity=0.6,
    intensity_sd=0.06,
    chromatin=0.1,
    max_angle=math.pi / 3,  # roughly along the fibre bundles, which run near the horizontal
)


@dataclass(frozen=True)
class Stains:
    """Per-slide stain appearance: two 1-D colour tables per RGB channel (see module docstring)."""

    h_tables: np.ndarray  # [3, 256] uint8: glass * exp(-h * h_vector)
    e_tables: np.ndarray  # [3, 256] uint8: 255 * exp(-e * e_vector)

    @classmethod
    def random(cls, rng: np.random.Generator) -> Stains:
        """Stain variation between slides: hue and strength of each stain, the colour of the glass."""
        h_vec = np.clip(HAEMATOXYLIN + rng.normal(0, 0.04, 3), 0.05, None)
        e_vec = np.clip(EOSIN + rng.normal(0, 0.04, 3), 0.02, None)
        h_vec = h_vec / np.linalg.norm(h_vec) * 2.4 * rng.uniform(0.85, 1.15)
        e_vec = e_vec / np.linalg.norm(e_vec) * 1.1 * rng.uniform(0.8, 1.2)
        glass = 237 + rng.uniform(-5, 5) + rng.normal(0, 1.5, 3)
        level = np.arange(256) / 255.0
        return cls(
            h_tables=_u8(glass[:, None] * np.exp(-level[None, :] * h_vec[:, None])),
            e_tables=_u8(255.0 * np.exp(-level[None, :] * e_vec[:, None])),
        )

    @property
    def glass(self) -> tuple[int, int, int]:
        r, g, b = (int(self.h_tables[c, 0]) * int(self.e_tables[c, 0]) // 255 for c in range(3))
        return r, g, b

    def colour(self, haem: Image.Image, eosin: Image.Image) -> Image.Image:
        bands = [
            ImageChops.multiply(haem.point(self.h_tables[c].tolist()), eosin.point(self.e_tables[c].tolist()))
            for c in range(3)
        ]
        return Image.merge("RGB", bands)


def _u8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _grey(array: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(array), mode="L")


def _ramp(x: np.ndarray, width: float) -> np.ndarray:
    """0 below -width/2, 1 above +width/2, linear between: a soft threshold at 0."""
    return np.clip(0.5 + x / width, 0.0, 1.0).astype(np.float32)


@dataclass
class Maps:
    """Low-resolution maps of one slide, each in [0, 1] except `drift` (a stain intensity factor)."""

    tissue: np.ndarray
    nests: np.ndarray  # tumour nests, already multiplied by tissue
    stroma: np.ndarray  # tissue outside nests, with fat holes removed
    aggregates: np.ndarray  # lymphoid aggregates (peak 1), centred in tissue but not cut to it
    drift: np.ndarray

    def crop(self, ys: slice, xs: slice) -> Maps:
        return Maps(*(getattr(self, f)[ys, xs] for f in ("tissue", "nests", "stroma", "aggregates", "drift")))


def _tissue(shape: tuple[int, int], noise: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One to three irregular tissue pieces with ragged borders (soft mask, ~1.5 px feathered edge)."""
    lh, lw = shape
    side = max(lh, lw)
    yy = (np.arange(lh, dtype=np.float32)[:, None] + 0.5) / side
    xx = (np.arange(lw, dtype=np.float32)[None, :] + 0.5) / side
    pieces = int(rng.integers(1, 4))
    field = np.full(shape, -1.0, dtype=np.float32)
    for _ in range(pieces):
        cy, cx = rng.uniform(0.35, 0.65) * lh / side, rng.uniform(0.35, 0.65) * lw / side
        ry, rx = rng.uniform(0.2, 0.36, size=2) / math.sqrt(pieces) * 1.3
        theta = rng.uniform(0, math.pi)
        dy, dx = yy - cy, xx - cx
        u = (dx * math.cos(theta) + dy * math.sin(theta)) / rx
        v = (-dx * math.sin(theta) + dy * math.cos(theta)) / ry
        field = np.maximum(field, 1.0 - np.sqrt(u * u + v * v))
    field = field + 0.2 * noise[0] + 0.05 * noise[1]
    return _ramp(field, 3.0 / side)


def _aggregates(tissue: np.ndarray, count: int, px_um: float, rng: np.random.Generator) -> np.ndarray:
    """`count` roundish lymphoid aggregates, 60-160 um across, centred in the tissue; peak value 1."""
    lh, lw = tissue.shape
    out = np.zeros(tissue.shape, dtype=np.float32)
    inside = np.flatnonzero(tissue > 0.5)
    if inside.size == 0:
        return out
    yy = np.arange(lh, dtype=np.float32)[:, None]
    xx = np.arange(lw, dtype=np.float32)[None, :]
    for centre in rng.choice(inside, size=count):
        cy, cx = divmod(int(centre), lw)
        radius = rng.uniform(30.0, 80.0) / px_um
        out = np.maximum(out, np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2)))
    return out


def low_res_maps(
    shape: tuple[int, int], px_um: float, factors: SlideFactors, rng: np.random.Generator
) -> Maps:
    """Where tissue, tumour nests, stroma, fat and lymphoid aggregates are, at ~8 um per pixel."""
    side = max(shape)
    # one batched FFT: tissue outline (2), nests (3), fat holes, stain drift
    sigmas = [side / 10, side / 40, 90 / px_um, 25 / px_um, 10 / px_um, 20 / px_um, 300 / px_um]
    noise = smooth_noise(shape, sigmas, rng)
    tissue = _tissue(shape, noise[0:2], rng)
    holes = _ramp(noise[5] - 2.4, 0.4)  # fat vacuoles and lumina in the stroma
    # tumour nests cover a share of the tissue that grows with the tumour factor
    share = float(np.clip(0.12 + 0.7 * _sigmoid(1.2 * factors.tumour + rng.normal(0, 0.25)), 0.1, 0.85))
    nest_field = noise[2] + 0.35 * noise[3] + 0.1 * noise[4]
    inside = nest_field[tissue > 0.5]
    threshold = float(np.quantile(inside, 1.0 - share)) if inside.size else np.inf
    nests = _ramp(nest_field - threshold, 0.25) * tissue
    stroma = (tissue - nests) * (1.0 - holes)
    tissue_mm2 = float(tissue.sum()) * px_um**2 / 1e6
    count = int(rng.poisson(AGGREGATES_PER_MM2 * tissue_mm2 * math.exp(0.8 * factors.microenvironment)))
    return Maps(
        tissue=tissue * (1.0 - holes * (1.0 - nests)),
        nests=nests,
        stroma=stroma,
        aggregates=_aggregates(tissue, count, px_um, rng),
        drift=1.0 + 0.12 * noise[6],
    )


def stroma_textures(mpp: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Full-resolution eosin textures (uint8, periodic, read-only): wavy collagen fibres; granular
    cytoplasm. They do not depend on the factors, so slides may share them."""
    from scipy.ndimage import map_coordinates

    size = int(2 ** round(math.log2(TEXTURE_UM / mpp)))
    angles = rng.uniform(-0.4, 0.4) + np.array([0.0, 0.6])
    bundles = fibre_noise(size, along_px=16.0 / mpp, across_px=0.9 / mpp, angles=angles, rng=rng)
    smooth = smooth_noise((size, size), [40.0 / mpp, 5.0 / mpp, 0.7 / mpp, 25.0 / mpp, 25.0 / mpp], rng)
    weight = 1.0 / (1.0 + np.exp(-2.5 * smooth[0]))  # which orientation dominates where
    fibres = bundles[0] * weight + bundles[1] * (1.0 - weight)
    # waviness: shift the texture by a smooth displacement field (periodic, so tiles stay seamless)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    amplitude = 6.0 / mpp
    fibres = map_coordinates(
        fibres, [yy + amplitude * smooth[3], xx + amplitude * smooth[4]], order=1, mode="grid-wrap"
    )
    fibres = fibres / max(float(fibres.std()), 1e-6)
    fibre_tex = (0.66 + 0.22 * np.tanh(1.1 * fibres)) * (1.0 - 0.5 * _ramp(smooth[1] - 1.6, 0.6))  # + clefts
    cyto_tex = 0.36 + 0.05 * smooth[2]
    textures = to_unit(fibre_tex), to_unit(cyto_tex)
    for texture in textures:
        texture.setflags(write=False)
    return textures


def _upsample(field: np.ndarray, factor: int, width: int, height: int) -> Image.Image:
    """A low-res map in [0, 1] as a full-resolution 8-bit image.

    Bilinear to about 1 um per pixel, then nearest to full size: smooth where it shows, half the cost.
    """
    small = _grey(to_unit(field))
    box = (0.0, 0.0, width / factor, height / factor)  # the part of the low-res grid this window covers
    if factor >= 4:
        mid = small.resize(((width + 1) // 2, (height + 1) // 2), Image.Resampling.BILINEAR, box=box)
        return mid.resize((width, height), Image.Resampling.NEAREST)
    return small.resize((width, height), Image.Resampling.BILINEAR, box=box)


def paint_slide(
    width: int,
    height: int,
    mpp: float,
    factors: SlideFactors,
    rng: np.random.Generator,
    textures: tuple[np.ndarray, np.ndarray] | None = None,
) -> Image.Image:
    """An RGB image of (width, height) pixels at `mpp` micrometres per pixel.

    `textures` (from `stroma_textures` at the same mpp) saves making them; by default they come
    from `rng`.
    """
    factor = max(1, round(LOWRES_UM / mpp))  # full-resolution pixels per low-res pixel
    px_um = factor * mpp
    maps = low_res_maps((math.ceil(height / factor), math.ceil(width / factor)), px_um, factors, rng)
    stains = Stains.random(rng)
    if textures is None:
        textures = stroma_textures(mpp, rng)
    slide = Image.new("RGB", (width, height), stains.glass)

    rows, cols = np.nonzero(maps.tissue.max(axis=1) > 0)[0], np.nonzero(maps.tissue.max(axis=0) > 0)[0]
    if rows.size == 0:
        return slide
    # paint only the tissue's bounding box, aligned to the low-res grid
    ly, lx = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
    y0, x0 = int(rows[0]) * factor, int(cols[0]) * factor
    y1, x1 = min(height, (int(rows[-1]) + 1) * factor), min(width, (int(cols[-1]) + 1) * factor)
    window = _paint_window(maps.crop(ly, lx), x1 - x0, y1 - y0, factor, mpp, factors, stains, textures, rng)
    slide.paste(window, (x0, y0))
    return slide


def _paint_window(
    maps: Maps,
    width: int,
    height: int,
    factor: int,
    mpp: float,
    factors: SlideFactors,
    stains: Stains,
    textures: tuple[np.ndarray, np.ndarray],
    rng: np.random.Generator,
) -> Image.Image:
    # haematoxylin: nuclei stamped from three banks; expected count per block = density * block area
    tumour = tumour_shape(factors.tumour)
    s_t, e_m = _sigmoid(1.3 * factors.tumour), math.exp(0.9 * factors.microenvironment)
    lymph = LYMPHOCYTE_DENSITY
    layers = [
        (tumour, maps.nests * (TUMOUR_DENSITY[0] + TUMOUR_DENSITY[1] * s_t)),
        (FIBROBLAST, maps.stroma * FIBROBLAST_DENSITY),
        (
            LYMPHOCYTE,
            (maps.stroma * lymph["stroma"] + maps.nests * lymph["nests"]) * e_m
            + maps.aggregates * maps.tissue * lymph["aggregate"],
        ),
    ]
    margin = max(block_size(shape, mpp) for shape, _ in layers)
    canvas = np.zeros((height + 2 * margin, width + 2 * margin), dtype=np.uint8)
    for shape, per_um2 in layers:
        bank = make_bank(shape, mpp, BANK_SIZE, rng)
        per_block = per_um2 * (bank.block * mpp) ** 2
        skip = margin - bank.block  # scatter wants a margin of exactly one of its blocks
        view = canvas[skip : canvas.shape[0] - skip, skip : canvas.shape[1] - skip]
        scatter(view, bank, per_block, factor, float(per_block.max(initial=0.0)), rng)
    haem = _grey(canvas[margin : margin + height, margin : margin + width])

    # eosin: collagen fibres in stroma, paler granular cytoplasm in nests; uneven staining (drift)
    fibre_tex, cyto_tex = textures
    stroma_w = _upsample(np.clip(maps.stroma * maps.drift, 0, 1), factor, width, height)
    nests_w = _upsample(np.clip(maps.nests * maps.drift, 0, 1), factor, width, height)
    eosin = ImageChops.add(
        ImageChops.multiply(_grey(tile_texture(fibre_tex, height, width, rng)), stroma_w),
        ImageChops.multiply(_grey(tile_texture(cyto_tex, height, width, rng)), nests_w),
    )
    # nuclei take up little eosin: they look blue-purple, not dark magenta
    eosin = ImageChops.subtract(eosin, haem.point([round(v * 0.6) for v in range(256)]))
    # a little haematoxylin in tumour cytoplasm turns nests purple-pink rather than pink
    haem = ImageChops.lighter(haem, nests_w.point([round(v * 0.18) for v in range(256)]))
    return stains.colour(haem, eosin)
