"""The reference's continuous position bias for all offset groups at once, in cache-sized pieces that
each CPU thread runs on its own.

The reference evaluates MLP(signed_log(query - key)) (2 -> 32 -> 32 -> 1, ReLU) for every query, key
and offset group, materialising [B x groups, N, keys, 32] activations (1.5 GB per layer at the paper's
batch). The first layer is linear in (signed_log(dx), signed_log(dy)), and dx depends only on the
query's grid column, dy only on its row: two small tables [B, groups, lines, keys, 32] built once and
gathered per query replace it. The rest runs in pieces whose backward pass recomputes their
activations instead of storing them.

Computed one head at a time in small chunks, the bias took ~180 small parallel operations per call;
every one of them ends in an OpenMP barrier, and on a shared machine a barrier waits for a
descheduled thread (the bias MLP of a [B, 8, 2,500, 144] layer ran 40x slower in the model than
alone). Here the MLP's 32 -> 32 layer is the same matrix for every group, so all groups are one job,
split into (bag, group) units; each thread takes a fixed share of the units and runs them with
single-threaded operations on a few-MB working set, with no barrier until the end (a fixed split,
partial weight gradients summed in a fixed order: runs are deterministic).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import _get_current_dispatch_mode

# (query, key) pairs per piece: 32,768 x 32 hidden floats = 4 MB per work buffer (measured on 2 threads:
# 10-25% faster than 1 MB pieces, which pay more per-operation overhead; 16 MB pieces were slower again)
PIECE_PAIRS = 1 << 15
# pairs per piece on a GPU: few large kernels (launches, not arithmetic, bound the small ones)
DEVICE_PIECE_PAIRS = 1 << 22


def _signed_log(d: Tensor) -> Tensor:
    return torch.sign(d) * torch.log(d.abs() + 1)  # the reference's expression, bit for bit

_POOL: tuple[int, ThreadPoolExecutor] | None = None  # (owning process id, pool)


def _pool(threads: int) -> ThreadPoolExecutor:
    """The worker pool, made anew in a forked child (whose copy of the pool has no threads)."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid() or _POOL[1]._max_workers < threads:
        _POOL = os.getpid(), ThreadPoolExecutor(max_workers=threads, thread_name_prefix="histo-cpb")
    return _POOL[1]


def _single_threaded(job: Callable[[], Any], grad: bool, inference: bool) -> Any:
    torch.set_num_threads(1)  # this worker's own OpenMP team: one thread, no barriers
    # grad and inference mode are per thread: run under the caller's
    with torch.inference_mode(inference), torch.set_grad_enabled(grad):
        return job()


def run_shares(jobs: Sequence[Callable[[], Any]], device: torch.device) -> list[Any]:
    """Run each job on its own CPU thread with single-threaded torch operations (torch ops release the
    GIL); on one thread or a GPU, one after the other. Results in job order."""
    # a dispatch mode (FLOP counter, tracing) is per thread: it must see every operation
    if device.type != "cpu" or len(jobs) == 1 or _get_current_dispatch_mode() is not None:
        return [job() for job in jobs]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # process-wide settings (MKL) follow the calling thread's
    try:
        modes = torch.is_grad_enabled(), torch.is_inference_mode_enabled()
        futures = [_pool(threads).submit(_single_threaded, job, *modes) for job in jobs]
        return [future.result() for future in futures]
    finally:
        torch.set_num_threads(threads)


