"""Load a checkpoint of the paper's released code (helenypzhang/Disentangled-Multimodal-Learning) into
`dmf` / `dmf_student`, with a strict key map: every released tensor is either mapped or one of the few
the released forward pass never reads (listed in UNUSED), every one of ours is filled, shapes match.

Released teacher checkpoints hold a `TeachersNet` (omic_net_tumor, omic_net_immune, teacher10_net,
teacher20_net), students a `StudentsNet` (student10_net, student20_net); a bare `TeacherNet` /
`StudentNet` state dict (one magnification) is accepted too. Released group i (tumour, immune) maps to
our i-th gene group and released magnification i (10x, 20x) to our i-th view, so list them in that
order in the recipe. Use the models with `preset: reference` to get the released logits.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from histo.errors import HistoError

Convert = Callable[[Tensor], Tensor]

# tensors of the released modules that their forward pass never reads
UNUSED = (
    re.compile(r"^omic_net_\w+\.(classifier\.0\.(weight|bias)|output_range|output_shift)$"),
    re.compile(r"^(student\d+_net\.)?(norm|pooler1\.dense)\.(weight|bias)$"),  # StudentNet: left unused
)
TEACHER_VIEWS = ("teacher10_net", "teacher20_net")
STUDENT_VIEWS = ("student10_net", "student20_net")
OMICS = ("omic_net_tumor", "omic_net_immune")


def _same(t: Tensor) -> Tensor:
    return t


def _grouped_conv(groups: int) -> Convert:
    """Grouped 1x1 conv weight [out, in/g, 1, 1] -> our GroupProjection weight [g, in/g, out/g]."""

    def convert(t: Tensor) -> Tensor:
        return t.flatten(1).view(groups, -1, t.shape[1]).transpose(1, 2).contiguous()

    return convert


def _conv1x1(t: Tensor) -> Tensor:
    return t.flatten(1)


def _deformable(ours: str, theirs: str, groups: int) -> dict[str, tuple[str, Convert]]:
    grouped = _grouped_conv(groups)
    pairs = {
        "to_q.weight": ("to_q.weight", grouped),
        "to_k.weight": ("to_k.weight", grouped),
        "to_v.weight": ("to_v.weight", grouped),
        "to_out.weight": ("to_out.weight", _conv1x1),
        "to_out.bias": ("to_out.bias", _same),
        "offset_net.0.weight": ("to_offsets.0.weight", _same),
        "offset_net.0.bias": ("to_offsets.0.bias", _same),
        "offset_net.2.weight": ("to_offsets.2.weight", _same),
    }
    for layer, released in (("0", "mlp.0.0"), ("2", "mlp.1.0"), ("4", "mlp.2")):
        for kind in ("weight", "bias"):
            pairs[f"position_bias.mlp.{layer}.{kind}"] = (f"rel_pos_bias.{released}.{kind}", _same)
    return {f"{ours}.{k}": (f"{theirs}.{name}", fn) for k, (name, fn) in pairs.items()}


def _linear(ours: str, theirs: str) -> dict[str, tuple[str, Convert]]:
    return {f"{ours}.{k}": (f"{theirs}.{k}", _same) for k in ("weight", "bias")}


def teacher_key_map(model: nn.Module, prefixes: list[str]) -> dict[str, tuple[str, Convert]]:
    """Our key -> (released key, conversion) for a DmfTeacher; prefixes: one released prefix per view."""
    groups: list[str] = list(model.groups)  # type: ignore[arg-type]
    views: list[str] = list(model.views)  # type: ignore[arg-type]
    if len(groups) != 2:
        raise HistoError(
            f"the released teacher has two gene groups (tumour, immune); this model has {groups}"
        )
    offset_groups = model.config.attention.offset_groups  # type: ignore[union-attr]
    keys: dict[str, tuple[str, Convert]] = {}
    for i, g in enumerate(groups):
        snn = f"{OMICS[i]}.encoder"
        for block in range(3):
            keys |= _linear(f"omics.{g}.blocks.{block}.0", f"{snn}.{block}.0")
        keys |= _linear(f"omics.{g}.out", f"{snn}.3.0")
    for view, p in zip(views, prefixes, strict=True):
        b = f"branches.{view}"
        keys |= _linear(f"{b}.project.0", f"{p}_fc1.0")
        keys |= _linear(f"{b}.norm", f"{p}encoder.norm")
        keys |= _linear(f"{b}.fuse", f"{p}encoder.fusion_layer.fusion_layer")
        keys |= _linear(f"{b}.out_norm", f"{p}norm")
        keys |= _linear(f"heads.{view}", f"{p}classifier")
        for i, g in enumerate(groups, start=1):
            keys |= _deformable(f"{b}.cross.{g}", f"{p}encoder.attn2d_omic{i}", offset_groups)
            layer = f"{p}encoder.transfusion_layer{i}"
            keys |= _linear(f"{b}.readout.{g}.norm", f"{layer}.norm")
            keys |= _linear(f"{b}.readout.{g}.pool", f"{layer}.pooler.dense")
            keys |= _linear(f"{b}.poolers.{g}", f"{p}pooler{i}.dense")
            attention = f"{b}.readout.{g}.attention"
            for k in ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"):
                keys[f"{attention}.{k}"] = (f"{layer}.multihead_attn.{k}", _same)
    return keys


def student_key_map(model: nn.Module, prefixes: list[str]) -> dict[str, tuple[str, Convert]]:
    """Our key -> (released key, conversion) for a DmfStudent with the dpc_knn aggregator."""
    offset_groups = model.config.attention.offset_groups  # type: ignore[union-attr]
    keys: dict[str, tuple[str, Convert]] = {}
    for view, p in zip(model.views, prefixes, strict=True):  # type: ignore[call-overload]
        b = f"branches.{view}"
        keys |= _linear(f"{b}.project.0", f"{p}_fc1.0")
        keys |= _linear(f"{b}.norm", f"{p}encoder.norm")
        keys |= _deformable(f"{b}.attention", f"{p}encoder.attn2d", offset_groups)
        keys |= _linear(f"{b}.aggregator.scorer.norm", f"{p}encoder.cluster_merge.norm")
        keys |= _linear(f"{b}.aggregator.scorer.score", f"{p}encoder.cluster_merge.score")
        keys |= _linear(f"heads.{view}", f"{p}classifier")
    return keys


def _prefixes(state: Mapping[str, Any], names: tuple[str, ...], views: list[str]) -> list[str]:
    present = [n for n in names if any(k.startswith(n + ".") for k in state)]
    if not present:  # a bare TeacherNet / StudentNet: one magnification
        if len(views) != 1:
            raise HistoError(
                f"the checkpoint holds one released magnification (no {' / '.join(names)} prefix), but the "
                f"model has views {views}: build it with one magnification"
            )
        return [""]
    if len(present) != len(views):
        raise HistoError(
            f"the checkpoint holds {len(present)} released magnification(s) ({', '.join(present)}) but the "
            f"model has {len(views)} ({', '.join(views)}); list as many magnifications, 10x first"
        )
    return [n + "." for n in present]


def load_released(model: nn.Module, state: Mapping[str, Any], source: str = "checkpoint") -> None:
    """Copy a released state dict into `model` (a DmfTeacher or a DmfStudent), strictly.

    Raises HistoError naming every released tensor left over, every tensor of ours not filled and every
    shape that differs. `source` names the checkpoint in those messages.
    """
    from .student import DmfStudent
    from .teacher import DmfTeacher

    state = {k.removeprefix("module."): v for k, v in state.items()}  # DataParallel / DDP checkpoints
    views = list(model.views)  # type: ignore[arg-type]
    if isinstance(model, DmfTeacher):
        if model.omics_encoder is not None:
            raise HistoError("load_released: the released teacher uses its own SNNs; leave omics_encoder out")
        key_map = teacher_key_map(model, _prefixes(state, TEACHER_VIEWS, views))
    elif isinstance(model, DmfStudent):
        key_map = student_key_map(model, _prefixes(state, STUDENT_VIEWS, views))
    else:
        raise HistoError(f"load_released: expected a dmf or dmf_student model, got {type(model).__name__}")
    ours = model.state_dict()
    problems = [f"{k}: not in ours" for k in key_map if k not in ours]
    problems += [f"{k}: not filled (no released tensor maps to it)" for k in ours if k not in key_map]
    used = {theirs for theirs, _ in key_map.values()}
    problems += [
        f"{k}: in the {source}, not used"
        for k in state
        if k not in used and not any(p.match(k) for p in UNUSED)
    ]
    converted: dict[str, Tensor] = {}
    for k, (theirs, convert) in key_map.items():
        if theirs not in state:
            problems.append(f"{k}: needs {theirs}, missing from the {source}")
            continue
        value = convert(torch.as_tensor(state[theirs]))
        if k in ours and value.shape != ours[k].shape:
            problems.append(f"{k}: shape {tuple(ours[k].shape)}, {theirs} gives {tuple(value.shape)}")
        converted[k] = value
    if problems:
        listed = "\n  ".join(problems[:40]) + ("\n  ..." if len(problems) > 40 else "")
        raise HistoError(
            f"the {source} does not map onto this model ({len(problems)} problems):\n  {listed}\n"
            "check the model's size (dim, heads, gene-group sizes, classes, magnifications) against the "
            "released configuration"
        )
    model.load_state_dict(converted, strict=True)


def read_checkpoint(path: Path) -> dict[str, Tensor]:
    """A released .pth: the state dict itself, or a dict holding it under 'model' / 'state_dict'."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise HistoError(f"cannot read checkpoint {path}: {error}") from error
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict) or not all(isinstance(v, Tensor) for v in data.values()):
        raise HistoError(f"{path} holds no state dict (a mapping of names to tensors)")
    return data
