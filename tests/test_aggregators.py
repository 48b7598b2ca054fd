"""Token aggregators of the paper's student: contract invariants, exactness of the chunked DPC-kNN."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from histo.manager import Plugins
from histo.plugins.method import histo_token_aggregators
from histo.plugins.method import knn as knn_module
from histo.plugins.method.configs import DpcKnnConfig
from histo.plugins.method.knn import (
    approximate_neighbours,
    assign_to_centres,
    dpc_knn,
    dpc_knn_approximate,
    dpc_knn_dense,
    nearest_neighbours,
)

SPECS = {spec.name: spec for spec in histo_token_aggregators()}


def build(name: str, dim: int, **params: Any) -> nn.Module:
    torch.manual_seed(0)
    return SPECS[name].build(params).build(dim)


def clustered(n: int, dim: int, clusters: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, dim, generator=g) * 4
    return centres[torch.randint(0, clusters, (n,), generator=g)] + torch.randn(n, dim, generator=g)


def ragged_batch(lengths: list[int], n: int = 40, dim: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.stack([clustered(n, dim, 4, seed) for seed in range(len(lengths))])
    mask = torch.arange(n).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    tokens[~mask] = 1e3  # padding values must never matter
    return tokens, mask


AGGREGATORS = [
    ("dpc_knn", {"tokens": 3}),
    ("dpc_knn", {"tokens": 3, "chunk_size": 7}),
    ("dpc_knn", {"tokens": 3, "exact": False, "exact_below": 0, "cells": 5, "probe": 2}),
    ("topk_merge", {"tokens": 3}),
]


@pytest.mark.parametrize(("name", "params"), AGGREGATORS)
def test_contract_invariants(name: str, params: dict) -> None:
    tokens, mask = ragged_batch([40, 25, 2, 0])
    module = build(name, 8, **params)
    out = module(tokens, mask)
    k = params["tokens"]
    assert module.num_tokens == k
    assert out["tokens"].shape == (4, k, 8)
    assignment, weights = out["assignment"], out["weights"]
    assert assignment.dtype == torch.long and assignment.shape == mask.shape
    assert torch.equal(assignment < 0, ~mask)  # padding exactly -1, every real token assigned
    assert (assignment < k).all()
    assert torch.all(weights[~mask] == 0) and torch.all(weights[mask] > 0)
    normed = module.scorer.norm(tokens)
    for b, real in enumerate(mask.sum(1).tolist()):
        used = sorted(set(assignment[b, :real].tolist()))
        assert used == list(range(min(k, real)))  # min(K, n) non-empty clusters, K outputs
        for slot in range(k):
            members = assignment[b] == slot
            if members.any():
                assert weights[b, members].sum().item() == pytest.approx(1.0, abs=1e-5)
                expected = (weights[b, members].unsqueeze(1) * normed[b, members]).sum(0)
                assert torch.allclose(out["tokens"][b, slot], expected, atol=1e-5)
            else:
                assert torch.all(out["tokens"][b, slot] == 0)  # missing tokens of a short bag are zeros


@pytest.mark.parametrize(("name", "params"), AGGREGATORS)
def test_padding_content_is_ignored(name: str, params: dict) -> None:
    tokens, mask = ragged_batch([40, 17])
    module = build(name, 8, **params)
    first = module(tokens, mask)
    tokens2 = tokens.clone()
    tokens2[~mask] = torch.randn(int((~mask).sum()), 8)
    second = module(tokens2, mask)
    assert torch.equal(first["assignment"], second["assignment"])
    assert torch.allclose(first["tokens"], second["tokens"])


@pytest.mark.parametrize(("name", "params"), [a for a in AGGREGATORS if a[1].get("exact_below") != 0])
def test_permuting_tokens_permutes_the_assignment(name: str, params: dict) -> None:
    tokens, mask = ragged_batch([40])
    module = build(name, 8, **params)
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(3))
    before, after = module(tokens, mask), module(tokens[:, perm], mask)
    assert torch.equal(after["assignment"], before["assignment"][:, perm])
    assert torch.allclose(after["weights"], before["weights"][:, perm], atol=1e-6)
    assert torch.allclose(after["tokens"], before["tokens"], atol=1e-5)


@pytest.mark.parametrize(("name", "params"), AGGREGATORS)
def test_deterministic(name: str, params: dict) -> None:
    tokens, mask = ragged_batch([40, 31])
    a, b = build(name, 8, **params)(tokens, mask), build(name, 8, **params)(tokens, mask)
    for key in ("tokens", "assignment", "weights"):
        assert torch.equal(a[key], b[key])


@pytest.mark.parametrize(("name", "params"), [*AGGREGATORS, ("none", {})])
def test_gradients_reach_scores_and_inputs(name: str, params: dict) -> None:
    tokens, mask = ragged_batch([40, 12])
    tokens.requires_grad_(True)
    module = build(name, 8, **params)
    target = torch.randn_like(module(tokens, mask)["tokens"])
    (module(tokens, mask)["tokens"] * target).sum().backward()
    assert tokens.grad is not None and tokens.grad[mask].abs().sum() > 0
    assert torch.all(tokens.grad[~mask] == 0)
    if name != "none":
        assert module.scorer.score.weight.grad.abs().sum() > 0  # the learned score shapes the merge


def test_none_is_the_masked_mean() -> None:
    tokens, mask = ragged_batch([40, 5, 0])
    module = build("none", 8)
    out = module(tokens, mask)
    assert module.num_tokens == 1 and out["tokens"].shape == (3, 1, 8)
    normed = module.norm(tokens)
    assert torch.allclose(out["tokens"][0, 0], normed[0].mean(0), atol=1e-5)
    assert torch.allclose(out["tokens"][1, 0], normed[1, :5].mean(0), atol=1e-5)
    assert torch.all(out["tokens"][2] == 0)
    assert torch.equal(out["assignment"], torch.where(mask, 0, -1))
    assert out["weights"][1, :5].sum().item() == pytest.approx(1.0)


def test_single_real_token_with_two_outputs() -> None:
    tokens, mask = ragged_batch([1])
    module = build("dpc_knn", 8, tokens=2)
    out = module(tokens, mask)
    assert out["assignment"][0, 0] == 0 and torch.all(out["assignment"][0, 1:] == -1)
    assert torch.allclose(out["tokens"][0, 0], module.scorer.norm(tokens)[0, 0], atol=1e-6)
    assert torch.all(out["tokens"][0, 1] == 0)


def test_ratio_sets_k_from_the_padded_length() -> None:
    module = build("dpc_knn", 8, ratio=0.1)
    assert module.num_tokens is None
    tokens, mask = ragged_batch([40, 20])
    assert module(tokens, mask)["tokens"].shape[1] == math.ceil(0.1 * 40)
    assert DpcKnnConfig().tokens == 2  # the reference's K for 2,500 patches
    with pytest.raises(ValidationError, match="either"):
        DpcKnnConfig(tokens=2, ratio=0.1)


def test_wrong_shapes_are_reported() -> None:
    module = build("dpc_knn", 8)
    with pytest.raises(ValueError, match=r"tokens \[B, N, D\]"):
        module(torch.randn(10, 8), torch.ones(10, dtype=torch.bool))


def test_two_separated_groups_get_one_centre_each() -> None:
    left = torch.tensor([[0.0], [0.1], [0.2], [0.3], [0.15]])
    right = torch.tensor([[10.0], [10.1], [10.2], [10.35], [10.05], [10.15]])
    x = torch.cat([left, right])
    centres, assignment = dpc_knn(x, 2, k=3)
    assert {int(c) < 5 for c in centres} == {True, False}
    assert torch.equal(assignment[:5], assignment[:1].expand(5))
    assert torch.equal(assignment[5:], assignment[5:6].expand(6))
    assert assignment[0] != assignment[5]


@pytest.mark.parametrize("force_groups", [False, True])
@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_chunked_knn_equals_brute_force(
    monkeypatch: pytest.MonkeyPatch, force_groups: bool, chunk: int
) -> None:
    if force_groups:  # run the two-level group search on a small matrix
        monkeypatch.setattr(knn_module, "_DIRECT_TOPK_COLUMNS", 0)
        monkeypatch.setattr(knn_module, "_GROUPS", 4)
    x = torch.randn(301, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    found = nearest_neighbours(x, 9, chunk)
    brute, index = torch.topk(torch.cdist(x, x) ** 2, 9, dim=1, largest=False)
    assert torch.equal(found.index, index)
    assert torch.allclose(found.sq_dists, brute, atol=1e-9)


@pytest.mark.parametrize("candidates", [1, 3, 32])
@pytest.mark.parametrize("seed", range(4))
def test_chunked_dpc_equals_the_dense_reference(
    monkeypatch: pytest.MonkeyPatch, candidates: int, seed: int
) -> None:
    # few candidates -> many tokens need the full-row pass for their nearest denser token
    monkeypatch.setattr(knn_module, "CANDIDATES", candidates)
    x = clustered(400, 12, 6, seed).double()
    dense_centres, dense_assignment = dpc_knn_dense(x, 5, k=5)
    centres, assignment = dpc_knn(x, 5, k=5, chunk=37)
    assert torch.equal(centres, dense_centres)
    assert torch.equal(assignment, dense_assignment)


def test_approximate_search_with_every_cell_probed_is_exact() -> None:
    x = clustered(500, 8, 4, 0).double()
    exact = nearest_neighbours(x, 32, 64)
    found = approximate_neighbours(x, 32, cells=20, probe=20, chunk=64, seed=0)
    assert torch.equal(found.index, exact.index)
    approximate = dpc_knn_approximate(x, 3, 5, 64, cells=20, probe=20, seed=0)
    assert torch.equal(approximate[0], dpc_knn(x, 3, 5, 64)[0])


def test_approximate_search_recall_and_determinism() -> None:
    x = clustered(2000, 16, 6, 1)
    exact = nearest_neighbours(x, 5, 256)
    found = approximate_neighbours(x, 32, cells=45, probe=8, chunk=256, seed=3)
    again = approximate_neighbours(x, 32, cells=45, probe=8, chunk=256, seed=3)
    assert torch.equal(found.index, again.index)
    assert torch.all(found.sq_dists[:, :5] >= exact.sq_dists - 1e-4)  # never closer than the truth
    recall = (found.index[:, :5].unsqueeze(2) == exact.index.unsqueeze(1)).any(2).float().mean()
    assert recall > 0.9
    centres, assignment = dpc_knn_approximate(x, 6, 5, 256, cells=45, probe=8, seed=3)
    assert torch.equal(assignment, assign_to_centres(x, centres, 256))
    assert torch.equal(centres, dpc_knn(x, 6, 5, 256)[0])  # separated clusters: the same centres


def mixture(n: int, dim: int, seed: int) -> torch.Tensor:
    """LayerNorm'd tokens of a 16-component Gaussian mixture with uneven sizes and spreads (overlapping)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(16, dim, generator=g) * 0.6
    spread = 0.5 + torch.rand(16, generator=g)
    share = torch.rand(16, generator=g) + 0.2
    which = torch.multinomial(share / share.sum(), n, replacement=True, generator=g)
    x = centres[which] + spread[which, None] * torch.randn(n, dim, generator=g)
    return torch.nn.functional.layer_norm(x, (dim,))