def _shares(units: int, device: torch.device) -> list[range]:
    """Split `units` into one contiguous share per CPU thread (one share on a GPU)."""
    parts = 1 if device.type != "cpu" else max(1, min(torch.get_num_threads(), units))
    bounds = [units * i // parts for i in range(parts + 1)]
    return [range(bounds[i], bounds[i + 1]) for i in range(parts)]


def _hidden_layers(
    cols: Tensor,
    rows: Tensor,
    col: Tensor,
    row: Tensor,
    x1: Tensor,
    x1_rows: Tensor,
    x2: Tensor,
    w2: Tensor,
    b2: Tensor,
) -> None:
    """The MLP's two hidden layers for a run of queries, into the work buffers `x1` and `x2`: the
    first layer is the sum of the query's column and row parts (then ReLU), the second a product.
    Shared by the forward pass and the backward pass's recompute, so both see the same numbers; ReLU's
    output is > 0 exactly where its input was, which the backward's masks rely on."""
    torch.index_select(cols, 0, col, out=x1)
    torch.index_select(rows, 0, row, out=x1_rows)
    x1.add_(x1_rows).relu_()
    torch.addmm(b2, x1.view(-1, w2.shape[1]), w2.t(), out=x2).relu_()


def _step(keys: int, device: torch.device) -> int:
    pairs = PIECE_PAIRS if device.type == "cpu" else DEVICE_PIECE_PAIRS
    return max(1, pairs // keys)


def _relu_grad(grad: Tensor, out: Tensor) -> None:
    """grad *= (out > 0) in place, out = relu(x): one vectorised pass (masked_fill_ with a fresh bool
    mask took 25x longer)."""
    torch.ops.aten.threshold_backward.grad_input(grad, out, 0.0, grad_input=grad)


class GroupedBiasMlp(torch.autograd.Function):
    """out[b, g, n, k, o] = w3[o] . relu(W2 relu(cols[b, g, col[b, n], k] + rows[b, g, row[b, n], k]) + b2)
    + b3[o]; the backward pass recomputes each piece's activations instead of storing them."""

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
        batch, groups, width, keys, hidden = cols.shape
        n, outs = col.shape[1], w3.shape[0]
        out = cols.new_empty(batch, groups, n, keys, outs)
        step = _step(keys, cols.device)

        def share(units: range) -> None:
            h1 = h1_rows = h2 = None  # work buffers, allocated once per share
            for unit in units:
                b, g = divmod(unit, groups)
                a, r = cols[b, g].view(width, -1), rows[b, g].view(rows.shape[2], -1)
                for start in range(0, n, step):
                    ci, ri = col[b, start : start + step], row[b, start : start + step]
                    m = ci.shape[0]
                    if h1 is None or h1.shape[0] < m:
                        h1 = cols.new_empty(m, keys * hidden)
                        h1_rows = torch.empty_like(h1)
                        h2 = cols.new_empty(m * keys, hidden)
                    assert h1_rows is not None and h2 is not None
                    x1, x2 = h1[:m], h2[: m * keys]
                    _hidden_layers(a, r, ci, ri, x1, h1_rows[:m], x2, w2, b2)
                    torch.addmm(b3, x2, w3.t(), out=out[b, g, start : start + m].view(-1, outs))

        run_shares([lambda s=s: share(s) for s in _shares(batch * groups, cols.device)], cols.device)
        ctx.save_for_backward(cols, rows, col, row, w2, b2, w3)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        cols, rows, col, row, w2, b2, w3 = ctx.saved_tensors
        batch, groups, width, keys, hidden = cols.shape
        n, outs = col.shape[1], w3.shape[0]
        grad = grad.contiguous()
        g_cols, g_rows = torch.zeros_like(cols), torch.zeros_like(rows)
        step = _step(keys, cols.device)

        def share(units: range) -> tuple[Tensor, Tensor, Tensor, Tensor]:
            """Fills g_cols, g_rows of its own units; returns its partial weight gradients."""
            g_w2, g_b2 = torch.zeros_like(w2), torch.zeros_like(b2)
            g_w3, g_b3 = torch.zeros_like(w3), w3.new_zeros(outs)
            h1 = h1_rows = h2 = g1 = g2 = None  # work buffers, allocated once per share
            for unit in units:
                b, g = divmod(unit, groups)
                a, r = cols[b, g].view(width, -1), rows[b, g].view(rows.shape[2], -1)
                ga, gr = g_cols[b, g].view(width, -1), g_rows[b, g].view(rows.shape[2], -1)
                for start in range(0, n, step):
                    ci, ri = col[b, start : start + step], row[b, start : start + step]
                    m = ci.shape[0]
                    if h1 is None or h1.shape[0] < m:
                        h1 = cols.new_empty(m, keys * hidden)
                        h1_rows, g1 = torch.empty_like(h1), torch.empty_like(h1)
                        h2 = cols.new_empty(m * keys, hidden)
                        g2 = torch.empty_like(h2)
                    assert h1_rows is not None and h2 is not None and g1 is not None and g2 is not None
                    x1, x2, y1, y2 = h1[:m], h2[: m * keys], g1[:m], g2[: m * keys]
                    _hidden_layers(a, r, ci, ri, x1, h1_rows[:m], x2, w2, b2)
                    gout = grad[b, g, start : start + m].view(-1, outs)  # [m * keys, outs]
                    g_w3.addmm_(gout.t(), x2)
                    g_b3.add_(gout.sum(0))
                    _relu_grad(torch.mm(gout, w3, out=y2), x2)
                    g_w2.addmm_(y2.t(), x1.view(-1, hidden))
                    g_b2.add_(y2.sum(0))
                    torch.mm(y2, w2, out=y1.view(-1, hidden))
                    _relu_grad(y1, x1)
                    ga.index_add_(0, ci, y1)
                    gr.index_add_(0, ri, y1)
            return g_w2, g_b2, g_w3, g_b3

        parts = run_shares([lambda s=s: share(s) for s in _shares(batch * groups, cols.device)], cols.device)
        g_w2, g_b2, g_w3, g_b3 = (torch.stack(p).sum(0) for p in zip(*parts, strict=True))
        return g_cols, g_rows, None, None, g_w2, g_b2, g_w3, g_b3


def grouped_tables(
    mlp: nn.Sequential, columns: Tensor, rows: Tensor, key_x: Tensor, key_y: Tensor
) -> tuple[Tensor, Tensor]:
    """The first layer per grid line for every group: columns [B, W] and rows [B, H] positions in
    [-1, 1], key_x and key_y [B, G, K] -> A [B, G, W, K, hidden] (with the layer's bias) and R
    [B, G, H, K, hidden]."""
    first: nn.Linear = mlp[0]  # type: ignore[assignment]
    dx = _signed_log(columns[:, None, :, None] - key_x[:, :, None, :])
    dy = _signed_log(rows[:, None, :, None] - key_y[:, :, None, :])
    a = torch.addcmul(first.bias, dx.unsqueeze(-1), first.weight[:, 0])
    r = dy.unsqueeze(-1) * first.weight[:, 1]
    return a.contiguous(), r.contiguous()


def grouped_cpb(mlp: nn.Sequential, tables: tuple[Tensor, Tensor], col: Tensor, row: Tensor) -> Tensor:
    """Bias [B, G, n, K, outputs] of every group and MLP output for queries at grid columns col and rows
    row [B, n]; head h of the attention is group h // outputs, output h % outputs."""
    second: nn.Linear = mlp[2]  # type: ignore[assignment]
    third: nn.Linear = mlp[4]  # type: ignore[assignment]
    result: Tensor = GroupedBiasMlp.apply(
        tables[0],
        tables[1],
        col.contiguous(),
        row.contiguous(),
        second.weight,
        second.bias,
        third.weight,
        third.bias,
    )
    return result
