"""The default feature extractors: real weights, documented handcrafted features, timm, local models."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from histo.errors import HistoError
from histo.manager import Plugins
from histo.plugins.extractors.handcrafted import FEATURE_NAMES, STAIN_OD, HandcraftedFeatures

ROOT = Path(__file__).resolve().parents[1]


def build(plugins: Plugins, name: str, params: dict[str, Any] | None = None) -> Any:
    return plugins.registry("feature_extractors").build(name, params or {})


def normalise(extractor: Any, rgb: np.ndarray) -> torch.Tensor:
    """uint8 [N, S, S, 3] -> the normalised float input the engine gives a model."""
    x = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor(extractor.mean).view(1, 3, 1, 1)
    std = torch.tensor(extractor.std).view(1, 3, 1, 1)
    return (x - mean) / std


def test_all_extractors_register_without_importing_torch() -> None:
    code = (
        "import sys; from histo.plugins.extractors import histo_feature_extractors as hook; "
        "print(','.join(sorted(s.name for s in hook())), 'torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    named = ["conch", "h_optimus_0", "phikon_v2", "prov_gigapath", "resnet50_trunc", "uni", "uni2_h"]
    expected = sorted(["efficientnet_lite0", "handcrafted", "local_model", "timm", "virchow2", *named])
    assert out == [",".join(expected), "False"]


# -- efficientnet_lite0 ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lite0() -> tuple[Any, torch.nn.Module]:
    extractor = (
        Plugins(load_entry_points=False, env={}).registry("feature_extractors").build("efficientnet_lite0")
    )
    return extractor, extractor.build()


def test_efficientnet_weights_are_the_wheels(lite0: tuple[Any, torch.nn.Module]) -> None:
    extractor, model = lite0
    state = torch.load(extractor.weights, map_location="cpu", weights_only=True)
    params = dict(model.named_parameters())
    for key in ("_conv_stem.weight", "_blocks.7._depthwise_conv.weight", "_conv_head.weight"):
        torch.testing.assert_close(params[f"net.{key}"], state[key], rtol=0, atol=0)
    assert extractor.output_dim == 1280 and extractor.input_size == 224
    assert len(extractor.describe()["weights_sha256"]) == 64


def test_efficientnet_recognises_a_natural_image(lite0: tuple[Any, torch.nn.Module]) -> None:
    """Grace Hopper (shipped with matplotlib) in uniform: ImageNet class 652 'military uniform'.

    With random or misloaded weights (or the wrong normalisation) the top class is arbitrary and the
    distribution near uniform (max ~0.001); the pooled features must also be what the classifier uses.
    """
    import matplotlib

    image = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB")
    width, height = image.size
    side = min(width, height)
    box = ((width - side) // 2, (height - side) // 2, (width + side) // 2, (height + side) // 2)
    rgb = np.array(image.crop(box).resize((224, 224), Image.Resampling.BILINEAR))[None]
    extractor, model = lite0
    x = normalise(extractor, rgb)
    with torch.inference_mode():
        features = model(x)
        probabilities = model.net._fc(features).softmax(dim=1)
        torch.testing.assert_close(probabilities, model.net(x).softmax(dim=1))
    assert features.shape == (1, 1280)
    assert int(probabilities.argmax()) == 652
    assert float(probabilities.max()) > 0.2


def test_efficientnet_on_real_patches(
    lite0: tuple[Any, torch.nn.Module], slides_dir: Path, tmp_path: Path
) -> None:
    """Through the engine, on three patches of a real H&E slide."""
    import h5py

    from histo.plugins.extractors.coords import read_grid
    from histo.plugins.extractors.engine import Engine
    from histo.plugins.extractors.patches import PatchJob, SlideSource
    from histo.plugins.readers.openslide_reader import OpenSlideReader

    slide = slides_dir / "cmu-1-small-region.svs"
    attrs = {"slide_id": "s", "slide_path": str(slide), "read_level": 0, "read_size": 224, "patch_size": 224}
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f.create_dataset("coords", data=np.array([[0, 0], [700, 700], [1400, 1400]]))
        f.attrs.update(attrs)
    job = PatchJob(SlideSource(slide, OpenSlideReader()), read_grid(tmp_path / "c.h5", "20x"))
    extractor, model = lite0
    (bag,) = Engine(extractor, model, batch_size=8, num_workers=0).bags([job])
    assert bag.features.shape == (3, 1280) and np.isfinite(bag.features).all()
    assert (bag.features >= 0).all(), "pooled ReLU6 activations"
    assert not np.allclose(bag.features[0], bag.features[1]), "different tissue, different features"


# -- handcrafted -------------------------------------------------------------------------------------


def stain_patch(concentrations: tuple[float, float, float], size: int = 32) -> np.ndarray:
    """An RGB patch made by Beer-Lambert from given H, E, DAB amounts (the model's own convention)."""
    stains = np.asarray(STAIN_OD) / np.linalg.norm(STAIN_OD, axis=1, keepdims=True)
    od = np.asarray(concentrations) @ stains
    rgb = np.clip(np.round(255 * 10 ** (-od)), 1, 255).astype(np.uint8)
    return np.broadcast_to(rgb, (size, size, 3)).copy()


def handcrafted(rgb: np.ndarray) -> dict[str, float]:
    x = torch.from_numpy(rgb[None]).permute(0, 3, 1, 2).float() / 255
    out = HandcraftedFeatures()(x)[0]
    return dict(zip(FEATURE_NAMES, out.tolist(), strict=True))


def test_handcrafted_shape_names_and_determinism(histo_plugins: Plugins) -> None:
    extractor = build(histo_plugins, "handcrafted", {"input_size": 64})
    model = extractor.build()
    assert extractor.output_dim == len(FEATURE_NAMES) == 70 and len(set(FEATURE_NAMES)) == 70
    assert extractor.input_size == 64 and extractor.describe()["features"] == list(FEATURE_NAMES)
    x = torch.rand(5, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        a, b = model(x), model(x.clone())
        one = model(x[2:3])
    assert a.shape == (5, 70) and a.dtype == torch.float32 and torch.isfinite(a).all()
    assert torch.equal(a, b)
    torch.testing.assert_close(one[0], a[2], rtol=1e-5, atol=1e-6)  # batch-independent


def test_handcrafted_separates_stains_and_background() -> None:
    white = handcrafted(np.full((32, 32, 3), 255, np.uint8))
    assert white["white_fraction"] == 1 and white["tissue_fraction"] == 0
    assert white["od_mean"] == pytest.approx(0, abs=1e-6) and white["hema_mean"] == pytest.approx(0, abs=1e-6)

    hema = handcrafted(stain_patch((0.8, 0.0, 0.0)))
    eosin = handcrafted(stain_patch((0.0, 0.8, 0.0)))
    assert hema["hema_mean"] == pytest.approx(0.8, abs=0.03) and hema["eosin_mean"] < 0.05
    assert eosin["eosin_mean"] == pytest.approx(0.8, abs=0.03) and eosin["hema_mean"] < 0.05
    assert hema["tissue_fraction"] == 1 and hema["white_fraction"] == 0
    assert hema["gray_gradient_mean_x1"] < 1e-5, "a flat patch has no texture"


def test_handcrafted_texture_statistics() -> None:
    rng = np.random.default_rng(1)
    gray = np.kron(rng.integers(0, 2, (8, 8)), np.ones((8, 8))) * 255  # 8x8 blocks of black/white
    blocks = np.repeat(gray[..., None], 3, axis=2).astype(np.uint8)
    stats = handcrafted(blocks)
    flat = handcrafted(np.full((64, 64, 3), 128, np.uint8))
    assert flat["glcm_contrast"] == 0 and flat["glcm_energy"] == 1 and flat["glcm_correlation"] == 1
    assert stats["glcm_contrast"] > 1 and stats["glcm_energy"] < 0.5 and stats["glcm_entropy"] > 0.5
    assert stats["gray_laplacian_var"] > 0 and stats["gray_gradient_mean_x1"] > 0

    # the shifted-difference gradient equals a Sobel convolution (normalised by 8)
    image = torch.rand(2, 1, 20, 20, generator=torch.Generator().manual_seed(3))
    sobel_x = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8
    kernels = torch.stack([sobel_x, sobel_x.T]).unsqueeze(1)
    g = F.conv2d(F.pad(image, (1, 1, 1, 1), mode="replicate"), kernels)
    expected = torch.sqrt(g.square().sum(dim=1) + 1e-12)
    torch.testing.assert_close(HandcraftedFeatures._gradient(image), expected)


def test_handcrafted_chunks_change_the_speed_not_the_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a CPU the batch goes through in cache-sized chunks; a patch's features depend on it alone."""
    import histo.plugins.extractors.handcrafted as module

    x = torch.rand(11, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    model = HandcraftedFeatures()
    with torch.inference_mode():
        monkeypatch.setattr(module, "CHUNK_PIXELS", 1 << 30)
        whole = model(x)
        monkeypatch.setattr(module, "CHUNK_PIXELS", 3 * 64 * 64)  # chunks of 3, 3, 3 and 2 patches
        chunked = model(x)
        alone = torch.cat([model(x[i : i + 1]) for i in range(len(x))])
    assert torch.equal(whole, chunked) and torch.equal(whole, alone)

    # the texture's fast 2 x 2 pooling is avg_pool2d (odd edges dropped), twice is avg_pool2d(4)
    image = torch.rand(2, 2, 31, 30, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(module._halve(image), F.avg_pool2d(image, 2))
    torch.testing.assert_close(module._halve(module._halve(image)), F.avg_pool2d(image, 4))


def test_handcrafted_feature_list_is_documented() -> None:
    doc = (ROOT / "docs" / "features.md").read_text(encoding="utf-8")
    undocumented = [name for name in FEATURE_NAMES if f"`{name}`" not in doc]
    assert not undocumented, f"docs/features.md does not list: {undocumented}"


# -- timm (optional extra) ---------------------------------------------------------------------------


def test_timm_missing_extra_is_a_clear_error(histo_plugins: Plugins, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # as if not installed, even where it is
    extractor = build(histo_plugins, "timm", {"model": "hf-hub:MahmoodLab/UNI"})
    with pytest.raises(HistoError, match=r'pip install "histo-mml\[timm\]"'):
        extractor.build()


def test_timm_checkpoint_must_exist(histo_plugins: Plugins, tmp_path: Path) -> None:
    with pytest.raises(HistoError, match=r"timm checkpoint .*missing.safetensors does not exist"):
        build(
            histo_plugins,
            "timm",
            {"model": "vit_large_patch16_224", "checkpoint": tmp_path / "missing.safetensors"},
        )


class FakeTimm(types.ModuleType):
    """Just the timm API the extractor uses; the real timm needs torchvision, which torch 2.13 lacks here."""

    def __init__(self, cached: bool) -> None:
        super().__init__("timm")
        self.cached = cached
        self.calls: list[tuple[str, bool, dict[str, Any], str | None]] = []
        self.data = types.SimpleNamespace(resolve_model_data_config=self._data_config)

    def create_model(self, name: str, pretrained: bool = False, **kwargs: Any) -> torch.nn.Module:
        self.calls.append((name, pretrained, kwargs, os.environ.get("HF_HUB_OFFLINE")))
        if pretrained and not self.cached and "pretrained_cfg_overlay" not in kwargs:
            raise FileNotFoundError(
                "LocalEntryNotFoundError: cannot find the requested files in the local cache"
            )
        model = torch.nn.Sequential(
            torch.nn.Conv2d(3, 24, 4, 4), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
        )
        model.pretrained_cfg = {"input_size": (3, 32, 32), "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
        return model

    @staticmethod
    def _data_config(model: torch.nn.Module) -> dict[str, Any]:
        return dict(model.pretrained_cfg)


def test_timm_model_offline_with_sizes_from_its_config(
    histo_plugins: Plugins, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = FakeTimm(cached=True)
    monkeypatch.setitem(sys.modules, "timm", fake)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    kwargs = {"init_values": 1e-5, "dynamic_img_size": True}
    extractor = build(histo_plugins, "timm", {"model": "hf-hub:MahmoodLab/UNI", "model_kwargs": kwargs})
    model = extractor.build()
    name, pretrained, passed, offline = fake.calls[-1]
    assert (name, pretrained, offline) == ("hf-hub:MahmoodLab/UNI", True, "1")
    assert passed == {"num_classes": 0, **kwargs}
    assert "HF_HUB_OFFLINE" not in os.environ, "the offline switch is restored after building"
    assert (extractor.input_size, extractor.mean, extractor.std) == (32, (0.5,) * 3, (0.25,) * 3)
    assert extractor.output_dim == 24 and model(torch.zeros(3, 3, 32, 32)).shape == (3, 24)
    assert extractor.describe()["model"] == "hf-hub:MahmoodLab/UNI"

    weights = tmp_path / "pytorch_model.bin"
    weights.write_bytes(b"weights")
    local = build(
        histo_plugins, "timm", {"model": "vit_large_patch16_224", "checkpoint": weights, "input_size": 64}
    )
    local.build()
    assert fake.calls[-1][2]["pretrained_cfg_overlay"] == {"file": str(weights)}
    assert local.input_size == 64 and local.describe()["checkpoint_sha256"]


def test_timm_weights_not_cached_say_how_to_get_them(
    histo_plugins: Plugins, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "timm", FakeTimm(cached=False))
    extractor = build(histo_plugins, "timm", {"model": "hf-hub:MahmoodLab/UNI"})
    with pytest.raises(HistoError, match="huggingface-cli download MahmoodLab/UNI") as info:
        extractor.build()
    assert "not in the local Hugging Face cache" in str(info.value) and "checkpoint" in str(info.value)


# -- local_model -------------------------------------------------------------------------------------


class TinyEncoder(torch.nn.Module):
    def __init__(self, dim: int = 12, flatten: bool = True) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, dim, 3, stride=2)
        self.flatten = flatten

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x).mean(dim=(2, 3), keepdim=not self.flatten)
        return y


def test_local_exported_program(histo_plugins: Plugins, tmp_path: Path) -> None:
    """torch.export (.pt2): torch's recommended format; needs a dynamic batch dimension."""
    torch.manual_seed(0)
    reference = TinyEncoder().eval()
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(reference, (torch.rand(2, 3, 40, 40),), dynamic_shapes=({0: batch},))
    torch.export.save(program, tmp_path / "encoder.pt2")
    extractor = build(histo_plugins, "local_model", {"path": tmp_path / "encoder.pt2", "input_size": 40})
    model = extractor.build()
    assert extractor.output_dim == 12
    x = torch.rand(5, 3, 40, 40)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), reference(x))


@pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")
def test_local_torchscript_model(histo_plugins: Plugins, tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = TinyEncoder().eval()
    path = tmp_path / "encoder.pt"
    torch.jit.save(torch.jit.script(reference), path)
    params = {"path": path, "input_size": 48, "mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]}
    extractor = build(histo_plugins, "local_model", params)
    model = extractor.build()
    assert extractor.output_dim == 12 and extractor.input_size == 48 and extractor.mean == (0.5, 0.5, 0.5)
    x = torch.rand(4, 3, 48, 48)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), reference(x))
    assert extractor.describe()["model_sha256"]

    with pytest.raises(HistoError, match="returns 12 features, but output_dim is 7"):
        build(histo_plugins, "local_model", {**params, "output_dim": 7}).build()


@pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")
def test_local_model_rejects_what_it_cannot_use(histo_plugins: Plugins, tmp_path: Path) -> None:
    pickled = tmp_path / "pickled.pt"
    torch.save(TinyEncoder(), pickled)
    with pytest.raises(HistoError, match=r"pickled module; loading it runs code .*allow_pickle: true"):
        build(histo_plugins, "local_model", {"path": pickled, "input_size": 32}).build()
    trusted = build(histo_plugins, "local_model", {"path": pickled, "input_size": 32, "allow_pickle": True})
    trusted.build()
    assert trusted.output_dim == 12

    weights = tmp_path / "weights.pt"
    torch.save(TinyEncoder().state_dict(), weights)
    with pytest.raises(HistoError, match=r"holds a OrderedDict .*not a model"):
        build(histo_plugins, "local_model", {"path": weights, "input_size": 32}).build()

    maps = tmp_path / "maps.pt"
    torch.jit.save(torch.jit.script(TinyEncoder(flatten=False)), maps)
    with pytest.raises(HistoError, match=r"returned \[2, 12, 1, 1\] for 2 patches; .*\[N, D\]"):
        build(histo_plugins, "local_model", {"path": maps, "input_size": 32}).build()

    with pytest.raises(HistoError, match=r"model file .*nowhere.pt does not exist"):
        build(histo_plugins, "local_model", {"path": tmp_path / "nowhere.pt", "input_size": 32})