def adjusted_rand(a: torch.Tensor, b: torch.Tensor) -> float:
    """Adjusted Rand index of two labelings (1: the same partition)."""
    table = torch.zeros(int(a.max()) + 1, int(b.max()) + 1, dtype=torch.float64)
    table.index_put_((a, b), torch.ones(a.numel(), dtype=torch.float64), accumulate=True)

    def pairs(v: torch.Tensor) -> float:
        return float((v * (v - 1) / 2).sum())

    index, rows, cols = pairs(table), pairs(table.sum(1)), pairs(table.sum(0))
    expected = rows * cols / (a.numel() * (a.numel() - 1) / 2)
    return (index - expected) / ((rows + cols) / 2 - expected)


def test_fast_search_agrees_with_exact_on_a_fixed_bag() -> None:
    # 12,000 overlapping 32-d tokens: the fast search misses 12% of the 5 nearest neighbours, yet the
    # centres it picks are the exact ones at K = 2 and K = 8 (measured: identical, ARI 1.000)
    x = mixture(12_000, 32, seed=0)
    exact_centres, _ = dpc_knn(x, 8, 5, 1024)
    found = approximate_neighbours(x, 32, cells=110, probe=16, chunk=1024, seed=0)
    truth = nearest_neighbours(x, 5, 1024, rows=torch.arange(0, 12_000, 40))
    recall = (found.index[::40, :5].unsqueeze(2) == truth.index.unsqueeze(1)).any(2).float().mean()
    assert recall < 0.95  # the search is approximate on this bag, so the agreement below is earned
    fast_centres, _ = dpc_knn_approximate(x, 8, 5, 1024, None, 16, 0)
    for k in (2, 8):
        assert set(fast_centres[:k].tolist()) == set(exact_centres[:k].tolist())
        fast = assign_to_centres(x, fast_centres[:k], 1024)
        assert adjusted_rand(assign_to_centres(x, exact_centres[:k], 1024), fast) >= 0.999


