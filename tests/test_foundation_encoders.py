"""The named pathology foundation-model encoders: architecture, published key layouts, preprocessing.

Real weights are gated and gigabytes, so each test writes random weights to disk in the layout the
authors publish (timm names; Hugging Face DINOv2 names for Phikon-v2; CONCH's whole CoCa checkpoint;
torchvision's ResNet-50 with `layer4` and `fc`) and loads them by name through the registry. Full-size
architectures are checked on the `meta` device (parameter counts against the published ones); forward
passes run on depth-reduced copies (one block), which share every shape but the depth.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from histo.errors import HistoError
from histo.manager import Plugins
from histo.plugins.extractors import catalogue
from histo.plugins.extractors.catalogue import CATALOGUE, EncoderSpec
from histo.plugins.extractors.encoders import build_network, wrap
from histo.plugins.extractors.engine import resolve_precision
from histo.plugins.extractors.heads import AttentionalPooler
from histo.plugins.extractors.patches import PatchDataset
from histo.plugins.extractors.resnet import _stage
from histo.plugins.extractors.resolution import resolution_warnings
from histo.plugins.extractors.vit import VisionTransformer

NAMES = ("uni", "uni2_h", "conch", "virchow2", "h_optimus_0", "prov_gigapath", "phikon_v2", "resnet50_trunc")

# Parameter counts the authors publish (model cards, papers), in millions, and what we build.
PUBLISHED_M = {
    "uni": 303,  # ViT-L/16 ("303M")
    "uni2_h": 681,  # ViT-H/14 ("681M")
    "virchow2": 632,  # ViT-H/14 ("632M")
    "h_optimus_0": 1130,  # ViT-g/14 ("1.13B")
    "prov_gigapath": 1130,  # ViT-g ("1.13B" tile encoder)
    "phikon_v2": 303,  # ViT-L/16
    "conch": 87,  # ViT-B/16 trunk (86M) + one-query attentional pooler
    "resnet50_trunc": 8.5,  # CLAM's resnet50_trunc
}

EXPECTED = {  # name: (output_dim, input_size, crop, (mean, std), interpolation, gpu precision)
    "uni": (1024, 224, None, catalogue.IMAGENET, "bilinear", "fp16"),
    "uni2_h": (1536, 224, None, catalogue.IMAGENET, "bilinear", "bf16"),
    "conch": (512, 448, None, catalogue.OPENAI_CLIP, "bicubic", "fp32"),
    "virchow2": (2560, 224, None, catalogue.IMAGENET, "bicubic", "fp16"),
    "h_optimus_0": (
        1536,
        224,
        None,
        ((0.707223, 0.578729, 0.703617), (0.211883, 0.230117, 0.177517)),
        "bicubic",
        "fp16",
    ),
    "prov_gigapath": (1536, 256, 224, catalogue.IMAGENET, "bicubic", "fp16"),
    "phikon_v2": (1024, 224, None, catalogue.IMAGENET, "bilinear", "fp32"),
    "resnet50_trunc": (1024, 224, None, catalogue.IMAGENET, "bilinear", "fp32"),
}


def registry() -> Any:
    return Plugins(load_entry_points=False, env={}).registry("feature_extractors")


def shallow(name: str) -> EncoderSpec:
    """The catalogue entry with one transformer block: every shape but the depth is the real one."""
    spec = CATALOGUE[name]
    return (
        spec if spec.arch is None else dataclasses.replace(spec, arch=dataclasses.replace(spec.arch, depth=1))
    )


@pytest.fixture
def use_shallow(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in NAMES:
        monkeypatch.setitem(CATALOGUE, name, shallow(name))


def random_net(spec: EncoderSpec, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = build_network(spec)
    with torch.no_grad():
        for param in net.parameters():  # zero-initialised tokens would hide mix-ups of token order
            if param.ndim == 3 or (param.ndim == 2 and param.shape[0] == 1):
                param.normal_(0, 0.5)
    return net.eval()


# -- the published layouts, written independently of histo's key maps -------------------------------


def to_hf_dinov2(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm names -> Hugging Face `Dinov2Model` names, as `model.safetensors` of Phikon-v2 holds them."""
    top = {
        "cls_token": "embeddings.cls_token",
        "mask_token": "embeddings.mask_token",
        "pos_embed": "embeddings.position_embeddings",
        "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
        "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
        "norm.weight": "layernorm.weight",
        "norm.bias": "layernorm.bias",
    }
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in top:
            out[top[key]] = value
            continue
        _, layer, rest = key.split(".", 2)
        prefix = f"encoder.layer.{layer}."
        if rest.startswith("attn.qkv."):
            leaf = rest.rsplit(".", 1)[1]
            for name, part in zip(("query", "key", "value"), value.chunk(3), strict=True):
                out[f"{prefix}attention.attention.{name}.{leaf}"] = part.clone()
        elif rest.startswith("attn.proj."):
            out[prefix + "attention.output.dense." + rest.rsplit(".", 1)[1]] = value
        elif rest in ("ls1.gamma", "ls2.gamma"):
            out[prefix + f"layer_scale{rest[2]}.lambda1"] = value
        else:
            out[prefix + rest] = value
    return out


