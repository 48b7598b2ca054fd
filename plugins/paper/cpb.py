"""The reference's continuous position bias (CPB), computed exactly but without its huge intermediates.

The reference evaluates MLP(signed_log(query - key)) (2 -> 32 -> 32 -> 1, ReLU) for every query, key and
offset group, materialising [B x groups, N, keys, 32] activations (1.5 GB per layer at the paper's
batch) and keeping them all for the backward pass. Two observations compute the same numbers better:

- the first layer is linear in (signed_log(dx), signed_log(dy)), and dx depends only on the query's grid
  column, dy only on its row: W1 [sl(dx), sl(dy)] + b1 = A[column, key] + R[row, key], two small
  tables [B, lines, keys, 32] built once and gathered per query (no per-pair log, no 2 -> 32 matmul);
- the rest (ReLU, 32 -> 32, ReLU, 32 -> 1) runs on chunks of queries small enough to stay in cache, and
  the backward pass recomputes a chunk's activations instead of storing them (`FusedBiasMlp`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

# (query, key) pairs per chunk: 8,192 x 32 hidden floats = 1 MB of activations at a time (in cache)
CHUNK_PAIRS = 1 << 13


def _signed_log(d: Tensor) -> Tensor:
    return torch.sign(d) * torch.log(d.abs() + 1)  # the reference's expression, bit for bit


class FusedBiasMlp(torch.autograd.Function):
    """bias[b, n, k] = w3 . relu(W2 relu(cols[b, col[b, n], k] + rows[b, row[b, n], k]) + b2) + b3."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        cols: Tensor,
        rows: Tensor,
        col: Tensor,
        row: Tensor,
        w2: Tensor,
        b2: Tensor,
        w3: Tensor,
        b3: Tensor,
    ) -> Tensor:
        batch, n = col.shape
        keys, hidden = cols.shape[2], cols.shape[3]
        out = cols.new_empty(batch, n, keys)
        flat_cols, flat_rows = cols.view(-1, keys * hidden), rows.view(-1, keys * hidden)
        h1 = h1_rows = h2 = (
            None  # work buffers, allocated once: a fresh large tensor per chunk costs page faults
        )
        for start, ci, ri in _chunks(cols, rows, col, row):
            if h1 is None or h1.shape[0] != ci.shape[0]:
                h1 = cols.new_empty(ci.shape[0], keys * hidden)
                h1_rows = torch.empty_like(h1)
                h2 = cols.new_empty(ci.shape[0] * keys, hidden)
            torch.index_select(flat_cols, 0, ci, out=h1)
            torch.index_select(flat_rows, 0, ri, out=h1_rows)
            h1.add_(h1_rows).relu_()
            torch.addmm(b2, h1.view(-1, hidden), w2.t(), out=h2).relu_()
            count = ci.shape[0] // batch
            out[:, start : start + count] = torch.addmv(b3, h2, w3).view(batch, count, keys)
        ctx.save_for_backward(cols, rows, col, row, w2, b2, w3)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        cols, rows, col, row, w2, b2, w3 = ctx.saved_tensors
        batch = col.shape[0]
        keys, hidden = cols.shape[2], cols.shape[3]
        g_cols = torch.zeros_like(cols).view(-1, keys * hidden)
        g_rows = torch.zeros_like(rows).view(-1, keys * hidden)
        g_w2, g_b2 = torch.zeros_like(w2), torch.zeros_like(b2)
        g_w3, g_b3 = torch.zeros_like(w3), grad.sum().reshape(1)
        flat_cols, flat_rows = cols.view(-1, keys * hidden), rows.view(-1, keys * hidden)
        h1 = h1_rows = h2 = g2 = g1 = None  # work buffers, allocated once (see forward)
        for start, ci, ri in _chunks(cols, rows, col, row):
            count = ci.shape[0] // batch
            if h1 is None or h1.shape[0] != ci.shape[0]:
                h1 = cols.new_empty(ci.shape[0], keys * hidden)
                h1_rows = torch.empty_like(h1)
                g1 = torch.empty_like(h1)
                h2 = cols.new_empty(ci.shape[0] * keys, hidden)
                g2 = torch.empty_like(h2)
            torch.index_select(flat_cols, 0, ci, out=h1)
            torch.index_select(flat_rows, 0, ri, out=h1_rows)
            h1.add_(h1_rows).relu_()  # relu(pre1) > 0 exactly where pre1 > 0
            torch.addmm(b2, h1.view(-1, hidden), w2.t(), out=h2).relu_()
            g = grad[:, start : start + count].reshape(-1)
            g_w3.addmv_(h2.t(), g)
            torch.mul(g.unsqueeze(1), w3, out=g2).masked_fill_(h2 == 0, 0.0)
            g_w2.addmm_(g2.t(), h1.view(-1, hidden))
            g_b2.add_(g2.sum(0))
            torch.mm(g2, w2, out=g1.view(-1, hidden))
            g1.masked_fill_(h1 == 0, 0.0)
            g_cols.index_add_(0, ci, g1)
            g_rows.index_add_(0, ri, g1)
        return g_cols.view_as(cols), g_rows.view_as(rows), None, None, g_w2, g_b2, g_w3, g_b3


def _chunks(cols: Tensor, rows: Tensor, col: Tensor, row: Tensor) -> Any:
    """(first query, flat rows of the column table, flat rows of the row table) per chunk of queries."""
    batch, n = col.shape
    step = max(1, CHUNK_PAIRS // (batch * cols.shape[2]))
    first = torch.arange(batch, device=col.device)[:, None]
    for start in range(0, n, step):
        ci = (first * cols.shape[1] + col[:, start : start + step]).reshape(-1)
        ri = (first * rows.shape[1] + row[:, start : start + step]).reshape(-1)
        yield start, ci, ri


def cpb_tables(
    mlp: nn.Sequential, columns: Tensor, rows: Tensor, key_x: Tensor, key_y: Tensor
) -> tuple[Tensor, Tensor]:
    """The first layer per grid line: columns [B, W] and rows [B, H] positions in [-1, 1], key_x and
    key_y [B, K] -> A [B, W, K, hidden] (with the layer's bias) and R [B, H, K, hidden]."""
    first: nn.Linear = mlp[0]  # type: ignore[assignment]
    dx = _signed_log(columns[:, :, None] - key_x[:, None, :])
    dy = _signed_log(rows[:, :, None] - key_y[:, None, :])
    a = torch.addcmul(first.bias, dx.unsqueeze(-1), first.weight[:, 0])
    r = dy.unsqueeze(-1) * first.weight[:, 1]
    return a, r


def fused_cpb(
    mlp: nn.Sequential, tables: tuple[Tensor, Tensor], col: Tensor, row: Tensor, out: int
) -> Tensor:
    """Bias [B, n, K] of output `out` of the MLP for queries at grid columns col and rows row [B, n]."""
    second: nn.Linear = mlp[2]  # type: ignore[assignment]
    third: nn.Linear = mlp[4]  # type: ignore[assignment]
    result: Tensor = FusedBiasMlp.apply(
        tables[0],
        tables[1],
        col,
        row,
        second.weight,
        second.bias,
        third.weight[out],
        third.bias[out : out + 1],
    )
    return result
