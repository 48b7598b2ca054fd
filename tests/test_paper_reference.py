"""`preset: reference` reproduces the released models: golden logits made by benchmarks/paper_golden.py
from the released code (seeded weights, seeded input), loaded through the strict checkpoint converter."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from histo.errors import HistoError
from histo.interfaces import ModelDims
from histo.plugins.paper.checkpoint import load_released, read_checkpoint
from histo.plugins.paper.configs import DmfConfig, DmfStudentConfig
from histo.plugins.paper.student import DmfStudent
from histo.plugins.paper.teacher import DmfTeacher

GOLDEN = json.loads((Path(__file__).parent / "data" / "paper_golden.json").read_text(encoding="utf-8"))
FEATURES, CLASSES, VIEWS = 1024, 4, ("10x", "20x")


def _golden_generator() -> Any:
    """benchmarks/paper_golden.py, which drew the golden file's weights: one `seeded_state` for both."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "paper_golden.py"
    spec = importlib.util.spec_from_file_location("paper_golden", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


seeded_state = _golden_generator().seeded_state


def seeded_batch() -> dict[str, Any]:
    g = torch.Generator().manual_seed(GOLDEN["seed"] + 1)
    b, n = GOLDEN["batch"], GOLDEN["patches"]
    features = {view: torch.randn(b, n, FEATURES, generator=g) for view in VIEWS}
    omics = {name: torch.randn(b, size, generator=g) for name, size in GOLDEN["genes"].items()}
    return {
        "features": features,
        "mask": {view: torch.ones(b, n, dtype=torch.bool) for view in VIEWS},
        "omics": omics,
    }


def released_state(name: str) -> dict[str, Tensor]:
    return seeded_state([(k, s) for k, s in GOLDEN[f"{name}_keys"]], GOLDEN[f"{name}_weight_seed"])


def side() -> int:
    return int(GOLDEN["patches"] ** 0.5)  # the released code views each bag as a square map


def teacher(**params: Any) -> DmfTeacher:
    config = DmfConfig.model_validate(
        {"preset": "reference", "attention": {"offset_map_size": side()}, **params}
    )
    return DmfTeacher(ModelDims(FEATURES, GOLDEN["genes"], CLASSES, VIEWS), config)


def student(**params: Any) -> DmfStudent:
    aggregator = {"name": "dpc_knn", "params": {"k": 5, "tokens": 2}}
    config = DmfStudentConfig.model_validate(
        {"preset": "reference", "attention": {"offset_map_size": side()}, "aggregator": aggregator, **params}
    )
    return DmfStudent(ModelDims(FEATURES, {}, CLASSES, VIEWS), config)


def close(ours: Tensor, theirs: list[Any], atol: float = 1e-5) -> float:
    expected = torch.tensor(theirs)
    gap = float((ours - expected).abs().max())
    assert gap < atol, f"max abs difference {gap:.2e} to the released logits"
    return gap


def test_reference_teacher_matches_the_released_logits() -> None:
    model = teacher()
    load_released(model, released_state("teacher"))
    model.eval()
    with torch.no_grad():
        out = model(seeded_batch())
    for view in VIEWS:
        close(out["view_logits"][view], GOLDEN["teacher"][view])
    close(out["logits"], GOLDEN["teacher"]["logits"])
    # the full-map consistency loss is the released one (weight 10,000 magnifies float noise)
    assert float(out["aux_loss"]) == pytest.approx(GOLDEN["teacher"]["consistency"], rel=1e-4, abs=1e-4)


def test_reference_student_matches_the_released_logits() -> None:
    model = student()
    load_released(model, released_state("student"))
    model.eval()
    with torch.no_grad():
        out = model(seeded_batch())
    for view in VIEWS:
        close(out["view_logits"][view], GOLDEN["student"][view])


def test_default_preset_is_a_different_model() -> None:
    """The same weights in the default sampling conventions give other logits: the test can fail."""
    model = teacher(
        attention={"offset_map_size": side(), "lattice": "corners", "off_map_keys": "renormalise"}
    )
    load_released(model, released_state("teacher"))
    model.eval()
    with torch.no_grad():
        out = model(seeded_batch())
    gap = (out["view_logits"]["10x"] - torch.tensor(GOLDEN["teacher"]["10x"])).abs().max()
    assert gap > 1e-4


def same_weights(first: torch.nn.Module, second: torch.nn.Module) -> None:
    a, b = first.state_dict(), second.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_checkpoint_file_converts(tmp_path: Path) -> None:
    """A .pth as the released training saves it (DataParallel prefix, under 'model') loads the same
    weights as the state dict the golden test runs."""
    path = tmp_path / "released.pth"
    torch.save({"model": {f"module.{k}": v for k, v in released_state("student").items()}}, path)
    from_file, direct = student(), student()
    load_released(from_file, read_checkpoint(path), str(path))
    load_released(direct, released_state("student"))
    same_weights(from_file, direct)


def test_the_key_map_is_strict() -> None:
    state = released_state("teacher")
    extra = {**state, "teacher10_net.encoder.extra.weight": torch.zeros(1)}
    with pytest.raises(
        HistoError, match=r"teacher10_net\.encoder\.extra\.weight: in the checkpoint, not used"
    ):
        load_released(teacher(), extra)
    missing = {k: v for k, v in state.items() if "transfusion_layer2.norm.bias" not in k}
    with pytest.raises(HistoError, match=r"needs teacher10_net\.encoder\.transfusion_layer2\.norm\.bias"):
        load_released(teacher(), missing)
    wrong = teacher(dim=64, attention={"offset_map_size": side()})
    with pytest.raises(HistoError, match="shape"):
        load_released(wrong, state)
    one_view = DmfStudent(
        ModelDims(FEATURES, {}, CLASSES, ("10x",)),
        DmfStudentConfig.model_validate({"preset": "reference"}),
    )
    with pytest.raises(HistoError, match="2 released magnification"):
        load_released(one_view, released_state("student"))


def test_preset_fills_only_unset_keys() -> None:
    config = DmfConfig.model_validate({"preset": "reference", "attention": {"lattice": "corners"}})
    assert config.layout == "bag_order" and config.omics_tail == "elu_alphadropout"
    assert config.consistency == "auto"
    assert config.attention.position_bias == "cpb" and config.attention.off_map_keys == "zeros"
    assert config.attention.lattice == "corners"  # set in the recipe: kept
    default = DmfConfig.model_validate({"preset": "default"})
    assert default.attention.lattice == "corners" and default.consistency == "query_mean"
    unset = DmfConfig.model_validate({})  # the reference preset is the default (docs/ablation.md)
    assert unset.preset == "reference" and unset.consistency == "auto" and unset.layout == "bag_order"


def test_import_checkpoint_command_writes_a_loadable_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from histo.cli import main
    from histo.plugins.training.folds import load_model

    checkpoint = tmp_path / "teachers.pth"
    torch.save(released_state("teacher"), checkpoint)
    out = tmp_path / "imported"
    assert main(["import-checkpoint", str(checkpoint), "--model", "dmf", "--out", str(out)]) == 0
    model, card = load_model(out)
    assert card["dims"]["omics_groups"] == GOLDEN["genes"]
    assert card["model"]["fusion"]["params"]["preset"] == "reference"
    direct = teacher()
    load_released(direct, released_state("teacher"))
    same_weights(model.body, direct)  # the golden test shows these weights give the released logits
    wrong = ["import-checkpoint", str(checkpoint), "--model", "dmf_student", "--out", str(tmp_path / "x")]
    assert main(wrong) != 0  # a teacher checkpoint is no student: the error names the file
    assert "teachers.pth holds 1 magnification(s)" in capsys.readouterr().err


def test_grouped_position_bias_equals_the_plain_mlp_with_gradients() -> None:
    """cpb_grouped.py (every group at once, split over threads) gives the reference's
    MLP(signed_log(q - k)) for every group and output, and the same gradients as plain autograd."""
    from histo.plugins.paper import cpb_grouped
    from histo.plugins.paper.deformable import _bias_mlp

    torch.manual_seed(0)
    mlp = _bias_mlp(2, 6, 2).double()
    batch, groups, width, height, keys, n = 2, 3, 5, 4, 7, 9
    col = torch.randint(0, width, (batch, n))
    row = torch.randint(0, height, (batch, n))
    columns = torch.linspace(-1, 1, width, dtype=torch.float64).expand(batch, -1)
    rows = torch.linspace(-1, 1, height, dtype=torch.float64).expand(batch, -1)
    key_x = (torch.rand(batch, groups, keys, dtype=torch.float64) * 3 - 1.5).requires_grad_()
    key_y = (torch.rand(batch, groups, keys, dtype=torch.float64) * 3 - 1.5).requires_grad_()

    def plain() -> Tensor:  # [B, G, n, K, outputs]
        dx = columns.gather(1, col)[:, None, :, None] - key_x[:, :, None, :]
        dy = rows.gather(1, row)[:, None, :, None] - key_y[:, :, None, :]
        return mlp(cpb_grouped._signed_log(torch.stack([dx, dy], -1)))

    params = [key_x, key_y, *mlp.parameters()]
    old_pairs, old_threads = cpb_grouped.PIECE_PAIRS, torch.get_num_threads()
    cpb_grouped.PIECE_PAIRS = 4 * keys  # several pieces per (bag, group), the last one short
    torch.set_num_threads(2)  # two shares, each on its own thread
    try:
        tables = cpb_grouped.grouped_tables(mlp, columns, rows, key_x, key_y)
        grouped = cpb_grouped.grouped_cpb(mlp, tables, col, row)
        weights = torch.randn_like(grouped)
        got = torch.autograd.grad((grouped * weights).sum(), params)
        assert torch.get_num_threads() == 2  # the threads setting is restored
    finally:
        cpb_grouped.PIECE_PAIRS = old_pairs
        torch.set_num_threads(old_threads)
    expected = plain()
    want = torch.autograd.grad((expected * weights).sum(), params)
    assert grouped.shape == expected.shape
    assert torch.allclose(grouped, expected, atol=1e-12)
    for a, b in zip(got, want, strict=True):
        assert torch.allclose(a, b, atol=1e-10)


def test_cosine_steps_is_the_released_per_batch_schedule() -> None:
    """The released loop steps CosineAnnealingLR(T_max=epochs=10) after every batch: a 20-step cycle."""
    from histo.plugins.training.config import OptimConfig
    from histo.plugins.training.trainer import make_schedule

    ours_param, theirs_param = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    config = OptimConfig.model_validate({"name": "adam", "weight_decay": 0.1, "schedule": "cosine_steps"})
    ours_opt = torch.optim.Adam([ours_param], lr=2e-4)
    theirs_opt = torch.optim.Adam([theirs_param], lr=2e-4)
    ours = make_schedule(ours_opt, config, epochs=10)
    theirs = torch.optim.lr_scheduler.CosineAnnealingLR(theirs_opt, T_max=10, eta_min=0)
    rates = []
    for _ in range(45):
        assert ours_opt.param_groups[0]["lr"] == pytest.approx(theirs_opt.param_groups[0]["lr"], abs=1e-12)
        rates.append(ours_opt.param_groups[0]["lr"])
        ours_opt.step()
        theirs_opt.step()
        ours.step()
        theirs.step()
    assert rates[10] == pytest.approx(0, abs=1e-12) and rates[20] == pytest.approx(2e-4)


def test_auto_consistency_is_the_released_loss_where_defined_and_query_mean_elsewhere() -> None:
    model = teacher()
    load_released(model, released_state("teacher"))
    model.eval()
    batch = seeded_batch()
    with torch.no_grad():
        same_n = float(model(batch)["aux_loss"])
        model.config = model.config.model_copy(update={"consistency": "full_map"})
        assert float(model(batch)["aux_loss"]) == same_n  # equal bag sizes: the full maps, as released
        # 20x holding fewer patches than 10x: undefined for the released loss, query-averaged under auto
        n = GOLDEN["patches"] - 15
        uneven = {**batch, "features": {**batch["features"], "20x": batch["features"]["20x"][:, :n]}}
        uneven["mask"] = {**batch["mask"], "20x": batch["mask"]["20x"][:, :n]}
        with pytest.raises(HistoError, match="different patch counts"):
            model(uneven)
        model.config = model.config.model_copy(update={"consistency": "query_mean"})
        query_mean = float(model(uneven)["aux_loss"])
        model.config = model.config.model_copy(update={"consistency": "auto"})
        assert float(model(uneven)["aux_loss"]) == query_mean
