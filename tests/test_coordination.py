"""Confidence-guided gradient coordination: hand-computed projections, model discovery, two processes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from histo.errors import HistoError
from histo.manager import Plugins
from histo.plugins.method import histo_gradient_coordinators
from histo.plugins.method.coordination import coordinate_blocks, subspace_body, subspace_confidence
from histo.plugins.training.assemble import Predictor

SPECS = {spec.name: spec for spec in histo_gradient_coordinators()}
GROUPS = ["tumour", "microenvironment"]


def coordinator(mode: str = "plain") -> Any:
    return SPECS["confidence"].build({"mode": mode})


class SubspaceBody(nn.Module):
    """The teacher's surface as the coordinator sees it: per-view heads over concatenated subspaces."""

    produces_logits = True

    def __init__(self, views: tuple[str, ...] = ("10x",), width: int = 2, classes: int = 2) -> None:
        super().__init__()
        self.groups = list(GROUPS)
        self.heads = nn.ModuleDict({v: nn.Linear(width * len(GROUPS), classes) for v in views})

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        subspaces = {v: {g: batch[g] for g in self.groups} for v in self.heads}
        view_logits = {v: self.heads[v](torch.cat([batch[g] for g in self.groups], 1)) for v in self.heads}
        first = next(iter(self.heads))
        return {"subspaces": subspaces, "view_logits": view_logits, "logits": view_logits[first]}


def confident_body(confident: str) -> tuple[SubspaceBody, dict[str, Any]]:
    """Head and features such that `confident` predicts the labels well and the other group is at chance."""
    body = SubspaceBody()
    with torch.no_grad():
        body.heads["10x"].weight.zero_()
        body.heads["10x"].bias.zero_()
        columns = slice(0, 2) if confident == "tumour" else slice(2, 4)
        body.heads["10x"].weight[:, columns] = 5 * torch.eye(2)
    y = torch.tensor([0, 1, 1])
    features = F.one_hot(y, 2).float()
    return body, {"tumour": features, "microenvironment": features, "target": y}


def set_grad(body: SubspaceBody, rows: list[list[float]]) -> None:
    body.heads["10x"].weight.grad = torch.tensor(rows)


# row 0 conflicts: g_t = [1, 0], g_m = [-1, 1] (cos < 0); row 1 does not: g_t = [1, 1], g_m = [1, 0]
ROWS = [[1.0, 0.0, -1.0, 1.0], [1.0, 1.0, 1.0, 0.0]]
R = math.sqrt(0.5)
EXPECTED = {  # (mode, more confident group) -> row 0 after coordination, by hand
    ("plain", "microenvironment"): [0.5, 0.5, -1.0, 1.0],  # g_t - (g_t.g_m/|g_m|^2) g_m
    ("plain", "tumour"): [1.0, 0.0, 0.0, 1.0],  # g_m - (g_m.g_t/|g_t|^2) g_t
    ("reference", "microenvironment"): [0.0, R, -1.0, 1.0],  # reflection, rescaled to |[0.5, 0.5]|
    ("reference", "tumour"): [1.0, 0.0, R, R],  # [1, 1] rescaled to |[0, 1]|
}


@pytest.mark.parametrize(("mode", "confident"), list(EXPECTED))
def test_hand_computed_projection(mode: str, confident: str) -> None:
    body, batch = confident_body(confident)
    outputs = body(batch)
    set_grad(body, ROWS)
    coordinator(mode).coordinate(Predictor(body, 2), outputs, batch["target"])
    grad = body.heads["10x"].weight.grad
    assert torch.allclose(grad[0], torch.tensor(EXPECTED[mode, confident]), atol=1e-6)
    assert torch.equal(grad[1], torch.tensor(ROWS[1]))  # no conflict: unchanged
    weaker = slice(0, 2) if confident == "microenvironment" else slice(2, 4)
    stronger = slice(2, 4) if confident == "microenvironment" else slice(0, 2)
    assert torch.equal(grad[0, stronger], torch.tensor(ROWS[0])[stronger])  # the confident side is kept
    if mode == "plain":  # the projected block is orthogonal to the other
        assert float(grad[0, weaker] @ grad[0, stronger]) == pytest.approx(0.0, abs=1e-6)


def test_reference_mode_matches_the_released_formula() -> None:
    g, h = torch.tensor([0.3, -2.0, 1.1]), torch.tensor([-1.0, 0.5, 0.2])
    assert float(g @ h) < 0
    # the released code: g1 = g - p; perpen = g1 - p; g = |g1| * perpen / |perpen|
    p = (g @ h) / h.norm() ** 2 * h
    g1 = g - p
    released = g1.norm() * (g1 - p) / (g1 - p).norm()
    blocks = torch.stack([g, h]).unsqueeze(0)  # [C=1, G=2, E=3]; group 0 less confident
    result = coordinate_blocks(blocks, torch.tensor([1.0, 2.0]), mode="reference")
    assert torch.allclose(result[0, 0], released, atol=1e-6)
    assert torch.equal(result[0, 1], h)


def test_equal_confidence_changes_nothing() -> None:
    blocks = torch.tensor(ROWS).view(2, 2, 2)
    assert torch.equal(coordinate_blocks(blocks, torch.tensor([1.5, 1.5])), blocks)


