"""DPC-kNN clustering (density peaks with k-nearest-neighbour density) that scales to whole slides.

The reference formulation (TCFormer, and the paper's released code) builds the full N x N distance
matrix: 40 GB of float32 for a 20x slide of 100,000 patches. Here every pass works on `chunk` rows of
the distance matrix at a time, so memory is O(chunk x N) while the result is the same:

1. k nearest neighbours of every token, by blocks of rows. Each row block keeps its `CANDIDATES`
   nearest columns (the k nearest among them) through a two-level exact search: the minimum over
   `_GROUPS` interleaved column groups, the best groups, then the best columns inside them. This is
   exact because the `m` nearest columns always lie in the `m` groups with the smallest minima.
2. density = exp(-mean squared distance to the k nearest), distances divided by sqrt(D) as the
   reference does. Densities are ranked into a strict total order (ties broken by token index) so
   that "denser than" is well defined and the result deterministic.
3. distance indicator delta = distance to the nearest denser token. When one of a token's kept
   candidates is denser, the nearest such candidate is the answer (every other token is farther).
   Only the tokens with no denser candidate (local density peaks, few) need a second pass over all
   columns. The densest token gets its largest distance to any token: it is then the top-scoring
   token, exactly as with the reference's global maximum (proof in docs/method-components.md).
4. centres = the top-K tokens by density x delta; each token joins its nearest centre.

`dpc_knn_approximate` replaces step 1 by an inverted-file search over k-means cells (O(N^1.5 D) with
sqrt(N) cells), then re-searches exactly the few tokens that can become centres. `dpc_knn_dense` is
the reference's O(N^2)-memory formulation, kept to test and benchmark against. Everything here runs
without autograd: choosing centres is discrete.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

_GROUPS = 16  # interleaved column groups of the two-level exact k-nearest search
_DIRECT_TOPK_COLUMNS = 4096  # below this many columns a plain topk is as fast
CANDIDATES = 32  # nearest neighbours kept per token for the nearest-denser search
REFINE_FACTOR, REFINE_EXTRA = 4, 64  # the approximation re-searches exactly the best 4 K + 64 tokens
REFINE_NEIGHBOURS = 16  # ... and their 16 nearest (a true peak hides next to a token that looked denser)
LLOYD_STEPS = 2  # k-means steps that move the approximate search's landmarks to the centres of their cells
LLOYD_SAMPLE = 64  # ... computed on this many tokens per cell (a seeded sample), so they cost O(n D)


@dataclass(frozen=True)
class Neighbours:
    """The `m` nearest tokens of every token (the token itself included), nearest first."""

    sq_dists: Tensor  # [n, m] squared Euclidean distances (not yet divided by D)
    index: Tensor  # [n, m] long


def _sq_dists(rows: Tensor, rows_sq: Tensor, cols: Tensor, cols_sq: Tensor) -> Tensor:
    """|r|^2 + |c|^2 - 2 r.c as one matrix product, clamped at 0 (rounding can dip below)."""
    block = torch.addmm(cols_sq.unsqueeze(0), rows, cols.T, alpha=-2.0)
    return block.add_(rows_sq.unsqueeze(1)).clamp_(min=0)


def _smallest(block: Tensor, m: int) -> tuple[Tensor, Tensor]:
    """The m smallest entries of each row of `block` [r, n], ascending, exactly."""
    n = block.shape[1]
    m = min(m, n)
    groups = _GROUPS
    if n < max(_DIRECT_TOPK_COLUMNS, 4 * m * groups):
        return torch.topk(block, m, dim=1, largest=False)
    width = n // groups  # group j holds columns j, j + width, ..., j + (groups - 1) * width
    body = block[:, : width * groups].unflatten(1, (groups, width))
    group_min = body.amin(dim=1)  # [r, width]
    _, best_groups = torch.topk(group_min, m, dim=1, largest=False)  # [r, m]
    offsets = torch.arange(groups, device=block.device) * width
    columns = (best_groups.unsqueeze(2) + offsets).flatten(1)  # [r, m * groups]
    tail = torch.arange(width * groups, n, device=block.device)  # columns outside the groups
    columns = torch.cat([columns, tail.unsqueeze(0).expand(columns.shape[0], -1)], dim=1)
    values, position = torch.topk(block.gather(1, columns), m, dim=1, largest=False)
    return values, columns.gather(1, position)


def nearest_neighbours(x: Tensor, m: int, chunk: int, rows: Tensor | None = None) -> Neighbours:
    """The m nearest tokens of each token of x [n, D] (itself included), by blocks of `chunk` rows.

    With `rows`, only for those tokens (the result then has one row per entry of `rows`).
    """
    rows = torch.arange(x.shape[0], device=x.device) if rows is None else rows
    sq = (x * x).sum(1)
    values, indices = [], []
    for start in range(0, rows.numel(), chunk):
        part = rows[start : start + chunk]
        block = _sq_dists(x[part], sq[part], x, sq)
        v, i = _smallest(block, m)
        values.append(v)
        indices.append(i)
        del block
    return Neighbours(torch.cat(values), torch.cat(indices))


def density_rank(density: Tensor) -> Tensor:
    """rank[i] = position of token i when sorted by density, densest first; ties go to the lower index."""
    order = torch.sort(density, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device)
    return rank


def distance_to_denser(x: Tensor, rank: Tensor, neighbours: Neighbours, chunk: int) -> Tensor:
    """delta [n]: squared distance to the nearest denser token (the densest: to its farthest token)."""
    denser = rank[neighbours.index] < rank.unsqueeze(1)  # [n, m], nearest first
    found = denser.any(dim=1)
    first = denser.to(torch.int8).argmax(dim=1)  # first True, i.e. the nearest denser candidate
    delta = neighbours.sq_dists.gather(1, first.unsqueeze(1)).squeeze(1)
    peaks = torch.nonzero(~found).squeeze(1)
    if peaks.numel():
        sq = (x * x).sum(1)
        for start in range(0, peaks.numel(), chunk):
            rows = peaks[start : start + chunk]
            block = _sq_dists(x[rows], sq[rows], x, sq)
            farthest = block.amax(dim=1)
            block.masked_fill_(rank.unsqueeze(0) >= rank[rows].unsqueeze(1), math.inf)
            nearest = block.amin(dim=1)
            delta[rows] = torch.where(torch.isinf(nearest), farthest, nearest)
            del block
    return delta


def top_centres(score: Tensor, count: int) -> Tensor:
    """Indices of the `count` highest scores, highest first; ties go to the lower index."""
    return torch.sort(score, descending=True, stable=True).indices[: min(count, score.numel())]


def assign_to_centres(x: Tensor, centres: Tensor, chunk: int, centres_x: Tensor | None = None) -> Tensor:
    """Index (into `centres`) of the nearest centre of every token; each centre joins itself.

    With `centres_x`, the centres are those points instead of tokens of x.
    """
    n = x.shape[0]
    c = x[centres] if centres_x is None else centres_x
    c_sq = (c * c).sum(1)
    sq = (x * x).sum(1)
    rows = max(chunk, 1) * 64  # [rows, K] blocks are small
    assignment = torch.cat(
        [_sq_dists(x[s : s + rows], sq[s : s + rows], c, c_sq).argmin(dim=1) for s in range(0, n, rows)]
    )
    if centres_x is None:
        assignment[centres] = torch.arange(centres.numel(), device=x.device)
    return assignment


def approximate_neighbours(
    x: Tensor, m: int, cells: int, probe: int, chunk: int, seed: int, iterations: int = LLOYD_STEPS
) -> Neighbours:
    """Approximate m nearest tokens by an inverted-file search (the candidate neighbours of a token are
    the members of the `probe` cells nearest to its own cell).

    Cells: `cells` landmark tokens drawn at random (seeded), moved by `iterations` k-means (Lloyd)
    steps on a seeded sample of `LLOYD_SAMPLE` tokens per cell, each token in the cell of its nearest
    landmark. The k-means steps make cells compact, so the `probe` nearest cells hold more of a token's
    true neighbours; dense regions get many landmarks, so cells stay small where the density peaks
    are. Work O(n x probe x n / cells x D) instead of O(n^2 x D). Each token's own cell is searched
    first, and cells are added until at least m candidates are found.
    The tokens are sorted by cell once, so that each cell's rows are one contiguous block, and
    candidates are ranked by |c|^2 - 2 r.c (the row's own |r|^2 does not change its ranking): only
    the m kept distances get the row term.
    """
    n = x.shape[0]
    cells = max(1, min(cells, n))
    generator = torch.Generator().manual_seed(seed)
    shuffled = torch.randperm(n, generator=generator).to(x.device)
    landmarks = x[shuffled[:cells]]
    sample = x[shuffled[: LLOYD_SAMPLE * cells]]
    for _ in range(iterations):
        members = assign_to_centres(sample, torch.arange(0), chunk, centres_x=landmarks)
        landmarks = _cell_means(sample, members, landmarks)
    cell = assign_to_centres(x, torch.arange(0), chunk, centres_x=landmarks)
    order = torch.argsort(cell, stable=True)
    counts = torch.bincount(cell, minlength=cells)
    starts = torch.cumsum(counts, 0) - counts
    l_sq = (landmarks * landmarks).sum(1)
    nearest_cells = torch.argsort(_sq_dists(landmarks, l_sq, landmarks, l_sq), dim=1, stable=True)
    xs = x[order]  # tokens sorted by cell
    sq = (xs * xs).sum(1)
    sq_dists = torch.full((n, m), math.inf, dtype=x.dtype, device=x.device)
    index = order.unsqueeze(1).repeat(1, m)  # in sorted positions; mapped back at the end
    position_range = torch.arange(n, device=x.device)
    counts_list, starts_list = counts.tolist(), starts.tolist()
    for c, q_order in enumerate(nearest_cells.tolist()):
        if counts_list[c] == 0:
            continue
        chosen, total = [], 0
        for q in q_order:
            if counts_list[q]:
                chosen.append(position_range[starts_list[q] : starts_list[q] + counts_list[q]])
                total += counts_list[q]
            if len(chosen) >= probe and total >= m:
                break
        candidates = torch.cat(chosen)
        cand_x, cand_sq = xs[candidates], sq[candidates]
        begin, stop = starts_list[c], starts_list[c] + counts_list[c]
        for start in range(begin, stop, chunk):
            end = min(start + chunk, stop)
            block = torch.addmm(cand_sq.unsqueeze(0), xs[start:end], cand_x.T, alpha=-2.0)
            values, position = _smallest(block, m)
            found = values.shape[1]
            sq_dists[start:end, :found] = values.add_(sq[start:end].unsqueeze(1)).clamp_(min=0)
            index[start:end, :found] = order[candidates[position]]
    result_dists, result_index = torch.empty_like(sq_dists), torch.empty_like(index)
    result_dists[order], result_index[order] = sq_dists, index
    return Neighbours(result_dists, result_index)


def _cell_means(x: Tensor, cell: Tensor, landmarks: Tensor) -> Tensor:
    """The mean of each cell's tokens (a k-means step); an empty cell keeps its landmark."""
    counts = torch.bincount(cell, minlength=landmarks.shape[0]).to(x.dtype).unsqueeze(1)
    sums = torch.zeros_like(landmarks).index_add_(0, cell, x)
    return torch.where(counts > 0, sums / counts.clamp_min(1), landmarks)


def dpc_score(x: Tensor, neighbours: Neighbours, k: int, chunk: int) -> Tensor:
    """density x delta of every token (steps 2-3 of the module docstring) from its neighbour list."""
    dim = x.shape[1]
    k = min(k, x.shape[0])
    density = torch.exp(-(neighbours.sq_dists[:, :k] / dim).mean(dim=1))
    delta = distance_to_denser(x, density_rank(density), neighbours, chunk)
    return density * (delta / dim).sqrt()


def dpc_knn(x: Tensor, num_centres: int, k: int = 5, chunk: int = 1024) -> tuple[Tensor, Tensor]:
    """Exact DPC-kNN of tokens x [n, D]: (centre indices [K'] by descending score, assignment [n]).

    K' = min(num_centres, n). Memory O(chunk x n), time O(n^2 D).
    """
    if x.shape[0] == 0:
        empty = torch.zeros(0, dtype=torch.long, device=x.device)
        return empty, empty
    neighbours = nearest_neighbours(x, max(k, CANDIDATES), chunk)
    centres = top_centres(dpc_score(x, neighbours, k, chunk), num_centres)
    return centres, assign_to_centres(x, centres, chunk)


def dpc_knn_approximate(
    x: Tensor, num_centres: int, k: int, chunk: int, cells: int | None, probe: int, seed: int
) -> tuple[Tensor, Tensor]:
    """DPC-kNN with the k nearest neighbours found by an inverted-file search (approximate densities).

    A missed neighbour makes a density too low, which can demote a centre. So the neighbours of the
    best `REFINE_FACTOR x K + REFINE_EXTRA` tokens by approximate score are then searched exactly (a
    pass over all tokens for those rows only) and the scores recomputed. The distance to the nearest
    denser token is exact for the local density peaks, given the densities. `cells` defaults to
    ceil(sqrt(n)). Deterministic for a given seed and token order.
    """
    n = x.shape[0]
    if n == 0:
        return dpc_knn(x, num_centres, k, chunk)
    m = max(k, CANDIDATES)
    neighbours = approximate_neighbours(x, m, cells or math.ceil(math.sqrt(n)), probe, chunk, seed)
    best = top_centres(dpc_score(x, neighbours, k, chunk), REFINE_FACTOR * num_centres + REFINE_EXTRA)
    best = torch.unique(neighbours.index[best, :REFINE_NEIGHBOURS])  # the best tokens and their neighbours
    exact = nearest_neighbours(x, m, chunk, rows=best)
    found = exact.index.shape[1]  # fewer than m when the bag is small
    neighbours.sq_dists[best, :found] = exact.sq_dists
    neighbours.index[best, :found] = exact.index
    centres = top_centres(dpc_score(x, neighbours, k, chunk), num_centres)
    return centres, assign_to_centres(x, centres, chunk)


def dpc_knn_dense(x: Tensor, num_centres: int, k: int = 5) -> tuple[Tensor, Tensor]:
    """The reference's O(n^2)-memory formulation (full cdist), kept to test and benchmark against.

    Same definitions as the reference (global maximum distance for the densest token) except that
    ties are broken by index instead of random noise, so results are reproducible.
    """
    n, dim = x.shape
    dist = torch.cdist(x, x) / math.sqrt(dim)
    nearest, _ = torch.topk(dist, k=min(k, n), dim=-1, largest=False)
    density = torch.exp(-(nearest**2).mean(dim=-1))
    rank = density_rank(density)
    denser = rank.unsqueeze(0) < rank.unsqueeze(1)  # [i, j]: j is denser than i
    delta = torch.where(denser, dist, dist.max()).amin(dim=-1)
    centres = top_centres(density * delta, num_centres)
    assignment = dist[:, centres].argmin(dim=1)
    assignment[centres] = torch.arange(centres.numel())
    return centres, assignment
