"""Rename published checkpoints onto histo's module names, and say which keys are knowingly left out.

Each map takes the file's state dict and returns (renamed state, keys deliberately dropped). A key
neither renamed nor dropped stays under its own name, so the strict load reports it as unexpected
rather than silently ignoring it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch

State = dict[str, torch.Tensor]
KeyMap = Callable[[State], tuple[State, list[str]]]


def unwrap(obj: object) -> State:
    """The tensors of a checkpoint: a bare state dict, or one under `state_dict`/`model`, minus `module.`."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise TypeError(f"expected a state dict of tensors, found {type(obj).__name__}")
    state: State = dict(obj)
    if state and all(k.startswith("module.") for k in state):  # saved from DistributedDataParallel
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def timm_layout(state: State) -> tuple[State, list[str]]:
    """UNI, UNI2-h, Virchow2, H-optimus-0, Prov-GigaPath: already our names."""
    return dict(state), []


_DINOV2_LAYER = re.compile(r"encoder\.layer\.(\d+)\.(.+)")
# transformers 4 saved `attention.attention.query`, transformers 5 saves `attention.q_proj`
_DINOV2_QKV = re.compile(r"attention\.(?:attention\.(query|key|value)|(q|k|v)_proj)\.(weight|bias)")
_QKV_SHORT = {"q": "query", "k": "key", "v": "value"}
_DINOV2_RENAMES = {
    "norm1": "norm1",
    "norm2": "norm2",
    "attention.output.dense": "attn.proj",
    "attention.o_proj": "attn.proj",
    "layer_scale1.lambda1": "ls1.gamma",
    "layer_scale2.lambda1": "ls2.gamma",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
_DINOV2_TOP = {
    "embeddings.cls_token": "cls_token",
    "embeddings.mask_token": "mask_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
}


def hf_dinov2(state: State) -> tuple[State, list[str]]:
    """Hugging Face `Dinov2Model` (Phikon-v2): separate query/key/value become one fused `qkv`.

    Both the names of the published file (transformers 4) and those transformers 5 saves are read.
    """
    if state and all(k.startswith("dinov2.") for k in state):  # saved from a model with a task head
        state = {k.removeprefix("dinov2."): v for k, v in state.items()}
    out: State = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key in _DINOV2_TOP:
            out[_DINOV2_TOP[key]] = value
            continue
        match = _DINOV2_LAYER.fullmatch(key)
        if match is None:
            out[key] = value
            continue
        layer, rest = match.groups()
        proj = _DINOV2_QKV.fullmatch(rest)
        if proj is not None:
            part = proj.group(1) or _QKV_SHORT[proj.group(2)]
            qkv.setdefault((layer, proj.group(3)), {})[part] = value
            continue
        stem, _, leaf = rest.rpartition(".")
        target = _DINOV2_RENAMES.get(stem) or _DINOV2_RENAMES.get(rest)
        if target is None:
            out[key] = value
        elif target.endswith(("gamma",)):
            out[f"blocks.{layer}.{target}"] = value
        else:
            out[f"blocks.{layer}.{target}.{leaf}"] = value
    for (layer, leaf), parts in qkv.items():
        if set(parts) == {"query", "key", "value"}:
            out[f"blocks.{layer}.attn.qkv.{leaf}"] = torch.cat([parts["query"], parts["key"], parts["value"]])
        else:  # incomplete: leave them under their names so the strict load names them
            for name, value in parts.items():
                out[f"encoder.layer.{layer}.attention.attention.{name}.{leaf}"] = value
    return out, []


# Parts of CONCH's image tower that the patch features do not use: the captioning pooler and the
# projection into the joint image-text space (features are taken before it, as CONCH's
# `encode_image(proj_contrast=False)` and TRIDENT do).
_CONCH_UNUSED_VISUAL = (
    "visual.attn_pool_caption.",
    "visual.ln_caption.",
    "visual.proj_contrast",
    "visual.head.",
)


def conch_image_tower(state: State) -> tuple[State, list[str]]:
    """CONCH's CoCa checkpoint: keep `visual.*` (less the unused parts); the text tower is dropped."""
    out: State = {}
    dropped: list[str] = []
    for key, value in state.items():
        if not key.startswith("visual.") or key.startswith(_CONCH_UNUSED_VISUAL):
            dropped.append(key)
        else:
            out[key.removeprefix("visual.")] = value
    return out, dropped


def torchvision_resnet_trunc(state: State) -> tuple[State, list[str]]:
    """torchvision/timm ResNet-50: `layer4` and the classifier `fc` are cut off by the truncation."""
    dropped = [k for k in state if k.startswith(("layer4.", "fc."))]
    return {k: v for k, v in state.items() if k not in set(dropped)}, dropped
