"""What each foundation model's authors define as its patch embedding, on top of the trunk.

The trunk (`vit.VisionTransformer`, `resnet.ResNet50Trunc`) is loaded strictly first; these modules
wrap it afterwards, so their own attributes never enter the key layout of the weights file.
"""

from __future__ import annotations

import torch
from torch import nn

from .vit import VisionTransformer


class ClassToken(nn.Module):
    """The class token after the final norm (UNI, UNI2-h, H-optimus-0, Prov-GigaPath, Phikon-v2)."""

    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        self.vit = vit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit(x)[:, 0]


class ClassAndMeanPatch(nn.Module):
    """Class token concatenated with the mean of the patch tokens, registers left out (Virchow2)."""

    def __init__(self, vit: VisionTransformer) -> None:
        super().__init__()
        self.vit = vit
        self.skip = vit.arch.num_prefix_tokens

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.vit(x)
        return torch.cat([tokens[:, 0], tokens[:, self.skip :].mean(dim=1)], dim=-1)


class AttentionalPooler(nn.Module):
    """Learned queries attending over the trunk's tokens (CoCa's pooler; parameter names as CONCH's)."""

    def __init__(self, d_model: int, context_dim: int, n_head: int, n_queries: int) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.zeros(n_queries, d_model))
        self.attn = nn.MultiheadAttention(
            d_model, n_head, kdim=context_dim, vdim=context_dim, batch_first=True
        )
        self.ln_q = nn.LayerNorm(d_model)
        self.ln_k = nn.LayerNorm(context_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        context = self.ln_k(tokens)
        query = self.ln_q(self.query).unsqueeze(0).expand(tokens.shape[0], -1, -1)
        return self.attn(query, context, context, need_weights=False)[0]


class ConchImageTower(nn.Module):
    """CONCH's image encoder up to its contrastive embedding, before the joint-space projection.

    trunk (ViT-B/16 at 448 px) -> every token -> one-query attentional pooling -> LayerNorm: the
    512-d vector CONCH's `encode_image(proj_contrast=False, normalize=False)` returns.
    """

    def __init__(self, trunk: VisionTransformer, embed_dim: int = 512, heads: int = 8) -> None:
        super().__init__()
        self.trunk = trunk
        self.attn_pool_contrast = AttentionalPooler(embed_dim, trunk.arch.embed_dim, heads, n_queries=1)
        self.ln_contrast = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln_contrast(self.attn_pool_contrast(self.trunk(x))[:, 0])


class CenterCrop(nn.Module):
    """Crop the centre `size` pixels of the resized patch (Prov-GigaPath: resize 256, crop 224)."""

    def __init__(self, net: nn.Module, size: int) -> None:
        super().__init__()
        self.net = net
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        top, left = round((h - self.size) / 2.0), round((w - self.size) / 2.0)
        return self.net(x[..., top : top + self.size, left : left + self.size])
