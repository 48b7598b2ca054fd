"""The shape of a Vision Transformer, without torch: what the encoder catalogue and schema read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MlpKind = Literal["gelu", "swiglu_packed"]


@dataclass(frozen=True)
class ViTArch:
    """Everything that fixes a ViT's parameter shapes and its forward pass."""

    img_size: int = 224
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    mlp: MlpKind = "gelu"
    init_values: float | None = None  # LayerScale on (ls1/ls2) when set
    reg_tokens: int = 0
    no_embed_class: bool = False  # position embeddings cover the patches only
    mask_token: bool = False  # DINOv2 checkpoints carry one (unused at inference)
    norm_eps: float = 1e-6
    # Resampling the position embeddings for another grid: timm uses antialiased bicubic,
    # Hugging Face DINOv2 plain bicubic.
    pos_antialias: bool = True

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size

    @property
    def hidden(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)

    @property
    def num_prefix_tokens(self) -> int:
        return 1 + self.reg_tokens

    def n_params(self) -> int:
        """Parameter count from the shapes alone (checked against a built model in the tests)."""
        d, p = self.embed_dim, self.patch_size
        count = 3 * p * p * d + d  # patch projection
        count += d * (1 + self.reg_tokens + (1 if self.mask_token else 0))
        count += d * (self.grid**2 + (0 if self.no_embed_class else self.num_prefix_tokens))
        fc2_in = self.hidden // 2 if self.mlp == "swiglu_packed" else self.hidden
        block = 2 * 2 * d  # norm1, norm2
        block += 3 * d * d + 3 * d + d * d + d  # qkv, proj
        block += self.hidden * d + self.hidden + fc2_in * d + d  # fc1, fc2
        block += 2 * d if self.init_values is not None else 0
        return count + self.depth * block + 2 * d  # final norm
