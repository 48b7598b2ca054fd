"""Weight-free H&E colour and texture statistics: a fast, deterministic baseline encoder.

Needs no download and runs at thousands of patches per second on one CPU core, which makes it the
extractor of tests, smoke runs, the quickstart and benchmarks of the I/O path. Every feature is
computed in torch over whole chunks of the batch; `FEATURE_NAMES` lists them in output order (see
docs/features.md).

Stains are separated by colour deconvolution (Ruifrok & Johnston, Anal Quant Cytol Histol 2001)
with the standard haematoxylin / eosin / DAB optical-density vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from histo.interfaces import FeatureExtractor

from .configs import HandcraftedConfig

CHANNELS = ("red", "green", "blue", "od", "hema", "eosin", "dab")
QUANTILES = (0.05, 0.25, 0.50, 0.75, 0.95)
CHANNEL_STATS = ("mean", "std", *(f"p{round(q * 100):02d}" for q in QUANTILES))
GRADIENT_SCALES = (1, 2, 4)
GLCM_LEVELS = 8
TISSUE_OD = 0.15  # mean optical density above which a pixel counts as tissue
WHITE_LEVEL = 0.85  # all of R, G, B above this: glass / background
CHUNK_PIXELS = 1 << 16  # pixels per chunk and thread on a CPU: the intermediates stay in L2 cache

# optical density of one unit of each stain in R, G, B (rows: haematoxylin, eosin, DAB)
STAIN_OD = (
    (0.65, 0.70, 0.29),
    (0.07, 0.99, 0.11),
    (0.27, 0.57, 0.78),
)


def _names() -> tuple[str, ...]:
    names = [f"{channel}_{stat}" for channel in CHANNELS for stat in CHANNEL_STATS]
    names += ["tissue_fraction", "white_fraction", "saturation_mean", "saturation_std"]
    for image in ("gray", "hema"):
        names += [f"{image}_gradient_mean_x{s}" for s in GRADIENT_SCALES]
        names += [f"{image}_gradient_std", f"{image}_laplacian_mean_abs", f"{image}_laplacian_var"]
    names += [f"glcm_{p}" for p in ("contrast", "homogeneity", "energy", "entropy", "correlation")]
    return tuple(names)


FEATURE_NAMES: tuple[str, ...] = _names()


class HandcraftedFeatures(nn.Module):
    """RGB on [0, 1], [N, 3, S, S] -> [N, len(FEATURE_NAMES)] float32.

    Written for a CPU, where each elementwise pass over a big batch is a trip to main memory: the
    batch goes through in chunks whose intermediates stay in a core's L2 cache; the 7 channels are
    written straight into one buffer (no concatenation); the gradient and the Laplacian share one
    padding and their neighbour sums; the Sobel 1/8 is applied to the statistics (exact: a power of
    two); spreads are two-pass means (torch's `std` is several times slower on CPU); the quantile
    sample is sorted by numpy (its SIMD sort beats torch's by far). Each patch's features depend on
    that patch alone, so chunks change the speed, not the values.
    """

    stain_matrix: torch.Tensor
    luma: torch.Tensor
    glcm_i: torch.Tensor
    glcm_j: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        stains = torch.tensor(STAIN_OD, dtype=torch.float64)
        stains = stains / stains.norm(dim=1, keepdim=True)
        # od[c] = sum_s conc[s] * stains[s, c]  =>  conc = inverse(stains)^T @ od, pixel by pixel
        self.register_buffer(
            "stain_matrix", torch.linalg.inv(stains).T.float().contiguous(), persistent=False
        )
        self.register_buffer("luma", torch.tensor([[0.299, 0.587, 0.114]]), persistent=False)
        levels = torch.arange(GLCM_LEVELS, dtype=torch.float64)
        self.register_buffer(
            "glcm_i", levels.view(-1, 1).expand(GLCM_LEVELS, GLCM_LEVELS).reshape(-1), persistent=False
        )
        self.register_buffer(
            "glcm_j", levels.view(1, -1).expand(GLCM_LEVELS, GLCM_LEVELS).reshape(-1), persistent=False
        )

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=rgb.device.type, enabled=False):
            rgb = rgb.float()
            chunks: Sequence[torch.Tensor] = [rgb]
            if rgb.device.type == "cpu":
                pixels = max(1, rgb.shape[2] * rgb.shape[3])
                chunks = rgb.split(max(1, CHUNK_PIXELS * torch.get_num_threads() // pixels))
            dense, counts = zip(*(self._chunk(chunk) for chunk in chunks), strict=True)
            return torch.cat([torch.cat(dense), self._glcm(torch.cat(counts))], dim=1)

    def _chunk(self, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[n, 65] colour and texture features, and [n, 8, 8] grey-level co-occurrence counts."""
        n, _, height, width = rgb.shape
        pixels = height * width
        channels = rgb.new_empty(n, len(CHANNELS), height, width)
        rgb = torch.clamp(rgb, 0.0, 1.0, out=channels[:, :3])
        od = rgb.clamp_min(1.0 / 255.0).log10_().neg_()
        od_mean = torch.mean(od, dim=1, keepdim=True, out=channels[:, 3:4])
        stains = channels[:, 4:]
        torch.matmul(self.stain_matrix, od.view(n, 3, pixels), out=stains.view(n, 3, pixels))
        stains.clamp_min_(0.0)
        images = rgb.new_empty(n, 2, height, width)  # the texture images: grey level, haematoxylin
        gray = images[:, :1]
        torch.matmul(self.luma, rgb.reshape(n, 3, pixels), out=gray.view(n, 1, pixels))
        images[:, 1:].copy_(stains[:, :1])
        parts = [
            self._channel_stats(channels),
            self._colour_fractions(rgb, od_mean),
            self._texture(images).flatten(1),
        ]
        return torch.cat(parts, dim=1), self._glcm_counts(gray[:, 0])

    @staticmethod
    def _channel_stats(channels: torch.Tensor) -> torch.Tensor:
        """Mean, std and quantiles per channel; quantiles from every fourth row and column (fast)."""
        mean, std = _mean_std(channels.flatten(2))
        sample = _sorted(channels[:, :, ::4, ::4].flatten(2))
        last = sample.shape[2] - 1
        picks = torch.tensor([round(q * last) for q in QUANTILES], device=channels.device)
        quantiles = sample.index_select(2, picks)  # [N, C, Q]
        stats = torch.cat([mean.unsqueeze(2), std.unsqueeze(2), quantiles], dim=2)  # [N, C, 2 + Q]
        return stats.flatten(1)

    @staticmethod
    def _colour_fractions(rgb: torch.Tensor, od_mean: torch.Tensor) -> torch.Tensor:
        pixels = rgb.shape[2] * rgb.shape[3]
        tissue = (od_mean > TISSUE_OD).flatten(1).sum(dim=1) / pixels
        high, low = rgb.amax(dim=1), rgb.amin(dim=1)
        white = (low > WHITE_LEVEL).flatten(1).sum(dim=1) / pixels
        saturation = low.neg_().add_(high).div_(high.clamp_min_(1e-6)).flatten(1)  # (high - low) / high
        mean, std = _mean_std(saturation)
        return torch.stack([tissue.float(), white.float(), mean, std], dim=1)

    @staticmethod
    def _texture(images: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W] -> [N, C, 6]: Sobel gradient energy at three scales, and Laplacian sharpness.

        One replicate padding serves the gradient and the Laplacian: both are built from the same
        sums of the up + down and left + right neighbours.
        """
        p = F.pad(images, (1, 1, 1, 1), mode="replicate")
        vertical, horizontal = _neighbour_sums(p)
        magnitude = _sobel8(vertical, horizontal, p).flatten(2)  # 8 x the normalised magnitude
        means = [magnitude.mean(dim=2)]
        pooled = images
        for scale in GRADIENT_SCALES[1:]:
            while pooled.shape[2] > images.shape[2] // scale:
                pooled = _halve(pooled)
            padded = F.pad(pooled, (1, 1, 1, 1), mode="replicate")
            means.append(_sobel8(*_neighbour_sums(padded), padded).flatten(2).mean(dim=2))
        _, magnitude_std = _mean_std(magnitude)
        laplacian = vertical[..., 1:-1].add(horizontal[:, :, 1:-1]).sub_(images * 4).flatten(2)
        _, laplacian_var = _mean_std(laplacian, root=False)
        sharpness = laplacian.abs_().mean(dim=2)
        gradients = torch.stack([*means, magnitude_std], dim=2) / 8
        return torch.cat([gradients, torch.stack([sharpness, laplacian_var], dim=2)], dim=2)

    @staticmethod
    def _gradient(image: torch.Tensor) -> torch.Tensor:
        """Sobel magnitude (normalised kernels) of a one-channel [N, 1, H, W] image -> [N, H, W].

        As `_texture` computes it: shifted sums, faster than conv2d.
        """
        p = F.pad(image, (1, 1, 1, 1), mode="replicate")
        return _sobel8(*_neighbour_sums(p), p).div_(8)[:, 0]

    @staticmethod
    def _glcm_counts(gray: torch.Tensor) -> torch.Tensor:
        """[N, H, W] grey levels on [0, 1] -> [N, 8, 8] co-occurrences (right and down neighbours).

        Counted with integer bincount so the result is exact and identical on every device.
        """
        n = gray.shape[0]
        cells = GLCM_LEVELS * GLCM_LEVELS
        q = (gray * GLCM_LEVELS).to(torch.int32).clamp_(0, GLCM_LEVELS - 1)
        offsets = torch.arange(n, device=gray.device, dtype=torch.int32).view(-1, 1, 1) * cells
        first = q * GLCM_LEVELS + offsets  # each pixel as the first of a pair: its row of its table
        pairs = torch.cat([(first[:, :, :-1] + q[:, :, 1:]).flatten(), (first[:, :-1] + q[:, 1:]).flatten()])
        return torch.bincount(pairs, minlength=n * cells).view(n, GLCM_LEVELS, GLCM_LEVELS)

    def _glcm(self, counts: torch.Tensor) -> torch.Tensor:
        """Contrast, homogeneity, energy, entropy, correlation of the symmetric co-occurrence tables."""
        counts = counts + counts.transpose(1, 2)
        p = counts.flatten(1).double()
        p = p / p.sum(dim=1, keepdim=True)
        i, j = self.glcm_i, self.glcm_j
        diff2 = (i - j).square()
        contrast = (p * diff2).sum(dim=1)
        homogeneity = (p / (1 + diff2)).sum(dim=1)
        energy = p.square().sum(dim=1)
        entropy = -torch.xlogy(p, p).sum(dim=1)
        mu = (p * i).sum(dim=1, keepdim=True)
        var = (p * (i - mu).square()).sum(dim=1)
        cov = (p * (i - mu) * (j - mu)).sum(dim=1)
        correlation = torch.where(var > 1e-12, cov / var.clamp_min(1e-12), torch.ones_like(var))
        return torch.stack([contrast, homogeneity, energy, entropy, correlation], dim=1).float()


def _halve(image: torch.Tensor) -> torch.Tensor:
    """2 x 2 average pooling (odd last rows and columns dropped), as `avg_pool2d(image, 2)` but
    several times faster on CPU; applied twice it is `avg_pool2d(image, 4)`, up to float rounding."""
    height, width = image.shape[2] // 2 * 2, image.shape[3] // 2 * 2
    rows = image[:, :, 0:height:2, :width] + image[:, :, 1:height:2, :width]
    return rows[..., 0::2].add_(rows[..., 1::2]).mul_(0.25)


def _neighbour_sums(padded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Of a padded [N, C, H + 2, W + 2] image: up + down ([.., H, W + 2]), left + right ([.., H + 2, W])."""
    return padded[:, :, :-2] + padded[:, :, 2:], padded[:, :, :, :-2] + padded[:, :, :, 2:]


def _sobel8(vertical: torch.Tensor, horizontal: torch.Tensor, padded: torch.Tensor) -> torch.Tensor:
    """8 x the normalised Sobel magnitude, from a padded image and its neighbour sums.

    Dividing by 8 afterwards is exact (a power of two), hence the epsilon 64 x 1e-12.
    """
    smooth_rows = padded[:, :, 1:-1].mul(2).add_(vertical)  # 1-2-1 down the rows
    smooth_cols = padded[:, :, :, 1:-1].mul(2).add_(horizontal)  # 1-2-1 along the columns
    gx = smooth_rows[..., 2:] - smooth_rows[..., :-2]
    gy = smooth_cols[:, :, 2:] - smooth_cols[:, :, :-2]
    return gx.square_().add_(gy.square_()).add_(64e-12).sqrt_()


def _mean_std(flat: torch.Tensor, root: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and population std (or variance) over the last dim, in two passes: as exact as `std`."""
    mean = flat.mean(dim=-1, keepdim=True)
    spread = (flat - mean).square_().mean(dim=-1)
    return mean.squeeze(-1), spread.sqrt_() if root else spread


def _sorted(values: torch.Tensor) -> torch.Tensor:
    """Sorted along the last dim; on the CPU by numpy, whose SIMD sort beats torch's many times."""
    if values.device.type != "cpu":
        return values.sort(dim=-1).values
    return torch.from_numpy(np.sort(values.detach().numpy(), axis=-1))


class Handcrafted(FeatureExtractor):
    mean = (0.0, 0.0, 0.0)
    std = (1.0, 1.0, 1.0)
    output_dim = len(FEATURE_NAMES)
    # hundreds of small ops per batch: one thread ran 2,600 patches/s, two threads on a busy 2-core
    # machine 30 (docs/performance.md); it is read-bound anyway, so spare cores read
    max_threads = 1

    def __init__(self, config: HandcraftedConfig) -> None:
        self.config = config
        self.input_size = config.input_size

    def build(self) -> nn.Module:
        return HandcraftedFeatures().eval()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "features": list(FEATURE_NAMES), "version": 1}
