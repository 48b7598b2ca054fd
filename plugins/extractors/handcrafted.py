"""Weight-free H&E colour and texture statistics: a fast, deterministic baseline encoder.

Needs no download and runs at thousands of patches per second on a CPU, which makes it the extractor
of tests, smoke runs and benchmarks of the I/O path. Every feature is computed in torch over the
whole batch at once; `FEATURE_NAMES` lists them in output order (see docs/features.md).

Stains are separated by colour deconvolution (Ruifrok & Johnston, Anal Quant Cytol Histol 2001)
with the standard haematoxylin / eosin / DAB optical-density vectors.
"""

from __future__ import annotations

from typing import Any

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
    """RGB on [0, 1], [N, 3, S, S] -> [N, len(FEATURE_NAMES)] float32."""

    od_to_stain: torch.Tensor
    luma: torch.Tensor
    glcm_i: torch.Tensor
    glcm_j: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        stains = torch.tensor(STAIN_OD, dtype=torch.float64)
        stains = stains / stains.norm(dim=1, keepdim=True)
        # od[c] = sum_s conc[s] * stains[s, c]  =>  conc = od @ inverse(stains)
        self.register_buffer("od_to_stain", torch.linalg.inv(stains).float(), persistent=False)
        self.register_buffer("luma", torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1), persistent=False)
        levels = torch.arange(GLCM_LEVELS, dtype=torch.float32)
        self.register_buffer(
            "glcm_i", levels.view(-1, 1).expand(GLCM_LEVELS, GLCM_LEVELS).reshape(-1), persistent=False
        )
        self.register_buffer(
            "glcm_j", levels.view(1, -1).expand(GLCM_LEVELS, GLCM_LEVELS).reshape(-1), persistent=False
        )

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=rgb.device.type, enabled=False):
            rgb = rgb.float().clamp(0.0, 1.0).contiguous()
            od = -torch.log10(rgb.clamp_min(1.0 / 255.0))
            stains = torch.einsum("nchw,cs->nshw", od, self.od_to_stain).clamp_min(0.0)
            od_mean = od.mean(dim=1, keepdim=True)
            gray = (rgb * self.luma).sum(dim=1, keepdim=True)
            parts = [
                self._channel_stats(torch.cat([rgb, od_mean, stains], dim=1)),
                self._colour_fractions(rgb, od_mean),
                self._texture(gray),
                self._texture(stains[:, :1]),
                self._glcm(gray),
            ]
            return torch.cat(parts, dim=1)

    @staticmethod
    def _channel_stats(channels: torch.Tensor) -> torch.Tensor:
        """Mean, std and quantiles per channel; quantiles from every fourth row and column (fast)."""
        flat = channels.flatten(2)
        mean, std = flat.mean(dim=2), flat.std(dim=2, unbiased=False)
        sample = channels[:, :, ::4, ::4].flatten(2).sort(dim=2).values
        last = sample.shape[2] - 1
        picks = torch.tensor([round(q * last) for q in QUANTILES], device=channels.device)
        quantiles = sample.index_select(2, picks)  # [N, C, Q]
        stats = torch.cat([mean.unsqueeze(2), std.unsqueeze(2), quantiles], dim=2)  # [N, C, 2 + Q]
        return stats.flatten(1)

    @staticmethod
    def _colour_fractions(rgb: torch.Tensor, od_mean: torch.Tensor) -> torch.Tensor:
        tissue = (od_mean > TISSUE_OD).float().flatten(1).mean(dim=1)
        white = (rgb.amin(dim=1) > WHITE_LEVEL).float().flatten(1).mean(dim=1)
        high, low = rgb.amax(dim=1), rgb.amin(dim=1)
        saturation = ((high - low) / high.clamp_min(1e-6)).flatten(1)
        return torch.stack(
            [tissue, white, saturation.mean(dim=1), saturation.std(dim=1, unbiased=False)], dim=1
        )

    def _texture(self, image: torch.Tensor) -> torch.Tensor:
        """Sobel gradient energy at three scales, and Laplacian sharpness, of a one-channel image."""
        features = []
        magnitude = self._gradient(image)
        for scale in GRADIENT_SCALES:
            scaled = magnitude if scale == 1 else self._gradient(F.avg_pool2d(image, scale))
            features.append(scaled.flatten(1).mean(dim=1))
        features.append(magnitude.flatten(1).std(dim=1, unbiased=False))
        p = F.pad(image, (1, 1, 1, 1), mode="replicate")[:, 0]
        centre = p[:, 1:-1, 1:-1]
        laplacian = (
            p[:, :-2, 1:-1] + p[:, 2:, 1:-1] + p[:, 1:-1, :-2] + p[:, 1:-1, 2:] - 4 * centre
        ).flatten(1)
        features += [laplacian.abs().mean(dim=1), laplacian.var(dim=1, unbiased=False)]
        return torch.stack(features, dim=1)

    @staticmethod
    def _gradient(image: torch.Tensor) -> torch.Tensor:
        """Sobel magnitude (normalised kernels), as separable shifted differences: faster than conv2d."""
        p = F.pad(image, (1, 1, 1, 1), mode="replicate")[:, 0]
        smooth_rows = p[:, :-2] + 2 * p[:, 1:-1] + p[:, 2:]  # [N, H, W + 2]
        smooth_cols = p[:, :, :-2] + 2 * p[:, :, 1:-1] + p[:, :, 2:]  # [N, H + 2, W]
        gx = (smooth_rows[:, :, 2:] - smooth_rows[:, :, :-2]) / 8
        gy = (smooth_cols[:, 2:, :] - smooth_cols[:, :-2, :]) / 8
        return torch.sqrt(gx.square() + gy.square() + 1e-12)

    def _glcm(self, gray: torch.Tensor) -> torch.Tensor:
        """Grey-level co-occurrence statistics (8 levels, right and down neighbours, symmetric).

        Counted with integer bincount so the result is exact and identical on every device.
        """
        n = gray.shape[0]
        cells = GLCM_LEVELS * GLCM_LEVELS
        q = (gray[:, 0] * GLCM_LEVELS).long().clamp(0, GLCM_LEVELS - 1)
        pairs = torch.cat(
            [
                (q[:, :, :-1] * GLCM_LEVELS + q[:, :, 1:]).flatten(1),
                (q[:, :-1, :] * GLCM_LEVELS + q[:, 1:, :]).flatten(1),
            ],
            dim=1,
        )
        offsets = torch.arange(n, device=gray.device).view(-1, 1) * cells
        counts = torch.bincount((pairs + offsets).flatten(), minlength=n * cells).view(
            n, GLCM_LEVELS, GLCM_LEVELS
        )
        counts = counts + counts.transpose(1, 2)
        p = counts.flatten(1).double()
        p = p / p.sum(dim=1, keepdim=True)
        i, j = self.glcm_i.double(), self.glcm_j.double()
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


class Handcrafted(FeatureExtractor):
    mean = (0.0, 0.0, 0.0)
    std = (1.0, 1.0, 1.0)
    output_dim = len(FEATURE_NAMES)

    def __init__(self, config: HandcraftedConfig) -> None:
        self.config = config
        self.input_size = config.input_size

    def build(self) -> nn.Module:
        return HandcraftedFeatures().eval()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "features": list(FEATURE_NAMES), "version": 1}