def test_three_groups_pairwise_rule() -> None:
    a, b, c = [1.0, 0.0], [-1.0, 1.0], [-1.0, -1.0]
    blocks = torch.tensor([[c, b, a]])  # confidences 1, 2, 3: a most confident
    result = coordinate_blocks(blocks, torch.tensor([1.0, 2.0, 3.0]))
    assert torch.allclose(result[0, 2], torch.tensor(a))  # the most confident is never changed
    assert torch.allclose(result[0, 1], torch.tensor([0.0, 1.0]))  # b off a
    # c off a -> [0, -1], then off b's original [-1, 1] -> [-0.5, -0.5]
    assert torch.allclose(result[0, 0], torch.tensor([-0.5, -0.5]))


def test_confidence_uses_the_bin_of_survival_targets() -> None:
    body, batch = confident_body("tumour")
    features = [batch[g] for g in GROUPS]
    head = body.heads["10x"]
    as_class = subspace_confidence(features, head.weight, head.bias, batch["target"])
    survival = torch.stack([batch["target"].float(), torch.rand(3), torch.ones(3)], 1)
    coordinator().coordinate(body, body(batch), survival)  # accepted
    from histo.plugins.method.coordination import class_targets

    assert torch.equal(class_targets(survival, 2), batch["target"])
    expected_t = 3 * torch.sigmoid(torch.tensor(5.0))  # softmax([5, 0]) at the true class
    assert torch.allclose(as_class, torch.tensor([expected_t, 1.5]), atol=1e-6)


def test_finds_heads_through_wrappers_and_explains_their_absence() -> None:
    body = SubspaceBody()

    class Wrapper(nn.Module):
        def __init__(self, module: nn.Module) -> None:
            super().__init__()
            self.module = module

    assert subspace_body(Wrapper(Predictor(body, 2))) is body
    with pytest.raises(HistoError, match="subspace heads"):
        coordinator().coordinate(nn.Linear(2, 2), {}, torch.zeros(2))
    with pytest.raises(HistoError, match="lacks view"):
        coordinator().coordinate(body, {"subspaces": {"20x": {}}}, torch.zeros(2))
    cox = SubspaceBody(classes=1)
    with pytest.raises(HistoError, match="one output"):
        coordinator().coordinate(cox, cox(confident_body("tumour")[1]), torch.zeros(3, 3))


def test_none_leaves_gradients() -> None:
    body, batch = confident_body("tumour")
    set_grad(body, ROWS)
    SPECS["none"].build().coordinate(body, body(batch), batch["target"])
    assert torch.equal(body.heads["10x"].weight.grad, torch.tensor(ROWS))


# -- two processes -------------------------------------------------------------------------------

def rank_batch(rank: int) -> dict[str, Any]:
    """Rank 0: tumour informative, microenvironment misleading; rank 1 the other way round."""
    y = torch.tensor([0, 1, 0, 1])
    onehot = F.one_hot(y, 2).float()
    if rank == 0:
        return {"tumour": 2 * onehot, "microenvironment": -0.5 * onehot, "target": y}
    return {"tumour": -1 * onehot, "microenvironment": 2 * onehot, "target": y}


def fixed_body() -> SubspaceBody:
    body = SubspaceBody()
    with torch.no_grad():
        body.heads["10x"].weight.copy_(torch.tensor([[1.0, -0.5, 0.8, 0.1], [-0.3, 1.2, 0.2, 0.9]]))
        body.heads["10x"].bias.zero_()
    return body


def backward(body: SubspaceBody, batch: dict[str, Any]) -> dict[str, Any]:
    outputs = body(batch)
    F.cross_entropy(outputs["logits"], batch["target"]).backward()
    return outputs


def _worker(rank: int, folder: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=2)
    try:
        body = fixed_body()
        batch = rank_batch(rank)
        outputs = backward(body, batch)
        grad = body.heads["10x"].weight.grad
        dist.all_reduce(grad)  # what DDP does before the coordinator runs
        grad /= 2
        coordinator().coordinate(body, outputs, batch["target"])
        torch.save(grad.clone(), Path(folder) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def coordinated_single_process(confidence_from: dict[str, Any] | None = None) -> torch.Tensor:
    """Full batch (both ranks' samples) in one process; optionally confidences from other outputs."""
    body = fixed_body()
    keys = ("tumour", "microenvironment", "target")
    both = {k: torch.cat([rank_batch(0)[k], rank_batch(1)[k]]) for k in keys}
    outputs = backward(body, both)
    source = both if confidence_from is None else confidence_from
    coordinator().coordinate(body, body(source) if confidence_from else outputs, source["target"])
    return body.heads["10x"].weight.grad


@pytest.mark.slow
def test_two_processes_step_alike(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    # precondition: each rank alone would rank the subspaces differently, so summing matters
    head = fixed_body().heads["10x"]
    batches = [rank_batch(r) for r in (0, 1)]
    local = [
        subspace_confidence([b[g] for g in GROUPS], head.weight, head.bias, b["target"])
        for b in batches
    ]
    assert (local[0][0] > local[0][1]) != (local[1][0] > local[1][1])
    assert not torch.allclose(coordinated_single_process(), coordinated_single_process(rank_batch(0)))

    mp.spawn(_worker, args=(str(tmp_path),), nprocs=2, join=True)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert torch.equal(rank0, rank1)
    assert torch.allclose(rank0, coordinated_single_process(), atol=1e-6)


def test_registered_with_the_default_plugins(histo_plugins: Plugins) -> None:
    registry = histo_plugins.registry("gradient_coordinators")
    assert {"confidence", "none"} <= set(registry.names())
    assert registry.build("confidence", {"mode": "reference"}).mode == "reference"
