"""A model card written before `preset` existed still loads as the model that was trained."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from histo.interfaces import ModelDims
from histo.plugins.paper.teacher import DmfTeacher
from histo.plugins.training.assemble import build_model
from histo.plugins.training.config import ModelConfig
from histo.plugins.training.folds import load_model, save_model_card

DIMS = ModelDims(16, {"tumour": 6, "microenvironment": 5}, 3, ("10x", "20x"))
SMALL = {"dim": 16, "attention": {"heads": 2, "head_dim": 8, "offset_groups": 2, "offset_map_size": 8}}
# keys that appeared with the reference preset; a card from before it has none of them
LATER_KEYS = ("preset", "consistency", "omics_tail")
LATER_ATTENTION_KEYS = ("lattice", "off_map_keys")


def _batch() -> dict[str, object]:
    g = torch.Generator().manual_seed(3)
    features = {v: torch.randn(2, 30, 16, generator=g) for v in DIMS.magnifications}
    omics = {k: torch.randn(2, n, generator=g) for k, n in DIMS.omics_groups.items()}
    mask = {v: torch.ones(2, 30, dtype=torch.bool) for v in DIMS.magnifications}
    cells = torch.stack(torch.meshgrid(torch.arange(6), torch.arange(5), indexing="ij"), -1).flatten(0, 1)
    coords = {v: (cells * 256).float().expand(2, -1, -1) for v in DIMS.magnifications}
    return {"features": features, "mask": mask, "omics": omics, "coords": coords}


def test_a_card_without_preset_loads_histos_own_variant(tmp_path: Path) -> None:
    config = ModelConfig.model_validate({"fusion": {"name": "dmf", "params": {"preset": "default", **SMALL}}})
    torch.manual_seed(0)
    model = build_model(config, DIMS).eval()
    save_model_card(tmp_path / "model.json", config, DIMS, {g: [] for g in DIMS.omics_groups})
    torch.save({"model": model.state_dict()}, tmp_path / "best.pt")
    card = json.loads((tmp_path / "model.json").read_text())
    params = card["model"]["fusion"]["params"]
    assert params["preset"] == "default"
    for key in LATER_KEYS:
        params.pop(key, None)
    for key in LATER_ATTENTION_KEYS:
        params["attention"].pop(key, None)
    (tmp_path / "model.json").write_text(json.dumps(card))

    loaded, _ = load_model(tmp_path)
    fusion = next(m for m in loaded.modules() if isinstance(m, DmfTeacher))
    assert fusion.config.preset == "default" and fusion.config.attention.lattice == "corners"
    with torch.no_grad():
        assert torch.equal(loaded(_batch())["logits"], model(_batch())["logits"])
