"""The separable position bias's tables: one read of value and slope per entry, and a bincount backward,
against the two-neighbour interpolation they replace."""

from __future__ import annotations

import math

import torch

from histo.plugins.paper.deformable import BIAS_KNOTS, PositionBias, _bias_mlp, _read_rows


def two_neighbour_table(
    mlp: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, reach: float
) -> torch.Tensor:
    """f(query - key) [B, g * o, L, K]: the MLP at its knots, read at both neighbours of each signed-log
    offset and blended (the formulation before the value-and-slope table)."""
    limit = math.log1p(reach)
    values = mlp(torch.linspace(-limit, limit, BIAS_KNOTS, dtype=key.dtype).unsqueeze(-1))
    d = query[:, None, :, None] - key[:, :, None, :]
    u = (torch.sign(d) * torch.log1p(d.abs()) + limit) * ((BIAS_KNOTS - 1) / (2 * limit))
    u = u.clamp(0, BIAS_KNOTS - 1)
    low = u.detach().floor().clamp(max=BIAS_KNOTS - 2)
    frac = (u - low).unsqueeze(-1)
    low = low.long()
    table = values[low] * (1 - frac) + values[low + 1] * frac  # [B, g, L, K, o]
    return table.permute(0, 1, 4, 2, 3).flatten(1, 2)


def positions(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    query = torch.linspace(-1, 1, 23, dtype=dtype)[None].repeat(2, 1)
    key = (torch.rand(2, 3, 17, generator=g, dtype=dtype) * 5 - 2.5).requires_grad_()
    with torch.no_grad():  # keys on the query lines (knot 255.5 +- 0), at the reach and beyond it
        key[0, 0, :4] = torch.tensor([-1.0, 1.0, -1 - 2.5, 1 + 3.0], dtype=dtype)
    return query, key


def test_value_and_slope_table_equals_the_two_neighbour_blend() -> None:
    torch.manual_seed(0)
    mlp = _bias_mlp(1, 16, 4, last_bias=False).double()
    query, key = positions(torch.float64)
    ours = PositionBias._table(mlp, query, key, 2.5)
    theirs = two_neighbour_table(mlp, query, key, 2.5)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
    grads = torch.autograd.grad(ours.square().sum(), [key, *mlp.parameters()])
    expected = torch.autograd.grad(theirs.square().sum(), [key, *mlp.parameters()])
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_inference_table_matches_the_training_one() -> None:
    torch.manual_seed(0)
    mlp = _bias_mlp(1, 16, 2, last_bias=False)
    query, key = positions(torch.float32)
    with torch.inference_mode():  # the cached knot table, plain index_select
        cached = PositionBias._table(mlp, query, key.detach(), 2.5)
    torch.testing.assert_close(cached, PositionBias._table(mlp, query, key, 2.5).detach(), rtol=0, atol=0)


def test_row_reads_sum_their_gradients_per_row() -> None:
    small = torch.randn(16, 3, dtype=torch.float64, requires_grad=True)
    repeated = torch.randint(0, 16, (40,), dtype=torch.int32)
    assert torch.autograd.gradcheck(lambda t: _read_rows(t, repeated), (small,))
    table = torch.randn(512, 3, dtype=torch.float64, requires_grad=True)
    index = torch.randint(0, 512, (5_000,), dtype=torch.int32)
    grad = torch.randn(5_000, 3, dtype=torch.float64)
    (ours,) = torch.autograd.grad(_read_rows(table, index), table, grad)
    (theirs,) = torch.autograd.grad(table.index_select(0, index.long()), table, grad)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
    half = table.detach().float().requires_grad_()
    (single,) = torch.autograd.grad(_read_rows(half, index), half, grad.float())
    assert single.dtype == torch.float32
