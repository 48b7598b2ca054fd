"""A compact Vision Transformer in plain torch, with the options pathology foundation models use.

Parameter names follow timm's `VisionTransformer` (`patch_embed.proj`, `blocks.N.attn.qkv`,
`blocks.N.ls1.gamma`, `norm`, ...), the layout in which UNI, UNI2-h, Virchow2, H-optimus-0 and
Prov-GigaPath publish their weights, so those files load without timm (which needs torchvision, and
torchvision must match the installed torch). Other layouts (Hugging Face DINOv2, CONCH) are renamed
onto these names by `histo.plugins.extractors.keymaps`.

Options: patch size, class token, register tokens, position embeddings with or without the prefix
tokens (`no_embed_class`), LayerScale, a GELU MLP or a packed SwiGLU MLP (one `fc1` holding both
halves), and position embeddings resampled when the input grid differs from the trained one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .vit_arch import ViTArch


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] -> [N, H/p, W/p, D]."""
        return self.proj(x).permute(0, 2, 3, 1)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(out.transpose(1, 2).reshape(n, t, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwiGLUPacked(nn.Module):
    """`fc1` holds both halves: SiLU of the first half gates the second (timm's `SwiGLUPacked`)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        if hidden % 2:
            raise ValueError(f"a packed SwiGLU needs an even hidden width, not {hidden}")
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden // 2, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.fc1(x).chunk(2, dim=-1)
        return self.fc2(F.silu(gate) * value)


class LayerScale(nn.Module):
    def __init__(self, dim: int, init_values: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init_values))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    def __init__(self, arch: ViTArch) -> None:
        super().__init__()
        d = arch.embed_dim
        self.norm1 = nn.LayerNorm(d, eps=arch.norm_eps)
        self.attn = Attention(d, arch.num_heads)
        self.ls1: nn.Module = nn.Identity() if arch.init_values is None else LayerScale(d, arch.init_values)
        self.norm2 = nn.LayerNorm(d, eps=arch.norm_eps)
        mlp = SwiGLUPacked if arch.mlp == "swiglu_packed" else Mlp
        self.mlp: nn.Module = mlp(d, arch.hidden)
        self.ls2: nn.Module = nn.Identity() if arch.init_values is None else LayerScale(d, arch.init_values)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


def resample_grid(pos: torch.Tensor, grid: tuple[int, int], antialias: bool) -> torch.Tensor:
    """Position embeddings [1, G*G, D] of a square grid -> [1, h*w, D] by bicubic interpolation."""
    side = math.isqrt(pos.shape[1])
    if side * side != pos.shape[1]:
        raise ValueError(f"position embeddings of {pos.shape[1]} patches are not a square grid")
    if (side, side) == grid:
        return pos
    square = pos.reshape(1, side, side, -1).permute(0, 3, 1, 2).float()
    out = F.interpolate(square, size=grid, mode="bicubic", align_corners=False, antialias=antialias)
    return out.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], -1).to(pos.dtype)


class VisionTransformer(nn.Module):
    """`forward` returns every token after the final norm: [N, prefix + patches, D].

    Prefix tokens come first: the class token, then the register tokens. Heads (class token, mean of
    patch tokens, attention pooling) are the encoder's business, see `encoders.py`.
    """

    def __init__(self, arch: ViTArch) -> None:
        super().__init__()
        self.arch = arch
        d = arch.embed_dim
        self.patch_embed = PatchEmbed(arch.patch_size, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.reg_token = nn.Parameter(torch.zeros(1, arch.reg_tokens, d)) if arch.reg_tokens else None
        self.mask_token = nn.Parameter(torch.zeros(1, d)) if arch.mask_token else None
        n_pos = arch.grid**2 + (0 if arch.no_embed_class else arch.num_prefix_tokens)
        self.pos_embed = nn.Parameter(torch.randn(1, n_pos, d) * 0.02)
        self.blocks = nn.Sequential(*(Block(arch) for _ in range(arch.depth)))
        self.norm = nn.LayerNorm(d, eps=arch.norm_eps)

    def _pos_embed(self, patches: torch.Tensor) -> torch.Tensor:
        n, h, w, d = patches.shape
        x = patches.reshape(n, h * w, d)
        prefix = [self.cls_token.expand(n, -1, -1)]
        if self.reg_token is not None:
            prefix.append(self.reg_token.expand(n, -1, -1))
        if self.arch.no_embed_class:
            pos = resample_grid(self.pos_embed, (h, w), self.arch.pos_antialias)
            return torch.cat([*prefix, x + pos], dim=1)
        k = self.arch.num_prefix_tokens
        pos = resample_grid(self.pos_embed[:, k:], (h, w), self.arch.pos_antialias)
        return torch.cat([torch.cat(prefix, dim=1) + self.pos_embed[:, :k], x + pos], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.blocks(self._pos_embed(self.patch_embed(x))))
