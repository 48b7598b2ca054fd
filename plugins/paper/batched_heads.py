"""Every head of gene-guided cross-attention with the separable position bias in one pass of batched
operations.

With a query shared by every patch and the separable bias, a patch's scores for all heads are two table
rows of heads x keys values (its grid column's and its grid row's), so the heads need no loop: one
gather per table, one softmax, one dropout mask and one matrix product against the values of all heads
stacked (heads x keys rows, the output projection folded in). A loop over 8 heads ran ~6 small
operations per head, forward and backward: on a 2,500-patch bag those, not the arithmetic, set the
cost per patch (each is too small to spread over the threads), which made the bag cost ~1.4x more per
patch than a 10,000-patch one on 2 threads. Queries go in slices of `SLICE` so that a slice's scores
(slice x heads x keys floats) stay below glibc's 32 MiB mmap threshold in inference.

Summation order: the output sums heads x keys products in one matrix product instead of head by head,
so eval-mode outputs agree with the per-head loop to float rounding (~1e-7), not bit for bit. The
dropout masks are drawn head by head as the loop drew them (same seeds, same masks), so a seeded
training run draws the masks it drew before.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .dropout import AttentionDropout, keep_mask
from .fused_head import SeparableBias

SLICE = 4096  # queries per pass: 4,096 x 8 heads x 144 keys x 4 bytes = 19 MB of scores


def all_heads(
    bias: SeparableBias,
    sl: slice,
    values: Tensor,  # [B, heads * K, dim]: every head's values with the output projection folded in
    out_bias: Tensor,  # [dim]
    weight: Tensor,  # [B, 1, n]: 1 at real patches of the chunk
    silent: Tensor | None,  # [B, heads, 1]: 0 where a head's group sampled no key
    dropout: AttentionDropout,
    keep_maps: bool,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """(out [B, n, dim] before the padding mask, attention mass per key [B, heads, K], the maps
    [B, heads, n, K] when keep_maps) of one chunk of queries."""
    start, stop = sl.start, min(sl.stop, bias.layout.mask.shape[1])
    keep = None
    if dropout.training and dropout.p > 0:  # one mask per head, drawn in head order as the loop drew them
        heads, shape = bias.table_x.shape[0], (values.shape[0], stop - start, bias.table_x.shape[-1])
        draws = [keep_mask(torch.Size(shape), dropout.p, values.device, values.dtype) for _ in range(heads)]
        keep = torch.stack(draws, dim=2)  # [B, n, heads, K]
    outs, masses, maps = [], [], []
    for first in range(start, max(stop, start + 1), SLICE):
        part = slice(first, min(first + SLICE, stop))
        rows = slice(first - start, part.stop - start)
        out, mass, attn = _slice(
            bias, part, values, out_bias, weight[:, :, rows], silent, None if keep is None else keep[:, rows]
        )
        outs.append(out)
        masses.append(mass)
        if keep_maps:
            maps.append(attn.permute(0, 2, 1, 3))
    key_mass = masses[0] if len(masses) == 1 else torch.stack(masses).sum(0)
    out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
    return out, key_mass, (torch.cat(maps, dim=2) if keep_maps else None)


def _slice(
    bias: SeparableBias,
    sl: slice,
    values: Tensor,
    out_bias: Tensor,
    weight: Tensor,
    silent: Tensor | None,
    keep: Tensor | None,  # [B, n, heads, K]: the dropout mask, None outside training
) -> tuple[Tensor, Tensor, Tensor]:
    batch, heads_keys, dim = values.shape
    heads = bias.table_x.shape[0]
    ix, iy = bias.indices(sl)
    rows_x, rows_y = bias.rows()  # [B * lines, heads * K]
    logits = rows_x.index_select(0, ix).add_(rows_y.index_select(0, iy))
    attn = torch.softmax(logits.view(batch, -1, heads, heads_keys // heads), dim=-1)  # [B, n, heads, K]
    if silent is not None:
        attn = attn * silent.view(batch, 1, heads, 1)
    flat = attn.view(batch, -1, heads_keys)
    key_mass = (weight @ flat).view(batch, heads, -1)
    dropped = flat if keep is None else (attn * keep).view(batch, -1, heads_keys)
    out = torch.baddbmm(out_bias.expand(batch, flat.shape[1], dim), dropped, values)
    return out, key_mass, attn
