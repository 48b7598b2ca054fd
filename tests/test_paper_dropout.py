"""The deformable attention's dropout: same Bernoulli, fixed by torch's seed, redrawn identically when a
checkpointed chunk is recomputed."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from histo.plugins.paper import deformable
from histo.plugins.paper.configs import DeformableConfig
from histo.plugins.paper.deformable import DeformableAttention
from histo.plugins.paper.dropout import AttentionDropout, keep_mask, keep_mask_and_bits, unpack_keep
from histo.plugins.paper.layout import build_layout

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_rate_is_one_minus_p(p: float) -> None:
    torch.manual_seed(0)
    n = 1_000_000
    kept = keep_mask(torch.Size([n]), p, torch.device("cpu"), torch.float32)
    assert set(kept.unique().tolist()) <= {0.0, 1.0}
    sd = (p * (1 - p) / n) ** 0.5
    assert abs(float(kept.mean()) - (1 - p)) < 5 * sd
    # neighbouring draws are independent (no pattern within the 64-bit words the bits come from)
    both = float((kept[0::2] * kept[1::2]).mean())
    assert abs(both - (1 - p) ** 2) < 5 * ((1 - p) ** 2 * (1 - (1 - p) ** 2) / (n // 2)) ** 0.5


def test_masks_follow_torch_seed() -> None:
    shape = torch.Size([64, 144])
    torch.manual_seed(3)
    a = keep_mask(shape, 0.1, torch.device("cpu"), torch.float32)
    b = keep_mask(shape, 0.1, torch.device("cpu"), torch.float32)
    torch.manual_seed(3)
    again = keep_mask(shape, 0.1, torch.device("cpu"), torch.float32)
    assert torch.equal(a, again)
    assert not torch.equal(a, b)


@settings(max_examples=60, deadline=None)
@given(
    shape=st.lists(st.integers(1, 37), min_size=1, max_size=3),
    p=st.floats(0.01, 0.99),
    seed=st.integers(0, 2**63 - 2),
)
def test_packed_mask_is_the_drawn_mask(shape: list[int], p: float, seed: int) -> None:
    """The bits a fused head keeps for its backward pass unpack to the mask its seed draws, at every
    size (also where the count is not a multiple of 8) and dtype."""
    size = torch.Size(shape)
    cpu = torch.device("cpu")
    for dtype in (torch.float32, torch.float64):
        drawn = keep_mask(size, p, cpu, dtype, seed)
        mask, bits = keep_mask_and_bits(size, p, cpu, dtype, seed)
        assert bits is not None and bits.nbytes == (size.numel() + 7) // 8
        unpacked = unpack_keep(bits, size, dtype)
        assert mask.dtype == unpacked.dtype == dtype and mask.shape == unpacked.shape == size
        assert torch.equal(mask, drawn) and torch.equal(unpacked, drawn)


def test_attention_dropout_acts_as_nn_dropout() -> None:
    layer = AttentionDropout(0.25)
    x = torch.ones(200_000)
    y = layer(x)
    values = y.unique()
    assert len(values) == 2 and values[0] == 0 and float(values[1]) == pytest.approx(1 / 0.75)
    assert abs(float(y.mean()) - 1) < 0.01
    assert layer.scale() == pytest.approx(1 / 0.75)
    layer.eval()
    assert torch.equal(layer(x), x) and torch.equal(layer.zero(x), x) and layer.scale() == 1


def test_checkpointed_chunks_redraw_the_same_masks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks recomputed in the backward pass must drop the same weights as the forward pass did:
    the gradients equal those of the same run kept in memory (no recompute)."""
    torch.manual_seed(0)
    n = 300
    cells = torch.randperm(40 * 40)[:n]
    coords = torch.stack([cells % 40, cells // 40], dim=1).float()[None] * 256
    mask = torch.ones(1, n, dtype=torch.bool)
    layout = build_layout(mask, coords, "coords")
    config = DeformableConfig(heads=4, head_dim=8, offset_groups=2, offset_map_size=20, query_chunk=64)
    attention = DeformableAttention(32, config)
    attention.train()
    tokens = torch.randn(1, n, 32)

    def grads(query: torch.Tensor | None) -> list[torch.Tensor]:
        attention.zero_grad(set_to_none=True)
        torch.manual_seed(7)
        result = attention(tokens, layout, query=query)
        (result.out.square().sum() + result.key_attention.sum()).backward()
        return [p.grad.clone() for p in attention.parameters() if p.grad is not None]

    for query in (None, torch.randn(1, 32)):
        recomputed = grads(query)
        monkeypatch.setattr(deformable, "checkpoint", lambda fn, *args, **_: fn(*args))
        kept = grads(query)
        monkeypatch.undo()
        assert len(recomputed) == len(kept) > 0
        for a, b in zip(recomputed, kept, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_fused_cross_attention_head_matches_autograd(dropout: float) -> None:
    """The teacher's fused training path (separable bias, shared query) gives the outputs and gradients
    of the unfused one (forced here by asking for the full maps), masks included."""
    torch.manual_seed(0)
    n = 300
    cells = torch.randperm(40 * 40)[:n]
    coords = torch.stack([cells % 40, cells // 40], dim=1).float()[None].expand(2, -1, -1) * 256
    mask = torch.ones(2, n, dtype=torch.bool)
    mask[1, 250:] = False  # padding in the second bag
    layout = build_layout(mask, coords, "coords")
    config = DeformableConfig(
        heads=4, head_dim=8, offset_groups=2, offset_map_size=20, query_chunk=128, dropout=dropout
    )
    attention = DeformableAttention(32, config)
    attention.train()
    tokens, query = torch.randn(2, n, 32), torch.randn(2, 32, requires_grad=True)

    def run(keep_maps: bool) -> list[torch.Tensor]:
        attention.zero_grad(set_to_none=True)
        query.grad = None
        torch.manual_seed(7)
        result = attention(tokens, layout, query=query, keep_maps=keep_maps)
        weights = torch.linspace(0, 1, result.out.numel()).view_as(result.out)
        (result.out * weights).sum().add(result.key_attention.square().sum()).backward()
        grads = [p.grad.clone() for p in attention.parameters() if p.grad is not None]
        assert query.grad is not None
        return [result.out.detach(), result.key_attention.detach(), query.grad.clone(), *grads]

    fused, unfused = run(False), run(True)
    assert len(fused) == len(unfused) > 3
    for a, b in zip(fused, unfused, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
