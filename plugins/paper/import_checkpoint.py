"""`histo import-checkpoint`: a released checkpoint of the paper's code -> a histo model folder
(model.json + best.pt, what `histo.plugins.training.folds.load_model` and a train stage's `init:` read).

The model's sizes are read from the checkpoint itself (feature width, genes per group, classes, how many
magnifications); the model gets `preset: reference`, so it computes what the released code computed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from histo.errors import HistoError

if TYPE_CHECKING:  # torch is imported when the command runs, so that `histo --help` stays fast
    from histo.interfaces import ModelDims


def _shape(state: dict[str, Any], key: str, path: Path) -> tuple[int, ...]:
    if key not in state:
        raise HistoError(f"{path}: no tensor {key!r}; is it a released TeachersNet / StudentsNet checkpoint?")
    return tuple(state[key].shape)


def infer_dims(
    state: dict[str, Any], kind: str, path: Path, groups: list[str], views: list[str]
) -> tuple[ModelDims, int]:
    """(dims, model width) of the released model the state dict holds."""
    from histo.interfaces import ModelDims

    from .checkpoint import OMICS, STUDENT_VIEWS, TEACHER_VIEWS

    state = {k.removeprefix("module."): v for k, v in state.items()}
    names = TEACHER_VIEWS if kind == "dmf" else STUDENT_VIEWS
    present = [n + "." for n in names if any(k.startswith(n + ".") for k in state)] or [""]
    if len(views) != len(present):
        raise HistoError(
            f"{path} holds {len(present)} magnification(s); --views lists {len(views)} ({', '.join(views)})"
        )
    first = present[0]
    dim, features = _shape(state, f"{first}_fc1.0.weight", path)
    classes = _shape(state, f"{first}classifier.weight", path)[0]
    omics: dict[str, int] = {}
    if kind == "dmf":
        if len(groups) != 2:
            raise HistoError(
                f"--groups: the released teacher has two gene groups (tumour, immune), got {groups}"
            )
        for group, net in zip(groups, OMICS, strict=True):
            omics[group] = _shape(state, f"{net}.encoder.0.0.weight", path)[1]
    return ModelDims(features, omics, classes, tuple(views)), dim


def import_checkpoint(
    path: Path, kind: str, out: Path, groups: list[str], views: list[str], tokens: int = 2
) -> Path:
    """Convert `path` into the folder `out` (model.json, best.pt); returns `out`."""
    import torch

    from histo.io import atomic_path
    from histo.plugins.training.assemble import build_model
    from histo.plugins.training.config import ModelConfig
    from histo.plugins.training.folds import save_model_card

    from .checkpoint import load_released, read_checkpoint

    state = read_checkpoint(path)
    dims, dim = infer_dims(state, kind, path, groups, views)
    params: dict[str, object] = {"preset": "reference", "dim": dim}
    if kind == "dmf":
        model_config = ModelConfig.model_validate({"fusion": {"name": "dmf", "params": params}})
    else:
        params["aggregator"] = {"name": "dpc_knn", "params": {"k": 5, "tokens": tokens}}
        model_config = ModelConfig.model_validate(
            {"slide_encoder": {"name": "dmf_student", "params": params}}
        )
    model = build_model(model_config, dims)
    load_released(model.body, state, str(path))
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "best.pt") as tmp:
        torch.save({"model": model.state_dict(), "epoch": 0, "source": str(path)}, tmp)
    save_model_card(out / "model.json", model_config, dims, {g: [] for g in dims.omics_groups})
    return out


def add_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "import-checkpoint",
        help="convert a checkpoint of the paper's released code into a histo model folder",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", type=Path, help="released .pth (TeachersNet / StudentsNet state dict)")
    p.add_argument("--model", choices=["dmf", "dmf_student"], required=True, help="teacher or student")
    p.add_argument("--out", "-o", type=Path, required=True, help="folder to write model.json and best.pt")
    p.add_argument(
        "--groups",
        nargs=2,
        default=["tumour", "microenvironment"],
        help="our names of the released gene groups",
    )
    p.add_argument("--views", nargs="+", default=["10x", "20x"], help="our names of its magnifications")
    p.add_argument("--tokens", type=int, default=2, help="student: dpc_knn output tokens (the paper: 2)")
    p.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    out = import_checkpoint(args.checkpoint, args.model, args.out, args.groups, args.views, args.tokens)
    card = json.loads((out / "model.json").read_text(encoding="utf-8"))
    print(f"wrote {out / 'best.pt'} and {out / 'model.json'} (dims {card['dims']})")
    return 0
