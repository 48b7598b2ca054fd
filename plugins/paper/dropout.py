"""Dropout of attention weights with cheap masks on the CPU.

The deformable attention drops 10% of N x keys x heads weights per layer: at 50,000 patches that is
~100 million draws a step, and torch's CPU `bernoulli_` draws them one at a time from a Mersenne
Twister (~6 ns each, single-threaded), which made the draw the teacher's largest operation. Here a
mask comes from 32-bit words of numpy's SFC64 generator (~1 ns per weight, vectorised), seeded from
torch's default generator, so `torch.manual_seed` still fixes every mask and a checkpointed chunk
(torch restores its RNG state before recomputing) redraws the same mask.

The distribution is the same Bernoulli: a weight is kept when its word is below round((1 - p) x 2^32),
so the keep probability is 1 - p to within 2^-32 (torch's own draw is exact to 2^-53; float32
attention weights cannot tell). The random stream is not torch's: a seeded run draws other masks than
before. On other devices a weight is kept where `rand(...) >= p`, from a torch generator of that
device seeded the same way.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

_WORD = 2**32


def keep_mask(
    shape: torch.Size, p: float, device: torch.device, dtype: torch.dtype, seed: int | None = None
) -> Tensor:
    """Tensor of `shape`: 1 with probability 1 - p (a kept weight), else 0. A 0/1 float mask, because
    multiplying by it is 3-4x faster on the CPU than masked_fill with a bool one. The same `seed` gives
    the same mask; None draws one from torch's generator."""
    if seed is None:
        seed = int(torch.randint(0, 2**63 - 1, (1,)).item())  # torch's generator decides every mask
    if device.type != "cpu":
        generator = torch.Generator(device=device).manual_seed(seed)
        return (torch.rand(shape, device=device, generator=generator) >= p).to(dtype)
    keep = np.empty(int(np.prod(shape, dtype=np.int64)), dtype=np.float32)
    np.less(_words(keep.size, seed), _threshold(p), out=keep, casting="unsafe")
    return torch.from_numpy(keep).view(shape).to(dtype)


def _words(count: int, seed: int) -> np.ndarray:
    return np.random.SFC64(seed).random_raw((count + 1) // 2).view(np.uint32)[:count]


def _threshold(p: float) -> np.uint32:
    return np.uint32(min(round((1 - p) * _WORD), _WORD - 1))


def keep_mask_and_bits(
    shape: torch.Size, p: float, device: torch.device, dtype: torch.dtype, seed: int
) -> tuple[Tensor, np.ndarray | None]:
    """`keep_mask(shape, p, device, dtype, seed)` and, on the CPU, the same mask packed into bits (1/32 of
    its float32 size) for a backward pass to unpack (`unpack_keep`, ~0.2 ns a weight) instead of drawing
    it again (~1 ns a weight: the SFC64 words are ~70% of a draw). None on other devices, whose
    generators draw fast: redraw there with `keep_mask`."""
    if device.type != "cpu":
        return keep_mask(shape, p, device, dtype, seed), None
    kept = np.less(_words(int(np.prod(shape, dtype=np.int64)), seed), _threshold(p))
    return _as_float(kept, shape, dtype), np.packbits(kept)


def unpack_keep(bits: np.ndarray, shape: torch.Size, dtype: torch.dtype) -> Tensor:
    """The 0/1 mask that `keep_mask_and_bits` packed into `bits`."""
    count = int(np.prod(shape, dtype=np.int64))
    return _as_float(np.unpackbits(bits, count=count).view(np.bool_), shape, dtype)


def _as_float(kept: np.ndarray, shape: torch.Size, dtype: torch.dtype) -> Tensor:
    keep = np.empty(kept.size, dtype=np.float32)
    np.copyto(keep, kept, casting="unsafe")  # numpy's cast: ~5x faster here than torch's bool -> float
    return torch.from_numpy(keep).view(shape).to(dtype)


class AttentionDropout(nn.Dropout):
    """nn.Dropout with the cheap mask above. `zero` drops without rescaling, for callers that fold the
    1 / (1 - p) factor into a smaller tensor (the attention's values) instead of every weight."""

    def scale(self) -> float:
        """What the kept weights of `zero` must be multiplied by: 1 / (1 - p) in training, else 1."""
        return 1 / (1 - self.p) if self.training and self.p > 0 else 1.0

    def zero(self, x: Tensor) -> Tensor:
        """x with the dropped entries set to zero, the others unchanged."""
        if not self.training or self.p == 0:
            return x
        return x * keep_mask(x.shape, self.p, x.device, x.dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self.zero(x) * self.scale() if self.training and self.p > 0 else x