def to_conch_checkpoint(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The image tower under `visual.`, plus the parts a CoCa checkpoint has that features don't use."""
    out = {f"visual.{k}": v for k, v in state.items()}
    out["visual.proj_contrast"] = torch.randn(512, 512)
    out["visual.attn_pool_caption.query"] = torch.randn(256, 768)
    out["visual.ln_caption.weight"] = torch.ones(768)
    out["text.token_embedding.weight"] = torch.randn(32, 768)
    out["text_decoder.ln_final.weight"] = torch.ones(768)
    out["logit_scale"] = torch.tensor(4.6)
    return out


def to_torchvision_resnet50(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The full ImageNet ResNet-50 file: add `layer4` and `fc`, drop the BatchNorm counters (as in
    torchvision's resnet50-19c8e357.pth, saved before torch had them)."""
    out = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    with torch.device("meta"):
        layer4 = _stage(1024, 512, 3, 2).state_dict()
    for key, value in layer4.items():
        if not key.endswith("num_batches_tracked"):
            out[f"layer4.{key}"] = torch.zeros(value.shape)
    out["fc.weight"], out["fc.bias"] = torch.randn(1000, 2048), torch.randn(1000)
    return out


def published_file(name: str, net: torch.nn.Module, folder: Path) -> Path:
    """`net`'s weights in the layout and file format `name`'s authors publish."""
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    if name == "phikon_v2":
        from safetensors.torch import save_file

        path = folder / "model.safetensors"
        save_file({k: v.contiguous() for k, v in to_hf_dinov2(state).items()}, str(path))
        return path
    if name == "virchow2":
        from safetensors.torch import save_file

        path = folder / "model.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
        return path
    if name == "conch":
        state = to_conch_checkpoint(state)
    elif name == "resnet50_trunc":
        state = to_torchvision_resnet50(state)
    elif name in ("h_optimus_0", "prov_gigapath"):  # the giants' files: half precision loads too
        state = {k: v.half() for k, v in state.items()}
        net.half().float()  # the reference sees the same rounding
    path = folder / ("resnet50-19c8e357.pth" if name == "resnet50_trunc" else "pytorch_model.bin")
    # torchvision's ResNet file predates torch's zip format (it cannot be memory-mapped; it still loads)
    torch.save(state, path, _use_new_zipfile_serialization=name != "resnet50_trunc")
    return path


# -- architecture at full size ----------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_full_size_architecture_matches_the_published_one(name: str) -> None:
    spec = CATALOGUE[name]
    with torch.device("meta"):
        net = build_network(spec)
    count = sum(p.numel() for p in net.parameters())
    assert count == pytest.approx(PUBLISHED_M[name] * 1e6, rel=0.01)
    if spec.arch is not None:
        trunk = net if isinstance(net, VisionTransformer) else net.trunk  # type: ignore[union-attr]
        assert sum(p.numel() for p in trunk.parameters()) == spec.arch.n_params()
        state = net.state_dict()
        prefix = "" if isinstance(net, VisionTransformer) else "trunk."
        grid = spec.arch.img_size // spec.arch.patch_size
        tokens = grid**2 + (0 if spec.arch.no_embed_class else 1 + spec.arch.reg_tokens)
        assert state[f"{prefix}pos_embed"].shape == (1, tokens, spec.arch.embed_dim)
        assert f"{prefix}blocks.{spec.arch.depth - 1}.attn.qkv.weight" in state
        assert (f"{prefix}blocks.0.ls1.gamma" in state) == (spec.arch.init_values is not None)


def test_published_shapes_of_the_swiglu_and_register_models() -> None:
    """Values from the authors' timm configs: hidden width int(dim * mlp_ratio), fc2 takes half."""
    expect = {
        "uni2_h": ((8192, 1536), (1536, 4096), (1, 8, 1536), (1, 256, 1536)),
        "virchow2": ((6832, 1280), (1280, 3416), (1, 4, 1280), (1, 261, 1280)),
        "h_optimus_0": ((8192, 1536), (1536, 4096), (1, 4, 1536), (1, 256, 1536)),
        "prov_gigapath": ((8192, 1536), (1536, 4096), None, (1, 197, 1536)),
    }
    for name, (fc1, fc2, reg, pos) in expect.items():
        with torch.device("meta"):
            state = build_network(CATALOGUE[name]).state_dict()
        assert state["blocks.0.mlp.fc1.weight"].shape == fc1
        assert state["blocks.0.mlp.fc2.weight"].shape == fc2
        assert (state["reg_token"].shape if "reg_token" in state else None) == reg
        assert state["pos_embed"].shape == pos, name


# -- loading by name from a file, output and preprocessing ------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_loads_by_name_from_a_published_file(name: str, tmp_path: Path, use_shallow: None) -> None:
    spec = CATALOGUE[name]
    net = random_net(spec)
    path = published_file(name, net, tmp_path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()

    extractor = registry().build(name, {"weights": str(path), "sha256": digest})
    dim, size, crop, (mean, std), interpolation, precision = EXPECTED[name]
    assert (extractor.output_dim, extractor.input_size, extractor.spec.crop) == (dim, size, crop)
    assert (extractor.mean, extractor.std) == (mean, std)
    assert (extractor.interpolation, extractor.gpu_precision) == (interpolation, precision)

    model = extractor.build()
    assert not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())
    # the ResNet is fully convolutional: a small input checks the weights as well, and faster
    x = torch.randn(1, 3, 64, 64) if name == "resnet50_trunc" else torch.randn(1, 3, size, size)
    with torch.inference_mode():
        out = model(x)
        expected = wrap(spec, net)(x)
    assert out.shape == (1, dim) and out.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
    described = extractor.describe()
    assert described["weights_sha256"] == digest and described["output_dim"] == dim
    if name == "conch":
        assert "text.token_embedding.weight" in extractor.dropped_keys
        assert "visual.proj_contrast" in extractor.dropped_keys
    if name == "resnet50_trunc":
        assert "fc.weight" in extractor.dropped_keys and "layer4.2.conv3.weight" in extractor.dropped_keys


def test_output_definitions(use_shallow: None) -> None:
    """Virchow2: class token + mean of patch tokens (registers excluded); GigaPath: centre 224 of 256."""
    x = torch.randn(2, 3, 224, 224)
    spec = CATALOGUE["virchow2"]
    net = random_net(spec)
    with torch.inference_mode():
        tokens = net(x)
        out = wrap(spec, net)(x)
    assert tokens.shape[1] == 1 + 4 + 16 * 16
    torch.testing.assert_close(out[:, :1280], tokens[:, 0])
    torch.testing.assert_close(out[:, 1280:], tokens[:, 5:].mean(dim=1))

    spec = CATALOGUE["prov_gigapath"]
    net = random_net(spec)
    big = torch.randn(2, 3, 256, 256)
    with torch.inference_mode():
        torch.testing.assert_close(wrap(spec, net)(big), net(big[:, :, 16:240, 16:240])[:, 0])

    spec = CATALOGUE["uni"]
    net = random_net(spec)
    with torch.inference_mode():  # another input size: position embeddings are resampled, not cropped
        assert wrap(spec, net)(torch.randn(1, 3, 320, 320)).shape == (1, 1024)


def test_conch_pooler_computes_as_coca_does() -> None:
    """CoCa's pooler runs sequence-first (L, N, D) with repeated queries; ours batch-first, same result."""
    torch.manual_seed(0)
    pooler = AttentionalPooler(512, 768, 8, n_queries=1).eval()
    with torch.no_grad():
        pooler.query.normal_()
    coca = torch.nn.MultiheadAttention(512, 8, kdim=768, vdim=768)  # batch_first=False, as in CoCa
    coca.load_state_dict(pooler.attn.state_dict())
    tokens = torch.randn(3, 785, 768)
    with torch.inference_mode():
        context = pooler.ln_k(tokens).permute(1, 0, 2)
        query = pooler.ln_q(pooler.query).unsqueeze(1).repeat(1, 3, 1)
        expected = coca(query, context, context, need_weights=False)[0].permute(1, 0, 2)
        torch.testing.assert_close(pooler(tokens), expected, rtol=1e-5, atol=1e-5)


def test_a_magnification_far_from_the_training_one_is_named(tmp_path: Path) -> None:
    tiling = {"magnifications": [{"name": "10x", "mpp": 1.0}, {"name": "20x", "mpp": 0.5}]}
    (tmp_path / "tiling.json").write_text(json.dumps(tiling))
    uni = {"expected_mpp": 0.5}
    assert resolution_warnings("uni", uni, tmp_path, ["10x", "20x"]) == [
        "uni was trained on patches at 0.5 µm/px (20x); magnification 10x is read at 1 µm/px, so its "
        "features are out of the model's training distribution"
    ]
    assert resolution_warnings("uni", uni, tmp_path, ["20x"]) == []
    assert resolution_warnings("virchow2", {"expected_mpp": None}, tmp_path, ["10x"]) == []


def test_resize_filter_and_gpu_precision_reach_the_engine() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
    for interpolation, resample in (
        ("bicubic", Image.Resampling.BICUBIC),
        ("bilinear", Image.Resampling.BILINEAR),
    ):
        dataset = PatchDataset([], 224, interpolation)
        expected = np.asarray(Image.fromarray(pixels).resize((224, 224), resample))
        np.testing.assert_array_equal(dataset._resize(pixels), expected)
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert resolve_precision("auto", cuda, "fp16") == torch.float16
    assert resolve_precision("auto", cuda, "fp32") is None
    assert resolve_precision("auto", cuda, None) == torch.bfloat16
    assert resolve_precision("auto", cpu, "fp16") is None  # CPUs always run fp32
    assert resolve_precision("bf16", cuda, "fp32") == torch.bfloat16  # an explicit choice wins


# -- strictness and errors ---------------------------------------------------------------------------


@pytest.fixture
def uni_file(tmp_path: Path, use_shallow: None) -> tuple[Path, dict[str, torch.Tensor]]:
    state = random_net(CATALOGUE["uni"]).state_dict()
    path = tmp_path / "pytorch_model.bin"
    torch.save(state, path)
    return path, dict(state)


def test_strict_loading_lists_every_mismatch(uni_file: tuple[Path, dict[str, torch.Tensor]]) -> None:
    path, state = uni_file
    broken = dict(state)
    del broken["blocks.0.ls1.gamma"]
    broken["head.weight"] = torch.zeros(1000, 1024)
    broken["pos_embed"] = torch.zeros(1, 197, 768)
    torch.save(broken, path)
    extractor = registry().build("uni", {"weights": str(path)})
    with pytest.raises(HistoError) as err:
        extractor.build()
    message = str(err.value)
    assert str(path) in message and "`uni`" in message
    assert "missing (1): blocks.0.ls1.gamma" in message
    assert "unexpected (1): head.weight" in message
    assert "wrong shape (1): pos_embed [1, 197, 768] (expected [1, 197, 1024])" in message


def test_wrong_sha256_and_unreadable_files(uni_file: tuple[Path, dict[str, torch.Tensor]]) -> None:
    path, _ = uni_file
    with pytest.raises(
        HistoError, match=r"has sha256 [0-9a-f]{64}, but the extractor's `sha256:` expects 0{64}"
    ):
        registry().build("uni", {"weights": str(path), "sha256": "0" * 64})
    with pytest.raises(ValidationError, match=r"sha256"):  # not a sha256 at all: a recipe error
        registry().build("uni", {"weights": str(path), "sha256": "abc"})
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(HistoError, match=r"cannot read weights file .*pytorch_model\.bin"):
        registry().build("uni", {"weights": str(path)}).build()
    with pytest.raises(
        HistoError, match=r"weights file .*nowhere\.bin for `uni` does not exist.*MahmoodLab/UNI"
    ):
        registry().build("uni", {"weights": str(path.parent / "nowhere.bin")})


def test_weights_from_the_local_hugging_face_cache(
    uni_file: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = uni_file
    home = tmp_path / "hf"
    repo = home / "hub" / "models--MahmoodLab--UNI"
    for name in ("old", "abc123"):
        (repo / "snapshots" / name).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    (repo / "blobs").mkdir()  # as huggingface-cli lays it out: snapshot files link to blobs/<sha256>
    blob = repo / "blobs" / hashlib.sha256(path.read_bytes()).hexdigest()
    path.rename(blob)
    (repo / "snapshots" / "abc123" / "pytorch_model.bin").symlink_to(f"../../blobs/{blob.name}")
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(home))
    extractor = registry().build("uni", {})
    assert extractor.weights == repo / "snapshots" / "abc123" / "pytorch_model.bin"
    assert extractor.build()(torch.zeros(1, 3, 224, 224)).shape == (1, 1024)
    with blob.open("ab") as fh:  # a corrupted download is caught by the name the cache gave the blob
        fh.write(b"\0")
    with pytest.raises(HistoError, match=r"but the Hugging Face cache's record expects [0-9a-f]{64}"):
        registry().build("uni", {})

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(HistoError) as err:
        registry().build("uni2_h", {})
    message = str(err.value)
    assert str(tmp_path / "empty" / "models--MahmoodLab--UNI2-h" / "snapshots") in message
    assert "Nothing is downloaded" in message and "huggingface-cli download MahmoodLab/UNI2-h" in message
    assert "CC-BY-NC-ND" in message and "`weights:`" in message


def test_resnet_weights_from_the_torch_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / "resnet50-19c8e357.pth").write_bytes(b"found, not read: loading is tested above")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert registry().build("resnet50_trunc", {}).weights == hub / "resnet50-19c8e357.pth"


# -- on a real slide, through the extract stage ------------------------------------------------------


def test_extract_stage_with_a_named_encoder_on_a_real_slide(
    slides_dir: Path, tmp_path: Path, load_recipe_text: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from histo.run import run_recipe

    slide = slides_dir / "cmu-1-small-region.svs"
    net = random_net(CATALOGUE["resnet50_trunc"])
    weights = published_file("resnet50_trunc", net, tmp_path)
    loaded = load_recipe_text(
        f"""
name: named-encoder
stages:
  tile:
    stage: tile
    params: {{slides: {slide}, magnifications: [5x], patch_size: 224, qc_thumbnails: false}}
  extract:
    stage: extract
    params: {{tiles: tile, extractor: {{name: resnet50_trunc, params: {{weights: {weights}}}}}}}
"""
    )
    with caplog.at_level(logging.WARNING, logger="histo"):
        result = run_recipe(loaded, tmp_path / "run", quiet=True)
    assert result.ok, result.summary
    assert "trained on patches" not in caplog.text  # ImageNet weights: no pathology resolution
    stage = tmp_path / "run" / "stages" / "extract"
    with h5py.File(stage / "features" / "5x" / "cmu-1-small-region.h5") as f:
        features, coords = f["features"][:], f["coords"][:]
        config = json.loads(f.attrs["extractor_config"])
        level, size = int(f.attrs["read_level"]), int(f.attrs["read_size"])
    assert features.shape[1] == 1024 and np.isfinite(features).all() and len(features) >= 1
    assert config["encoder"] == "resnet50_trunc" and config["interpolation"] == "bilinear"
    assert config["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    import openslide

    with openslide.OpenSlide(str(slide)) as handle:  # row 0 by hand: read, resize, normalise, model
        x, y = (int(v) for v in coords[0])
        region = handle.read_region((x, y), level, (size, size)).convert("RGB")
    region = np.array(region.resize((224, 224), Image.Resampling.BILINEAR))
    image = torch.from_numpy(region).permute(2, 0, 1).float().div(255).unsqueeze(0)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in catalogue.IMAGENET)
    with torch.inference_mode():
        expected = net((image - mean) / std)[0].numpy()
    np.testing.assert_allclose(features[0], expected, rtol=1e-3, atol=1e-3)


# -- parity with the authors' libraries, where they import ---------------------------------------------


def test_phikon_v2_matches_hugging_face_dinov2(tmp_path: Path, use_shallow: None) -> None:
    """The file `transformers` itself writes for a Dinov2Model loads and gives its class token."""
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    from safetensors.torch import save_file

    arch = CATALOGUE["phikon_v2"].arch
    assert arch is not None
    config = transformers.Dinov2Config(
        image_size=arch.img_size,
        patch_size=arch.patch_size,
        hidden_size=arch.embed_dim,
        num_hidden_layers=arch.depth,
        num_attention_heads=arch.num_heads,
        mlp_ratio=int(arch.mlp_ratio),
        layerscale_value=1e-5,
        layer_norm_eps=1e-6,
        qkv_bias=True,
        use_swiglu_ffn=False,
    )
    torch.manual_seed(0)
    reference = transformers.Dinov2Model(config).eval()
    with torch.no_grad():
        for param in reference.parameters():
            param.add_(torch.randn_like(param) * 0.05)  # away from the init's ones and zeros
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    model = registry().build("phikon_v2", {"weights": str(path)}).build()
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        expected = reference(pixel_values=x).last_hidden_state[:, 0]
        torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-4)
        # another size: both resample the position embeddings (bicubic, no antialiasing)
        y = torch.randn(1, 3, 320, 320)
        torch.testing.assert_close(
            model(y), reference(pixel_values=y).last_hidden_state[:, 0], rtol=1e-4, atol=1e-4
        )


def _import_timm() -> Any:
    try:
        import timm
    except Exception as exc:  # ImportError, or torchvision built for another torch
        pytest.skip(
            f"timm cannot be imported here ({type(exc).__name__}: {str(exc)[:80]}); it needs a torchvision "
            "matching torch: this parity test runs where `import timm` works"
        )
    return timm


TIMM_BUILDS = {  # name: the timm architecture and arguments the model cards give, depth cut to 1
    "uni": ("vit_large_patch16_224", {"init_values": 1e-5, "dynamic_img_size": True}),
    "uni2_h": (
        "vit_giant_patch14_224",
        {
            "patch_size": 14,
            "depth": 24,
            "num_heads": 24,
            "init_values": 1e-5,
            "embed_dim": 1536,
            "mlp_ratio": 2.66667 * 2,
            "no_embed_class": True,
            "reg_tokens": 8,
            "dynamic_img_size": True,
        },
    ),
    "virchow2": (
        "vit_huge_patch14_224",
        {
            "init_values": 1e-5,
            "reg_tokens": 4,
            "mlp_ratio": 5.3375,
            "global_pool": "",
            "dynamic_img_size": True,
        },
    ),
    "h_optimus_0": (
        "vit_giant_patch14_reg4_dinov2",
        {"img_size": 224, "init_values": 1e-5, "global_pool": "token"},
    ),
    "prov_gigapath": (
        "vit_giant_patch14_dinov2",
        {
            "img_size": 224,
            "patch_size": 16,
            "embed_dim": 1536,
            "num_heads": 24,
            "mlp_ratio": 5.33334,
            "init_values": 1e-5,
        },
    ),
}


@pytest.mark.parametrize("name", sorted(TIMM_BUILDS))
def test_timm_layout_models_match_timm(name: str, tmp_path: Path, use_shallow: None) -> None:
    timm = _import_timm()
    arch_name, kwargs = TIMM_BUILDS[name]
    extra: dict[str, Any] = {"num_classes": 0, **kwargs, "depth": 1}
    if name in ("uni2_h", "virchow2"):
        extra.update(mlp_layer=timm.layers.SwiGLUPacked, act_layer=torch.nn.SiLU)
    torch.manual_seed(0)
    reference = timm.create_model(arch_name, pretrained=False, **extra).eval()
    with torch.no_grad():
        for param in reference.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    path = tmp_path / "pytorch_model.bin"
    torch.save(reference.state_dict(), path)
    model = registry().build(name, {"weights": str(path)}).build()
    size = CATALOGUE[name].input_size
    x = torch.randn(2, 3, size, size)
    with torch.inference_mode():
        out = model(x)
        if name == "virchow2":
            tokens = reference(x)
            expected = torch.cat([tokens[:, 0], tokens[:, 5:].mean(1)], dim=-1)
        elif name == "prov_gigapath":
            expected = reference(x[:, :, 16:240, 16:240])
        else:
            expected = reference(x)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (runs where torch sees one)")
@pytest.mark.parametrize("name", ["uni", "uni2_h", "conch"])
def test_authors_precision_on_the_gpu(name: str, tmp_path: Path, use_shallow: None) -> None:
    """`precision: auto` runs each model in its authors' dtype; features stay close to fp32 ones."""
    from histo.plugins.extractors.engine import Engine

    net = random_net(CATALOGUE[name])
    path = published_file(name, net, tmp_path)
    extractor = registry().build(name, {"weights": str(path)})
    size = extractor.input_size
    images = torch.randint(0, 256, (4, size, size, 3), dtype=torch.uint8)
    gpu = Engine(extractor, extractor.build(), device="cuda", precision="auto", num_workers=0)
    cpu = Engine(extractor, extractor.build(), device="cpu", precision="auto", num_workers=0)
    assert gpu.precision == EXPECTED[name][5] and cpu.precision == "fp32"
    fast, exact = gpu.embed(images), cpu.embed(images)
    assert fast.dtype == torch.float32 and fast.shape == (4, EXPECTED[name][0])
    assert torch.nn.functional.cosine_similarity(fast, exact).min() > 0.99