def test_default_is_fast_above_exact_below_and_exact_under_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from histo.plugins.method import aggregators

    calls: list[int] = []

    def spy(x: torch.Tensor, *args: Any) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(x.shape[0])
        return dpc_knn_approximate(x, *args)

    monkeypatch.setattr(aggregators, "dpc_knn_approximate", spy)
    assert DpcKnnConfig().exact is False
    x = mixture(600, 16, seed=1)
    tokens, mask = x.unsqueeze(0), torch.ones(1, 600, dtype=torch.bool)
    small = build("dpc_knn", 16, tokens=4)  # 600 tokens <= exact_below: the exact search, same result
    exact = build("dpc_knn", 16, tokens=4, exact=True)
    assert torch.equal(small(tokens, mask)["assignment"], exact(tokens, mask)["assignment"])
    assert calls == []
    fast = build("dpc_knn", 16, tokens=4, exact_below=100, cells=6, probe=1)
    normed = fast.scorer.norm(tokens)[0].detach()
    _, joined = dpc_knn_approximate(normed, 4, 5, 1024, 6, 1, 0)
    assert torch.equal(fast(tokens, mask)["assignment"][0], joined)
    assert calls == [600]


def test_registered_with_the_default_plugins(histo_plugins: Plugins) -> None:
    registry = histo_plugins.registry("token_aggregators")
    assert {"dpc_knn", "topk_merge", "none"} <= set(registry.names())
    assert registry.build("dpc_knn", {"tokens": 4}).build(16).num_tokens == 4
