"""The pathology foundation-model encoders histo knows by name: architecture, preprocessing, output.

Each entry follows its authors' model card and code (cross-checked with TRIDENT's encoder zoo):
input size and resize/crop, mean/std, resampling filter, what the feature vector is, the precision
the authors run it in, the magnification it was trained for, its licence and where the weights
live. Importing this module needs no torch; the networks are built by `build_network`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .vit_arch import ViTArch

Triple = tuple[float, float, float]
IMAGENET: tuple[Triple, Triple] = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
OPENAI_CLIP: tuple[Triple, Triple] = (
    (0.48145466, 0.4578275, 0.40821073),
    (0.26862954, 0.26130258, 0.27577711),
)
HOPTIMUS: tuple[Triple, Triple] = ((0.707223, 0.578729, 0.703617), (0.211883, 0.230117, 0.177517))

Head = Literal["class_token", "class_and_mean_patch", "conch", "pool"]
Layout = Literal["timm", "hf_dinov2", "conch", "torchvision_resnet"]
GATED = (
    "Gated model: on https://huggingface.co/{repo} log in and accept the licence ({licence}); then, on a "
    "machine with internet, run `huggingface-cli login` and `huggingface-cli download {repo}` into the "
    "Hugging Face cache the run sees (HF_HOME), or download its {files} and set `weights:` to that file."
)


@dataclass(frozen=True)
class EncoderSpec:
    name: str
    title: str
    arch: ViTArch | None  # None: the ResNet-50 trunk
    head: Head
    layout: Layout
    output_dim: int
    input_size: int  # the engine resizes each patch to this
    crop: int | None  # then the model crops its centre to this (None: no crop)
    mean: Triple
    std: Triple
    interpolation: Literal["bilinear", "bicubic"]
    precision: Literal["fp32", "fp16", "bf16"]  # the authors' inference precision on a GPU
    # microns per pixel it was trained at (20x = 0.5); None: several (Virchow2) or none (ImageNet)
    mpp: float | None
    licence: str
    hf_repo: str | None
    filenames: tuple[str, ...]
    how_to_get: str
    torch_hub_files: tuple[str, ...] = field(default=())


def _gated(repo: str, licence: str, files: str = "pytorch_model.bin") -> str:
    return GATED.format(repo=repo, licence=licence, files=files)


CC_NC_ND = "CC-BY-NC-ND 4.0, gated"

SPECS: tuple[EncoderSpec, ...] = (
    EncoderSpec(
        name="uni",
        title="UNI (MahmoodLab), ViT-L/16",
        arch=ViTArch(img_size=224, patch_size=16, embed_dim=1024, depth=24, num_heads=16, init_values=1e-5),
        head="class_token",
        layout="timm",
        output_dim=1024,
        input_size=224,
        crop=None,
        mean=IMAGENET[0],
        std=IMAGENET[1],
        interpolation="bilinear",
        precision="fp16",
        mpp=0.5,
        licence=CC_NC_ND,
        hf_repo="MahmoodLab/UNI",
        filenames=("pytorch_model.bin",),
        how_to_get=_gated("MahmoodLab/UNI", CC_NC_ND),
    ),
    EncoderSpec(
        name="uni2_h",
        title="UNI2-h (MahmoodLab), ViT-H/14 with 8 registers and SwiGLU",
        arch=ViTArch(
            img_size=224,
            patch_size=14,
            embed_dim=1536,
            depth=24,
            num_heads=24,
            mlp_ratio=2.66667 * 2,
            mlp="swiglu_packed",
            init_values=1e-5,
            reg_tokens=8,
            no_embed_class=True,
        ),
        head="class_token",
        layout="timm",
        output_dim=1536,
        input_size=224,
        crop=None,
        mean=IMAGENET[0],
        std=IMAGENET[1],
        interpolation="bilinear",
        precision="bf16",
        mpp=0.5,
        licence=CC_NC_ND,
        hf_repo="MahmoodLab/UNI2-h",
        filenames=("pytorch_model.bin",),
        how_to_get=_gated("MahmoodLab/UNI2-h", CC_NC_ND),
    ),
    EncoderSpec(
        name="conch",
        title="CONCH v1 image tower (MahmoodLab), ViT-B/16, attentional pooling",
        arch=ViTArch(img_size=448, patch_size=16, embed_dim=768, depth=12, num_heads=12),
        head="conch",
        layout="conch",
        output_dim=512,
        input_size=448,
        crop=None,
        mean=OPENAI_CLIP[0],
        std=OPENAI_CLIP[1],
        interpolation="bicubic",
        precision="fp32",
        mpp=0.5,
        licence=CC_NC_ND,
        hf_repo="MahmoodLab/CONCH",
        filenames=("pytorch_model.bin",),
        how_to_get=_gated("MahmoodLab/CONCH", CC_NC_ND),
    ),
    EncoderSpec(
        name="virchow2",
        title="Virchow2 (Paige), ViT-H/14 with 4 registers and SwiGLU",
        arch=ViTArch(
            img_size=224,
            patch_size=14,
            embed_dim=1280,
            depth=32,
            num_heads=16,
            mlp_ratio=5.3375,
            mlp="swiglu_packed",
            init_values=1e-5,
            reg_tokens=4,
        ),
        head="class_and_mean_patch",
        layout="timm",
        output_dim=2560,
        input_size=224,
        crop=None,
        mean=IMAGENET[0],
        std=IMAGENET[1],
        interpolation="bicubic",
        precision="fp16",
        mpp=None,
        licence=CC_NC_ND,
        hf_repo="paige-ai/Virchow2",
        filenames=("pytorch_model.bin", "model.safetensors"),
        how_to_get=_gated("paige-ai/Virchow2", "CC-BY-NC-ND 4.0", "pytorch_model.bin or model.safetensors"),
    ),
    EncoderSpec(
        name="h_optimus_0",
        title="H-optimus-0 (Bioptimus), ViT-g/14 with 4 registers and SwiGLU",
        arch=ViTArch(
            img_size=224,
            patch_size=14,
            embed_dim=1536,
            depth=40,
            num_heads=24,
            mlp_ratio=2.66667 * 2,
            mlp="swiglu_packed",
            init_values=1e-5,
            reg_tokens=4,
            no_embed_class=True,
        ),
        head="class_token",
        layout="timm",
        output_dim=1536,
        input_size=224,
        crop=None,
        mean=HOPTIMUS[0],
        std=HOPTIMUS[1],
        interpolation="bicubic",
        precision="fp16",
        mpp=0.5,
        licence="Apache-2.0",
        hf_repo="bioptimus/H-optimus-0",
        filenames=("pytorch_model.bin", "model.safetensors"),
        how_to_get=(
            "Download it from https://huggingface.co/bioptimus/H-optimus-0 (Apache-2.0; accept the terms on "
            "the page if asked): `huggingface-cli download bioptimus/H-optimus-0` on a machine with "
            "internet, or set `weights:` to the downloaded file."
        ),
    ),
    EncoderSpec(
        name="prov_gigapath",
        title="Prov-GigaPath tile encoder, ViT-g/16 with SwiGLU",
        arch=ViTArch(
            img_size=224,
            patch_size=16,
            embed_dim=1536,
            depth=40,
            num_heads=24,
            mlp_ratio=5.33334,
            mlp="swiglu_packed",
            init_values=1e-5,
        ),
        head="class_token",
        layout="timm",
        output_dim=1536,
        input_size=256,
        crop=224,
        mean=IMAGENET[0],
        std=IMAGENET[1],
        interpolation="bicubic",
        precision="fp16",
        mpp=0.5,
        licence="Apache-2.0, gated",
        hf_repo="prov-gigapath/prov-gigapath",
        filenames=("pytorch_model.bin",),
        how_to_get=_gated("prov-gigapath/prov-gigapath", "Apache-2.0 with the access conditions on the page"),
    ),
    EncoderSpec(
        name="phikon_v2",
        title="Phikon-v2 (Owkin), ViT-L/16 DINOv2, transformers layout",
        arch=ViTArch(
            img_size=224,
            patch_size=16,
            embed_dim=1024,
            depth=24,
            num_heads=16,
            init_values=1e-5,
            mask_token=True,
            pos_antialias=False,
        ),
        head="class_token",
        layout="hf_dinov2",
        output_dim=1024,
        input_size=224,
        crop=None,
        mean=IMAGENET[0],
        std=IMAGENET[1],
        interpolation="bilinear",
        precision="fp32",
        mpp=0.5,
        licence="Owkin non-commercial",
        hf_repo="owkin/phikon-v2",
        filenames=("model.safetensors", "pytorch_model.bin"),
        how_to_get=(
            "Download it from https://huggingface.co/owkin/phikon-v2 (non-commercial licence, see the model "
            "card): `huggingface-cli download owkin/phikon-v2` on a machine with internet, or set `weights:` "
            "to the downloaded model.safetensors."
        ),
    ),
    EncoderSpec(
        name="resnet50_trunc",
        title="ImageNet ResNet-50 truncated after layer 3 (CLAM)",
        arch=None,
        head="pool",
        layout="torchvision_resnet",
        output_dim=1024,
        input_size=224,
        crop=None,
        mean=IMAGENET[0],
        std=IMAGENET[1],
        interpolation="bilinear",
        precision="fp32",
        mpp=None,
        licence="BSD-3-Clause",
        hf_repo="timm/resnet50.tv_in1k",
        filenames=("model.safetensors", "pytorch_model.bin"),
        how_to_get=(
            "The ImageNet weights CLAM uses are torchvision's resnet50-19c8e357.pth "
            "(https://download.pytorch.org/models/resnet50-19c8e357.pth, its sha256 starts with 19c8e357), "
            "also on the hub as `huggingface-cli download timm/resnet50.tv_in1k`; fetch either on a machine "
            "with internet (torchvision keeps the first in $TORCH_HOME/hub/checkpoints), or set `weights:` "
            "to the downloaded file."
        ),
        torch_hub_files=("resnet50-19c8e357.pth",),
    ),
)

CATALOGUE: dict[str, EncoderSpec] = {spec.name: spec for spec in SPECS}
