"""Deformable multi-head attention over a sparse 2-D patch grid (the paper's gene-guided cross-attention
and the student's self-attention).

Per offset group, a depthwise convolution over a fixed-size map of the queries predicts offsets for a
P x P lattice of reference points spread over each bag's grid; keys and values are read there by
bilinear interpolation of the occupied cells. Every query attends to those P^2 sampled keys only, so
the cost is O(N x P^2) whatever the bag size. Empty cells contribute nothing: the interpolation weight
that falls on occupied cells is carried along, and a key is weighted by it (log-added to its score).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .configs import DeformableConfig
from .cpb_grouped import grouped_cpb, grouped_tables
from .dropout import AttentionDropout
from .fused_head import SeparableBias, separable_head
from .layout import TokenLayout

# a sampled key needs at least this much interpolation weight on occupied cells to count
MIN_KEY_MASS = 1e-3


@dataclass
class DeformableOutput:
    out: Tensor  # [B, N, dim], zeros at padding
    key_attention: Tensor  # [B, heads, P*P]: attention on each sampled key, averaged over real queries
    patch_attention: Tensor  # [B, N]: attention each patch received through the keys (sums to 1 per bag)
    maps: Tensor | None = None  # [B, heads, N, P*P]: every query's attention, when asked for (keep_maps)


class GroupProjection(nn.Module):
    """Bias-free linear map with its output split into `groups` blocks. Grouped: block g reads only
    input slice g (the reference's grouped 1x1 convolution); otherwise every block reads all inputs."""

    def __init__(self, in_dim: int, out_dim: int, groups: int, grouped: bool) -> None:
        super().__init__()
        self.groups = groups
        self.grouped = grouped
        fan_in = in_dim // groups if grouped else in_dim
        self.weight = nn.Parameter(torch.empty(groups, fan_in, out_dim // groups))
        bound = 1 / math.sqrt(fan_in)  # what Conv2d's default init gives
        nn.init.uniform_(self.weight, -bound, bound)

    def split(self, x: Tensor) -> Tensor:
        """[..., in] -> [..., groups, in / groups] (grouped) or a broadcast [..., groups, in]."""
        if self.grouped:
            return x.unflatten(-1, (self.groups, -1))
        return x.unsqueeze(-2).expand(*x.shape[:-1], self.groups, x.shape[-1])

    def project(self, x: Tensor) -> Tensor:
        """[..., groups, fan_in] -> [..., groups, out / groups]."""
        return torch.einsum("...gi,gio->...go", x, self.weight)

    def forward(self, x: Tensor) -> Tensor:
        return self.project(self.split(x))

    def groups_first(self, x: Tensor) -> Tensor:
        """[B, n, in] -> [groups, B, n, out / groups], laid out for batched matrix products."""
        x = x.unflatten(-1, (self.groups, -1)).permute(2, 0, 1, 3) if self.grouped else x.unsqueeze(0)
        return torch.matmul(x, self.weight.unsqueeze(1))


def _scaled(x: Tensor, factor: float) -> Tensor:
    return x if factor == 1 else x * factor


def _bias_mlp(in_dim: int, hidden: int, out_dim: int, last_bias: bool = True) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, out_dim, bias=last_bias),
    )


# knots of the tabulated 1-D bias functions (linear interpolation in between)
BIAS_KNOTS = 512

LogitFn = Callable[[slice, int], Tensor]  # (query chunk, head) -> new logits [B, n, K]


class PositionBias(nn.Module):
    """Relative position bias f(query position - key position), positions in [-1, 1] of each bag's grid.

    'cpb': the reference's continuous MLP of the signed-log 2-D offset, evaluated for every query and
    key (O(N x K x hidden) work). 'separable': f_x(dx) + f_y(dy), each an MLP of the signed-log 1-D
    offset tabulated at BIAS_KNOTS points and interpolated; a query's bias then depends only on its grid
    column and row, so the [grid line, key] tables are built once and gathered per query.
    """

    def __init__(self, kind: str, hidden: int, per_group: int) -> None:
        super().__init__()
        self.kind = kind
        if kind == "cpb":
            self.mlp = _bias_mlp(2, hidden, per_group)
        else:
            # no output bias: a constant added to every key's score leaves the softmax unchanged
            self.mlp_x = _bias_mlp(1, hidden, per_group, last_bias=False)
            self.mlp_y = _bias_mlp(1, hidden, per_group, last_bias=False)

    def prepare(
        self, layout: TokenLayout, key_x: Tensor, key_y: Tensor, constant: Tensor, reach: float
    ) -> LogitFn:
        """key_x, key_y [B, groups, K]; constant [B, heads, 1, K] is added to every query's logits; reach
        bounds |query - key| per axis. Returns (chunk, head) -> a new logits tensor [B, n, K]."""
        columns, rows = layout.line_positions()
        if self.kind == "cpb":
            tables = grouped_tables(self.mlp, columns, rows, key_x, key_y)
            return _joint_bias(self.mlp, layout, tables, constant)
        # [heads, B * lines, K]: one contiguous row per (bag, grid line); a query's bias is two row reads
        table_x = (self._table(self.mlp_x, columns, key_x, reach) + constant).transpose(0, 1).flatten(1, 2)
        table_y = self._table(self.mlp_y, rows, key_y, reach).transpose(0, 1).flatten(1, 2)
        return SeparableBias(table_x, table_y, layout)

    @staticmethod
    def _table(mlp: nn.Module, query: Tensor, key: Tensor, reach: float) -> Tensor:
        """query [B, L] positions of the grid lines, key [B, g, K] -> f(query - key) [B, heads, L, K]."""
        limit = math.log1p(reach)
        pairs = _knot_pairs(mlp, limit, key)  # [knots, 2 * o]: value, slope to the next knot
        d = query[:, None, :, None] - key[:, :, None, :]
        u = torch.copysign(torch.log1p(d.abs()), d)  # the signed log, in two passes over the table
        u = u.add(limit).mul_((BIAS_KNOTS - 1) / (2 * limit)).clamp_(0, BIAS_KNOTS - 1)
        low = u.detach().to(torch.int32)  # the floor: u >= 0
        # one read of value and slope, not two of neighbouring values
        rows = _read_rows(pairs, low.flatten()).view(*low.shape, -1)
        o = pairs.shape[-1] // 2
        table = torch.addcmul(rows[..., :o], rows[..., o:], (u - low).unsqueeze(-1))  # [B, g, L, K, o]
        return table.permute(0, 1, 4, 2, 3).flatten(1, 2)


def _knot_pairs(mlp: nn.Module, limit: float, like: Tensor) -> Tensor:
    """The bias MLP at its knots beside the slope to the next knot (0 after the last): [knots, 2 * o],
    so an interpolated value is one row read and one multiply-add. Without autograd (inference,
    validation) the table is kept on the MLP until its weights change (an optimiser step or a load bumps
    their version), which takes a fixed cost off every pass that matters most on small bags."""
    knots = partial(torch.linspace, -limit, limit, BIAS_KNOTS, device=like.device, dtype=like.dtype)
    if torch.is_grad_enabled():
        return _with_slopes(mlp(knots().unsqueeze(-1)))
    key = (limit, like.dtype, like.device, tuple((p.data_ptr(), p._version) for p in mlp.parameters()))
    cached = getattr(mlp, "_knot_cache", None)
    if cached is None or cached[0] != key:
        cached = (key, _with_slopes(mlp(knots().unsqueeze(-1))))
        object.__setattr__(mlp, "_knot_cache", cached)  # a plain attribute: never saved or moved
    return cached[1]


def _read_rows(table: Tensor, index: Tensor) -> Tensor:
    """table.index_select(0, index), differentiable in table through `_RowRead` when autograd needs it."""
    if torch.is_grad_enabled() and table.requires_grad:
        return cast(Tensor, _RowRead.apply(table, index))
    return table.index_select(0, index)


class _RowRead(torch.autograd.Function):
    """Rows of a small table read many times, whose backward sums each row's gradients with one bincount.
    index_select's own backward (index_add_) and gather's (scatter_add_) took 2.5-3.5 ms a call for the
    85,000 reads of a 512-row table at 2,500 patches on 2 threads, a seventh of the training step;
    bincount takes 0.3 ms."""

    @staticmethod
    def forward(ctx: Any, table: Tensor, index: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(index)
        ctx.rows = table.shape[0]
        return table.index_select(0, index)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (index,) = ctx.saved_tensors
        width = grad.shape[1]
        cells = (index.unsqueeze(1) * width + torch.arange(width, device=index.device)).flatten()
        weights = grad.reshape(-1)
        if weights.dtype not in (torch.float32, torch.float64):  # bincount's weights: float or double
            weights = weights.float()
        summed = torch.bincount(cells, weights, minlength=ctx.rows * width)
        return summed.view(ctx.rows, width).to(grad.dtype), None


def _with_slopes(values: Tensor) -> Tensor:
    """[knots, o] -> [knots, 2 * o]: each knot's value and the step to the next one."""
    return torch.cat([values, torch.cat([values[1:] - values[:-1], torch.zeros_like(values[:1])])], dim=1)


def _joint_bias(
    mlp: nn.Sequential, layout: TokenLayout, tables: tuple[Tensor, Tensor], constant: Tensor
) -> LogitFn:
    """The reference's MLP for every query, key and head (cpb_grouped.py), computed for all heads when a
    chunk asks for head 0 (the attention asks for heads in order, also when it recomputes a chunk)."""
    held: dict[str, Any] = {}

    def joint(sl: slice, head: int) -> Tensor:
        if head == 0 or held.get("slice") != (sl.start, sl.stop):
            bias = grouped_cpb(mlp, tables, layout.col[:, sl], layout.row[:, sl])  # [B, g, n, K, o]
            held["slice"] = (sl.start, sl.stop)
            held["heads"] = bias.permute(1, 4, 0, 2, 3).flatten(0, 1).unbind(0)  # heads x [B, n, K]
        return held["heads"][head] + constant[:, head]

    return joint


class DeformableAttention(nn.Module):
    """module(tokens [B, N, dim] (normalised), layout, query [B, dim] or None) -> DeformableOutput.

    With `query` the queries are that one vector at every patch (gene-guided cross-attention); without,
    the tokens themselves (self-attention). Keys and values are always sampled from `tokens`.
    """

    def __init__(self, dim: int, config: DeformableConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        self.heads, self.head_dim, self.groups = c.heads, c.head_dim, c.offset_groups
        inner = c.heads * c.head_dim
        self.to_q = GroupProjection(dim, inner, c.offset_groups, c.grouped_projections)
        self.to_k = GroupProjection(dim, inner, c.offset_groups, c.grouped_projections)
        self.to_v = GroupProjection(dim, inner, c.offset_groups, c.grouped_projections)
        self.to_out = nn.Linear(inner, dim)
        group_dim = inner // c.offset_groups
        self.offset_net = nn.Sequential(  # shared by the groups, as in the reference
            nn.Conv2d(
                group_dim,
                group_dim,
                c.offset_kernel,
                stride=c.offset_stride,
                padding=c.padding,
                groups=group_dim,
            ),
            nn.GELU(),
            nn.Conv2d(group_dim, 2, 1, bias=False),
            nn.Tanh(),
        )
        per_group = c.heads // c.offset_groups
        self.position_bias = (
            None if c.position_bias == "none" else PositionBias(c.position_bias, c.position_hidden, per_group)
        )
        self.dropout = AttentionDropout(c.dropout)
        self.scale = c.head_dim**-0.5

    def _heads(self, x: Tensor) -> Tensor:
        """[B, g, K, o * head_dim] -> [B, heads, K, head_dim]."""
        b, g, k, _ = x.shape
        return x.view(b, g, k, -1, self.head_dim).permute(0, 1, 3, 2, 4).reshape(b, -1, k, self.head_dim)

    def _queries(self, x: Tensor) -> Tensor:
        """[B, n, dim] -> [heads, B, n, head_dim]."""
        q = self.to_q.groups_first(x)  # [g, B, n, o * head_dim]
        if self.heads == self.groups:
            return q
        g, b, n, _ = q.shape
        return q.view(g, b, n, -1, self.head_dim).permute(0, 3, 1, 2, 4).reshape(-1, b, n, self.head_dim)

    def _offsets(self, tokens: Tensor, layout: TokenLayout, query: Tensor | None) -> Tensor:
        """Sampling offsets [B, groups, 2 (x, y), P*P] in units of the reference-point spacing."""
        size = self.config.offset_map_size
        batch = tokens.shape[0]
        if query is None:
            pooled, _ = layout.pool_to_map(tokens, size)
            assert pooled is not None
            qmap = self.to_q(pooled.permute(0, 2, 3, 1)).permute(0, 3, 4, 1, 2)  # [B, g, od, S, S]
        else:
            return self._query_offsets(layout, self.to_q(query)) * self.config.offset_range
        offsets = (
            self.offset_net(qmap.reshape(batch * self.groups, -1, size, size)) * self.config.offset_range
        )
        return offsets.reshape(batch, self.groups, 2, -1)

    def _query_offsets(self, layout: TokenLayout, q: Tensor) -> Tensor:
        """offset_net (before its range) on the map q [B, g, C] x occupancy, without building the map.

        Channel c of that map is q_c times the occupancy, so the depthwise convolution is q_c times the
        occupancy's windows dotted with kernel c, plus bias c: one small product with windows that
        depend on the layout only. The convolution over the map's B x g x C x S x S values (and its
        backward) was a fixed cost of ~25 ms a training step (one thread), a tenth of a 2,500-patch step.
        """
        c = self.config
        conv, mix = cast(nn.Conv2d, self.offset_net[0]), cast(nn.Conv2d, self.offset_net[2])
        act, squash = self.offset_net[1], self.offset_net[3]  # GELU, Tanh
        windows = layout.occupancy_windows(c.offset_map_size, c.offset_kernel, c.offset_stride, c.padding)
        windows = windows.to(q.dtype)  # [B, K, kernel^2]
        per_window = windows @ conv.weight.flatten(1).t()  # [B, K, C]: the kernels on the occupancy
        pre = q.unsqueeze(2) * per_window.unsqueeze(1)  # [B, g, K, C]
        if conv.bias is not None:
            pre = pre + conv.bias
        offsets = squash(act(pre) @ mix.weight.flatten(1).t())  # [B, g, K, 2]
        return offsets.transpose(2, 3)

    def _grid_position(self, key: Tensor, extent: Tensor) -> Tensor:
        """Key positions in [-1, 1] units -> fractional grid cells [B, g, K] of each bag."""
        extent = extent.to(key.dtype)[:, None, None]
        if self.config.lattice == "align_corners_false":  # -1 and 1 are the outer edges of the map
            return ((key + 1) * extent - 1) / 2
        return (key + 1) / 2 * (extent - 1)

    def _sample(
        self, tokens: Tensor, layout: TokenLayout, x: Tensor, y: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Bilinear reads of the cell table at grid positions x, y [B, g, K].

        Returns the sampled features [B, g, K, Cs] (renormalised over occupied neighbours), their
        occupied mass [B, g, K], the neighbours' cell rows [B, g, K, 4] and weights [B, g, K, 4].
        """
        table = layout.cell_table(tokens)  # [U + 1, C]
        x0, y0 = x.detach().floor(), y.detach().floor()
        fx, fy = x - x0, y - y0
        weights = torch.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], dim=-1)
        x0, y0 = x0.long().unsqueeze(-1), y0.long().unsqueeze(-1)
        cols = x0 + torch.tensor([0, 1, 0, 1], device=x.device)
        rows = y0 + torch.tensor([0, 0, 1, 1], device=x.device)
        b_index = torch.arange(x.shape[0], device=x.device)[:, None, None, None].expand_as(rows)
        cell = layout.lookup(b_index, rows, cols)
        weights = weights * (cell < layout.num_cells)
        if self.to_k.grouped:
            g_index = torch.arange(self.groups, device=x.device)[None, :, None, None]
            neighbours = table.view(table.shape[0], self.groups, -1)[cell, g_index]  # [B, g, K, 4, Cs]
        else:
            neighbours = table[cell]
        mass = weights.sum(-1)
        sampled = torch.einsum("bgkn,bgknc->bgkc", weights, neighbours)
        if self.config.off_map_keys == "zeros":
            return sampled, mass, cell, weights
        return sampled / mass.clamp_min(MIN_KEY_MASS).unsqueeze(-1), mass, cell, weights

    def forward(
        self, tokens: Tensor, layout: TokenLayout, query: Tensor | None = None, keep_maps: bool = False
    ) -> DeformableOutput:
        """keep_maps: also return the full attention maps (the released consistency loss needs them)."""
        # grid positions and interpolation weights need float32: a bf16 position is off by cells
        with torch.autocast(tokens.device.type, enabled=False):
            result = self._attend(tokens.float(), layout, None if query is None else query.float(), keep_maps)
        result.out = result.out.to(tokens.dtype)
        return result

    def _attend(
        self, tokens: Tensor, layout: TokenLayout, query: Tensor | None, keep_maps: bool = False
    ) -> DeformableOutput:
        c = self.config
        batch, n, dim = tokens.shape
        side = c.key_side
        offsets = self._offsets(tokens, layout, query)
        lattice = torch.arange(side, device=tokens.device, dtype=tokens.dtype)
        spacing = 2.0 / max(side - 1, 1)
        origin = -1.0 if side > 1 else 0.0
        key_x = origin + (lattice.repeat(side) + offsets[:, :, 0]) * spacing  # [B, g, K] in [-1, 1] units
        key_y = origin + (lattice.repeat_interleave(side) + offsets[:, :, 1]) * spacing
        grid_x, grid_y = self._grid_position(key_x, layout.width), self._grid_position(key_y, layout.height)
        sampled, mass, cell, weights = self._sample(tokens, layout, grid_x, grid_y)

        per_key = sampled.transpose(1, 2)  # [B, K, g, Cs]: the projections act on the group axis
        keys = self._heads(self.to_k.project(per_key).transpose(1, 2))  # [B, heads, K, hd]
        values = self._heads(self.to_v.project(per_key).transpose(1, 2))
        # the output projection folded into the values: out = bias + sum_h attn_h @ (v_h W_h^T)
        values_out = torch.einsum("bhkd,ehd->hbke", values, self.to_out.weight.view(dim, self.heads, -1))
        values_out = _scaled(values_out, self.dropout.scale())  # dropout's 1/(1-p), once per key
        keys_t = (keys * self.scale).permute(1, 0, 3, 2)  # [heads, B, hd, K]
        per_group = self.heads // self.groups
        valid = mass > MIN_KEY_MASS  # [B, g, K]
        if c.off_map_keys == "zeros":  # the released code: every key counts, read as zeros off the map
            valid = torch.ones_like(valid)
        has_key = valid.any(-1, keepdim=True)  # a group that sampled no occupied cell attends to nothing
        log_mass = mass.clamp_min(MIN_KEY_MASS).log() if c.off_map_keys == "renormalise" else 0.0
        key_bias = torch.where(valid, log_mass, float("-inf"))
        key_bias = torch.where(has_key, key_bias, torch.zeros_like(key_bias))
        constant = key_bias.repeat_interleave(per_group, dim=1).unsqueeze(2)  # [B, heads, 1, K]
        if query is not None:
            q = self.to_q(query).reshape(batch, self.heads, 1, self.head_dim)
            constant = constant + q @ keys_t.transpose(0, 1)

        def unbiased(sl: slice, head: int) -> Tensor:
            count = 1 if query is not None else layout.mask[:, sl].shape[1]
            return constant[:, head].expand(batch, count, -1).clone()

        position: LogitFn = unbiased
        if self.position_bias is not None:
            reach = 2 + 2 * c.offset_range / max(side - 1, 1)
            position = self.position_bias.prepare(layout, key_x, key_y, constant, reach)
        silent = None
        if not bool(has_key.all()):
            silent = has_key.repeat_interleave(per_group, dim=1).to(tokens.dtype)  # [B, heads, 1]

        # training the teacher's default on a bag too large to keep its scores: instead of recomputing whole
        # chunks, one autograd function per head that rebuilds only the scores (fused_head.py)
        fused = isinstance(position, SeparableBias) and query is not None and not keep_maps
        fused = fused and torch.is_grad_enabled() and n > c.query_chunk

        def fused_chunk(sl: slice, weight: Tensor) -> tuple[Tensor, Tensor, None]:
            assert isinstance(position, SeparableBias)
            ix, iy = position.indices(sl)
            p = self.dropout.p if self.dropout.training else 0.0
            out, key_mass = self.to_out.bias, []
            for h in range(self.heads):
                gate = None if silent is None else silent[:, h, None]
                part, mass = separable_head(
                    position.table_x[h], position.table_y[h], values_out[h], ix, iy, weight, gate, p
                )
                out, key_mass = out + part, [*key_mass, mass]
            return out * layout.mask[:, sl].unsqueeze(-1), torch.cat(key_mass, dim=1), None

        def chunk(sl: slice) -> tuple[Tensor, Tensor, Tensor | None]:
            """One chunk of queries, one head at a time: only [B, n, K] scores exist at once."""
            mask = layout.mask[:, sl]
            count = mask.shape[1]
            weight = mask.to(tokens.dtype).unsqueeze(1)  # [B, 1, n]
            if fused:
                return fused_chunk(sl, weight)
            q = None if query is not None else self._queries(tokens[:, sl])  # [heads, B, n, hd]
            out, key_mass, maps = None, [], []
            for h in range(self.heads):
                logits = position(sl, h)
                if q is not None:
                    logits = logits.baddbmm_(q[h], keys_t[h])
                attn = torch.softmax(logits, dim=-1)  # [B, n or 1, K]
                if silent is not None:
                    attn = attn * silent[:, h, None]
                if keep_maps:
                    maps.append(attn.expand(batch, count, -1))
                if attn.shape[1] == count:
                    key_mass.append(weight @ attn)
                else:
                    key_mass.append(attn * weight.sum(-1, keepdim=True))
                dropped = self.dropout.zero(attn)
                if out is None:
                    out = torch.baddbmm(
                        self.to_out.bias.expand(batch, attn.shape[1], dim), dropped, values_out[h]
                    )
                else:
                    out = out.baddbmm_(dropped, values_out[h])
            assert out is not None
            full = torch.stack(maps, dim=1) if keep_maps else None
            return out.expand(batch, count, dim) * mask.unsqueeze(-1), torch.cat(key_mass, dim=1), full

        outs, map_parts, key_mass = [], [], tokens.new_zeros(batch, self.heads, side * side)
        recompute = torch.is_grad_enabled() and n > c.query_chunk and not fused
        for start in range(0, max(n, 1), c.query_chunk):
            sl = slice(start, start + c.query_chunk)
            part, mass_part, map_part = checkpoint(chunk, sl, use_reentrant=False) if recompute else chunk(sl)
            outs.append(part)
            if map_part is not None:
                map_parts.append(map_part)
            key_mass = key_mass + mass_part
        out = torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]
        real = layout.mask.sum(1).clamp_min(1).to(tokens.dtype)[:, None, None]
        key_attention = key_mass / real
        with torch.no_grad():
            patch = self._patch_attention(layout, key_attention, weights, mass, cell)
        maps = torch.cat(map_parts, dim=2) if map_parts else None
        return DeformableOutput(out, key_attention, patch, maps)

    def _patch_attention(
        self, layout: TokenLayout, key_attention: Tensor, weights: Tensor, mass: Tensor, cell: Tensor
    ) -> Tensor:
        """Spread each key's attention back onto the cells it was interpolated from: [B, N]."""
        batch = key_attention.shape[0]
        per_key = key_attention.view(batch, self.groups, -1, key_attention.shape[-1]).mean(2)  # [B, g, K]
        share = weights / mass.clamp_min(MIN_KEY_MASS).unsqueeze(-1) * (mass > MIN_KEY_MASS).unsqueeze(-1)
        received = per_key.new_zeros(layout.num_cells + 1).index_add_(
            0, cell.reshape(-1), (per_key.unsqueeze(-1) * share).reshape(-1)
        )
        counts = torch.cat([layout.cell_count, layout.cell_count.new_ones(1)])
        return (received / counts)[layout.cell] * layout.mask / self.groups
