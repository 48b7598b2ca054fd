"""Build a catalogued encoder's network and load its published weights file into it, strictly.

The trunk is built on the `meta` device (no memory, no random init: a ViT-g has 1.1 billion
parameters) and takes the file's tensors directly, so a run holds one copy of the weights, not two.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .catalogue import EncoderSpec
from .heads import CenterCrop, ClassAndMeanPatch, ClassToken, ConchImageTower
from .keymaps import KeyMap, conch_image_tower, hf_dinov2, timm_layout, torchvision_resnet_trunc
from .resnet import ResNet50Trunc
from .vit import VisionTransformer
from .weights import adapt_grid, load_strict, read_state_dict

KEYMAPS: dict[str, KeyMap] = {
    "timm": timm_layout,
    "hf_dinov2": hf_dinov2,
    "conch": conch_image_tower,
    "torchvision_resnet": torchvision_resnet_trunc,
}


def build_network(spec: EncoderSpec) -> nn.Module:
    """The module whose state dict is the (renamed) weights file: trunk, plus CONCH's pooler."""
    if spec.arch is None:
        return ResNet50Trunc()
    vit = VisionTransformer(spec.arch)
    return ConchImageTower(vit) if spec.head == "conch" else vit


def wrap(spec: EncoderSpec, net: nn.Module) -> nn.Module:
    """The network as the authors read features from it: [N, 3, S, S] -> [N, output_dim]."""
    model: nn.Module
    if spec.head == "class_token":
        model = ClassToken(net)
    elif spec.head == "class_and_mean_patch":
        assert isinstance(net, VisionTransformer)
        model = ClassAndMeanPatch(net)
    else:  # conch and the ResNet pool inside the network
        model = net
    if spec.crop is not None:
        model = CenterCrop(model, spec.crop)
    return model


def _materialise(module: nn.Module) -> None:
    """Buffers a file may lack and that carry no learned value (BatchNorm's counter) become zeros."""
    for owner in module.modules():
        for name, buf in list(owner.named_buffers(recurse=False)):
            if buf is not None and buf.is_meta:
                owner.register_buffer(name, torch.zeros(buf.shape, dtype=buf.dtype))


def load_encoder(spec: EncoderSpec, path: Path) -> tuple[nn.Module, list[str]]:
    """The ready model (float32, eval mode) and the file's keys deliberately left out."""
    with torch.device("meta"):
        net = build_network(spec)
    state, dropped = KEYMAPS[spec.layout](read_state_dict(path))
    adapt_grid(net, state)
    load_strict(net, state, path, spec.name, assign=True)
    _materialise(net)
    net = net.float()
    return wrap(spec, net).eval(), dropped
