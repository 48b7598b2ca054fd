"""One head of gene-guided cross-attention with the separable position bias, as one autograd function.

With a query shared by every patch and the separable bias, a patch's scores are two table rows (its grid
column's and its grid row's). Left to autograd, a head saves its N x K attention, dropout mask and dropped
weights; on large bags the chunks are therefore recomputed in the backward pass, matrix products
included, which made a training step cost ~1.4x as much per patch above `query_chunk` patches. This
function saves only the tables, the patches' row indices and the dropout mask as bits, and its backward
rebuilds the scores (two gathers, a softmax) but not the products: memory stays O(chunk) at every size
(the bits are 1/32 of the scores), no product runs twice and no mask is drawn twice.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .dropout import keep_mask, keep_mask_and_bits, unpack_keep
from .layout import TokenLayout


def _attention(table_x: Tensor, table_y: Tensor, ix: Tensor, iy: Tensor, shape: torch.Size) -> Tensor:
    logits = table_x.index_select(0, ix).add_(table_y.index_select(0, iy)).view(shape)
    return torch.softmax(logits, dim=-1)


class _SeparableHead(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        table_x: Tensor,  # [B * W, K]: column tables (with the key constant)
        table_y: Tensor,  # [B * H, K]
        values: Tensor,  # [B, K, dim]: values with the output projection folded in
        ix: Tensor,  # [B * n] rows of table_x
        iy: Tensor,  # [B * n]
        weight: Tensor,  # [B, 1, n]: 1 at real patches
        silent: Tensor | None,  # [B, 1, 1]: 0 where the head's group sampled no key
        p: float,  # dropout probability (0: none)
        seed: int,
    ) -> tuple[Tensor, Tensor]:
        batch, n, keys = weight.shape[0], weight.shape[2], table_x.shape[-1]
        shape = torch.Size([batch, n, keys])
        attn = _attention(table_x, table_y, ix, iy, shape)
        if silent is not None:
            attn = attn * silent
        key_mass = weight @ attn  # [B, 1, K]
        dropped, bits = attn, None
        if p > 0:
            keep, bits = keep_mask_and_bits(shape, p, attn.device, attn.dtype, seed)
            dropped = attn * keep
        ctx.save_for_backward(table_x, table_y, values, ix, iy, weight, silent)
        ctx.meta = (shape, p, seed, bits)
        return dropped @ values, key_mass

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor, grad_mass: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        table_x, table_y, values, ix, iy, weight, silent = ctx.saved_tensors
        shape, p, seed, bits = ctx.meta
        raw = _attention(table_x, table_y, ix, iy, shape)  # the softmax's output
        attn = raw * silent if silent is not None else raw
        keep = None  # the forward pass's mask: unpacked from its bits on the CPU, drawn again elsewhere
        if p > 0 and bits is not None:
            keep = unpack_keep(bits, shape, attn.dtype)
        elif p > 0:
            keep = keep_mask(shape, p, attn.device, attn.dtype, seed)
        dropped = attn * keep if keep is not None else attn
        grad_values = dropped.transpose(1, 2) @ grad_out
        grad_attn = grad_out @ values.transpose(1, 2)
        if keep is not None:
            grad_attn = grad_attn.mul_(keep)
        grad_attn = grad_attn.baddbmm_(weight.transpose(1, 2), grad_mass)
        if silent is not None:
            grad_attn = grad_attn * silent
        grad_logits = torch.ops.aten._softmax_backward_data(grad_attn, raw, -1, raw.dtype)
        flat = grad_logits.view(-1, shape[-1])
        grad_x = torch.zeros_like(table_x).index_add_(0, ix, flat)
        grad_y = torch.zeros_like(table_y).index_add_(0, iy, flat)
        return grad_x, grad_y, grad_values, None, None, None, None, None, None


def separable_head(
    table_x: Tensor,
    table_y: Tensor,
    values: Tensor,
    ix: Tensor,
    iy: Tensor,
    weight: Tensor,
    silent: Tensor | None,
    p: float,
) -> tuple[Tensor, Tensor]:
    """(dropped attention @ values [B, n, dim], attention mass per key [B, 1, K]) of one head. The dropout
    seed is drawn from torch's generator, as the unfused path's mask is."""
    seed = int(torch.randint(0, 2**63 - 1, (1,)).item()) if p > 0 else 0
    out, mass = _SeparableHead.apply(table_x, table_y, values, ix, iy, weight, silent, p, seed)
    return out, mass


class SeparableBias:
    """The separable position bias of one layer call: (query chunk, head) -> logits [B, n, K], and the
    tables behind it for `separable_head`."""

    def __init__(self, table_x: Tensor, table_y: Tensor, layout: TokenLayout) -> None:
        self.table_x, self.table_y, self.layout = table_x, table_y, layout  # [heads, B * lines, K]
        self.first = torch.arange(layout.mask.shape[0], device=table_x.device)[:, None]
        self._held: tuple[tuple[int | None, int | None], tuple[Tensor, Tensor]] | None = None

    def indices(self, sl: slice) -> tuple[Tensor, Tensor]:
        """Rows of table_x and table_y of each query of the chunk: [B * n] each. Kept for the last chunk
        asked for: every head of a chunk reads the same rows."""
        if self._held is None or self._held[0] != (sl.start, sl.stop):
            col = (self.first * self.layout.grid_width + self.layout.col[:, sl]).flatten()
            row = (self.first * self.layout.grid_height + self.layout.row[:, sl]).flatten()
            self._held = ((sl.start, sl.stop), (col, row))
        return self._held[1]

    def __call__(self, sl: slice, head: int) -> Tensor:
        col, row = self.indices(sl)
        bias = self.table_x[head].index_select(0, col)
        return bias.add_(self.table_y[head].index_select(0, row)).view(
            self.first.shape[0], -1, bias.shape[-1]
        )
