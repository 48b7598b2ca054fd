"""`check_component`: build a component through the registry, as a run does, and check its contract.

For the model kinds it assembles the model exactly as the train stage does (the engine adds a linear
head to an embedding), runs it on a ragged synthetic batch and checks: the module attributes histo
reads, the shapes of the outputs, that a bag's outputs do not depend on its padding (alone, in a batch,
or with noise in the padded positions), and that a backward pass gives finite gradients that reach the
component's own parameters. Every failure is an AssertionError saying what to fix.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import HistoError
from ..interfaces import ModelDims
from ..manager import Plugins, get_plugins
from .data import model_dims, sample_of, synthetic_batch, with_noisy_padding

if TYPE_CHECKING:
    from torch import Tensor, nn

    from ..interfaces import Slide

MODEL_KINDS = ("omics_encoders", "slide_encoders", "fusion_strategies")
CHECKED_KINDS = (*MODEL_KINDS, "token_aggregators", "feature_extractors", "tissue_segmenters")
AUTO = "auto"
_ROLE = {"omics_encoders": "omics_encoder", "slide_encoders": "slide_encoder", "fusion_strategies": "fusion"}


class ContractError(AssertionError):
    """A component breaks the contract histo relies on (see docs/plugins.md)."""


def _fail(label: str, message: str) -> ContractError:
    return ContractError(f"{label}: {message} (the contract is in docs/plugins.md)")


def check_component(
    kind: str,
    name: str,
    params: Mapping[str, Any] | None = None,
    *,
    dims: ModelDims | None = None,
    batch_size: int = 3,
    seed: int = 0,
    slide_encoder: str | Mapping[str, Any] | None = AUTO,
    omics_encoder: str | Mapping[str, Any] | None = AUTO,
    atol: float = 1e-4,
    plugins: Plugins | None = None,
) -> dict[str, Any]:
    """Check component `name` of `kind` (built with `params`) as histo uses it; returns its outputs on the
    synthetic batch. Raises AssertionError (a `ContractError`) with a clear message when it breaks the
    contract.

    Fusion strategies are built with `slide_encoder` and `omics_encoder` (names, or `{name, params}`);
    "auto" tries `abmil` + `snn`, then none (a fusion that brings its own encoders).
    """
    import torch

    if kind not in CHECKED_KINDS:
        raise ValueError(f"check_component checks the kinds {', '.join(CHECKED_KINDS)}; not {kind!r}")
    plugins = plugins or get_plugins()
    label = f"{kind} {name!r}"
    plugins.registry(kind).get(name)  # an unknown name: UnknownComponentError with close matches
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        if kind in MODEL_KINDS:
            return _check_model(
                kind,
                name,
                params,
                label,
                dims or model_dims(),
                batch_size,
                seed,
                slide_encoder,
                omics_encoder,
                atol,
                plugins,
            )
        if kind == "token_aggregators":
            return _check_aggregator(name, params, label, batch_size, seed, atol, plugins)
        if kind == "feature_extractors":
            return _check_extractor(name, params, label, seed, atol, plugins)
        return _check_segmenter(name, params, label, plugins)


# ---- model kinds ------------------------------------------------------------------------------------
def _ref(value: str | Mapping[str, Any]) -> dict[str, Any]:
    return {"name": value, "params": {}} if isinstance(value, str) else dict(value)


def _model_parts(
    kind: str,
    name: str,
    params: Mapping[str, Any] | None,
    slide_encoder: str | Mapping[str, Any] | None,
    omics_encoder: str | Mapping[str, Any] | None,
) -> list[dict[str, Any]]:
    """The `model:` sections to try, most likely first."""
    own = {"name": name, "params": dict(params or {})}
    if kind != "fusion_strategies":
        return [{_ROLE[kind]: own}]
    if slide_encoder == AUTO and omics_encoder == AUTO:
        pairs: list[tuple[Any, Any]] = [("abmil", "snn"), (None, None), ("abmil", None), (None, "snn")]
    else:
        slides = ["abmil", None] if slide_encoder == AUTO else [slide_encoder]
        omics = ["snn", None] if omics_encoder == AUTO else [omics_encoder]
        pairs = [(s, o) for s in slides for o in omics]
    options = []
    for s, o in pairs:
        part: dict[str, Any] = {"fusion": own}
        if s is not None:
            part["slide_encoder"] = _ref(s)
        if o is not None:
            part["omics_encoder"] = _ref(o)
        options.append(part)
    return options


def _build(kind: str, parts: dict[str, Any], dims: ModelDims, label: str, plugins: Plugins) -> nn.Module:
    from histo.plugins.training.assemble import build_model
    from histo.plugins.training.config import ModelConfig

    from ..recipe import resolve_config

    config = resolve_config(ModelConfig, parts, plugins, label=f"model of {label}")
    ref = getattr(config, _ROLE[kind])
    builder = ref.build()
    if not callable(getattr(builder, "build", None)):
        raise _fail(
            label,
            f"its factory returned {type(builder).__name__}, which has no build() method: the factory must "
            f"return a builder whose build({'dim' if kind == 'token_aggregators' else 'dims'}, ...) returns "
            "the torch module",
        )
    try:
        return build_model(config, dims)
    except HistoError:
        raise
    except Exception as exc:
        hint = ""
        if "output_dim" in str(exc):
            hint = (
                ": a module that returns an embedding must expose an integer `output_dim` (histo sizes "
                "the linear head with it), or set `produces_logits = True` and return logits"
            )
        raise _fail(label, f"the engine could not assemble it ({type(exc).__name__}: {exc}){hint}") from exc


def _check_model(
    kind: str,
    name: str,
    params: Mapping[str, Any] | None,
    label: str,
    dims: ModelDims,
    batch_size: int,
    seed: int,
    slide_encoder: str | Mapping[str, Any] | None,
    omics_encoder: str | Mapping[str, Any] | None,
    atol: float,
    plugins: Plugins,
) -> dict[str, Any]:
    errors = []
    model = None
    for parts in _model_parts(kind, name, params, slide_encoder, omics_encoder):
        try:
            model = _build(kind, parts, dims, label, plugins)
            break
        except HistoError as exc:
            errors.append(f"with {parts}: {exc}")
    if model is None:
        raise _fail(label, "could not be built: " + "; ".join(errors))
    body: Any = model.body
    component: nn.Module = body.encoder if kind == "omics_encoders" else body
    _check_attributes(kind, component, dims, label)

    batch = synthetic_batch(dims, batch_size, seed=seed)
    model.eval()
    out = _forward(model, batch, label)
    _check_outputs(out, batch, dims, label)
    if kind == "omics_encoders":
        _check_omics_output(component, batch, label)
    _check_padding(lambda b: _forward(model, b, label), out, batch, label, atol, seed)
    model.train()
    _check_backward(model, component, batch, label)
    return out


def _forward(model: nn.Module, batch: Mapping[str, Any], label: str) -> dict[str, Any]:
    import torch

    with torch.no_grad():
        out = model(batch)
    if not isinstance(out, Mapping):
        raise _fail(label, f"the module must return a dict of outputs, not {type(out).__name__}")
    return dict(out)


def _check_attributes(kind: str, module: nn.Module, dims: ModelDims, label: str) -> None:
    from torch import nn

    if not isinstance(module, nn.Module):
        raise _fail(label, f"build() must return a torch.nn.Module, not {type(module).__name__}")
    produces_logits = bool(getattr(module, "produces_logits", False))
    if not produces_logits and not isinstance(getattr(module, "output_dim", None), int):
        raise _fail(
            label,
            f"{type(module).__name__} must expose an integer `output_dim` (the size of the embedding it "
            "returns; histo sizes the linear head with it), or set `produces_logits = True` and return "
            "logits",
        )
    groups = getattr(module, "groups", None)
    if kind == "omics_encoders" and groups is not None and sorted(groups) != sorted(dims.omics_groups):
        raise _fail(
            label, f"`groups` {list(groups)} must list the gene groups of ModelDims {list(dims.omics_groups)}"
        )


def _check_omics_output(module: nn.Module, batch: Mapping[str, Any], label: str) -> None:
    import torch

    with torch.no_grad():
        x = module(batch["omics"])
    size = len(batch["target"])
    tokens = bool(getattr(module, "tokens", False))
    expected = f"[{size}, T, {module.output_dim}]" if tokens else f"[{size}, {module.output_dim}]"
    ok = isinstance(x, torch.Tensor) and x.dim() == (3 if tokens else 2) and x.shape[0] == size
    ok = ok and x.shape[-1] == module.output_dim
    if tokens and ok and getattr(module, "groups", None) is not None:
        ok = x.shape[1] == len(getattr(module, "groups", ()))
    if not ok:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise _fail(label, f"module(batch['omics']) gave {got}; expected {expected} (tokens = {tokens})")


def _shape(x: Any, expected: tuple[int, ...], what: str, label: str) -> None:
    import torch

    if not isinstance(x, torch.Tensor) or tuple(x.shape) != expected:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise _fail(label, f"output {what} has shape {got}; expected {list(expected)}")
    if not torch.isfinite(x).all():
        raise _fail(label, f"output {what} has NaN or infinite values")


def _check_outputs(out: Mapping[str, Any], batch: Mapping[str, Any], dims: ModelDims, label: str) -> None:
    size = len(batch["target"])
    _shape(out.get("logits"), (size, dims.num_outputs), "'logits'", label)
    for view, logits in (out.get("view_logits") or {}).items():
        _shape(logits, (size, dims.num_outputs), f"'view_logits'[{view!r}]", label)
    for view, groups in (out.get("subspaces") or {}).items():
        for group, x in groups.items():
            _shape(x, (size, x.shape[-1]), f"'subspaces'[{view!r}][{group!r}]", label)
    for view, weights in (out.get("attention") or {}).items():
        mask = batch["mask"].get(view)
        if mask is None or tuple(weights.shape) != tuple(mask.shape):
            continue  # richer attention (e.g. per head) is allowed; [B, N] maps are checked below
        if bool((weights[~mask] != 0).any()):
            raise _fail(label, f"output 'attention'[{view!r}] gives weight to padded patches (mask False)")
    aux = out.get("aux_loss")
    if aux is not None:
        _shape(aux, (), "'aux_loss'", label)


def _close(a: Tensor, b: Tensor, atol: float) -> bool:
    import torch

    return bool(torch.allclose(a.float(), b.float(), atol=atol, rtol=atol))


def _check_padding(
    forward: Callable[[Mapping[str, Any]], dict[str, Any]],
    out: Mapping[str, Any],
    batch: Mapping[str, Any],
    label: str,
    atol: float,
    seed: int,
) -> None:
    for index in range(len(batch["target"])):
        alone = forward(sample_of(batch, index))
        if not _close(alone["logits"][0], out["logits"][index], atol):
            raise _fail(
                label,
                f"patient {index}'s logits differ when it is alone in a batch (no padding) and when its bag "
                "is padded among others: ignore positions where batch['mask'] is False "
                "(histo.blocks.masked_softmax / masked_mean)",
            )
    noisy = forward(with_noisy_padding(batch, seed))
    if not _close(noisy["logits"], out["logits"], atol):
        raise _fail(
            label,
            "the logits change when the padded positions of the bags hold other values: padded positions "
            "(batch['mask'] False) must not reach the output",
        )


def _check_backward(model: nn.Module, component: nn.Module, batch: Mapping[str, Any], label: str) -> None:
    import torch
    from torch.nn import functional

    model.zero_grad(set_to_none=True)
    out = model(batch)
    target = batch["target"].long()
    loss = functional.cross_entropy(out["logits"], target)
    for logits in (out.get("view_logits") or {}).values():
        loss = loss + functional.cross_entropy(logits, target)
    if out.get("aux_loss") is not None:
        loss = loss + out["aux_loss"]
    if not torch.isfinite(loss):
        raise _fail(label, f"the training loss on a synthetic batch is {loss.item()}")
    loss.backward()
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    if bad:
        raise _fail(label, f"non-finite gradients in {bad[:5]}")
    reached = [p for p in component.parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    if any(True for _ in component.parameters()) and not reached:
        raise _fail(
            label, "no gradient reaches the component's parameters from the loss (is the output detached?)"
        )
    model.zero_grad(set_to_none=True)


# ---- token aggregators ------------------------------------------------------------------------------
def _check_aggregator(
    name: str,
    params: Mapping[str, Any] | None,
    label: str,
    batch_size: int,
    seed: int,
    atol: float,
    plugins: Plugins,
) -> dict[str, Any]:
    import torch

    builder = plugins.registry("token_aggregators").build(name, dict(params or {}))
    if not callable(getattr(builder, "build", None)):
        raise _fail(label, f"its factory returned {type(builder).__name__}, which has no build(dim) method")
    dim = 16
    module = builder.build(dim)
    batch = synthetic_batch(
        model_dims(dim, {}, magnifications=("x",)), batch_size, seed=seed, patches=(5, 40)
    )
    tokens, mask = batch["features"]["x"], batch["mask"]["x"]

    def forward(b: Mapping[str, Any]) -> dict[str, Any]:
        with torch.no_grad():
            return _aggregate(module, b["features"]["x"], b["mask"]["x"], label)

    module.eval()
    out = forward(batch)
    size, n = mask.shape
    merged = out["tokens"]
    if merged.dim() != 3 or merged.shape[0] != size or merged.shape[2] != dim:
        raise _fail(label, f"'tokens' has shape {tuple(merged.shape)}; expected [{size}, K, {dim}]")
    _shape(out["weights"], (size, n), "'weights'", label)
    assignment = out["assignment"]
    if tuple(assignment.shape) != (size, n) or assignment.dtype != torch.long:
        raise _fail(
            label,
            f"'assignment' must be a long tensor [{size}, {n}]; got {assignment.dtype} "
            f"{tuple(assignment.shape)}",
        )
    if (assignment[~mask] != -1).any():
        raise _fail(label, "'assignment' must be -1 at padded positions (mask False)")
    if ((assignment[mask] < 0) | (assignment[mask] >= merged.shape[1])).any():
        raise _fail(label, f"'assignment' of real tokens must be in [0, {merged.shape[1]})")
    for index in range(size):
        alone = forward(sample_of(batch, index))
        if not _close(alone["tokens"][0], merged[index], atol):
            raise _fail(label, f"bag {index}'s tokens differ alone and padded in a batch: honour the mask")
    noisy = forward(with_noisy_padding(batch, seed))
    if not _close(noisy["tokens"], merged, atol):
        raise _fail(label, "the tokens change with the values at padded positions: honour the mask")
    module.train()
    x = tokens.clone().requires_grad_(True)
    result = _aggregate(module, x, mask, label)
    result["tokens"].pow(2).sum().backward()
    if x.grad is None or not torch.isfinite(x.grad).all():
        raise _fail(label, "gradients from 'tokens' back to the input tokens are missing or not finite")
    return out


def _aggregate(module: nn.Module, tokens: Tensor, mask: Tensor, label: str) -> dict[str, Any]:
    out = module(tokens, mask)
    missing = {"tokens", "assignment", "weights"} - set(out if isinstance(out, Mapping) else {})
    if missing:
        raise _fail(label, f"module(tokens, mask) must return a dict with {sorted(missing)}")
    return dict(out)


# ---- feature extractors and tissue segmenters --------------------------------------------------------
def _check_extractor(
    name: str, params: Mapping[str, Any] | None, label: str, seed: int, atol: float, plugins: Plugins
) -> dict[str, Any]:
    import json

    import torch

    from ..interfaces import FeatureExtractor

    extractor = plugins.registry("feature_extractors").build(name, dict(params or {}))
    if not isinstance(extractor, FeatureExtractor):
        raise _fail(
            label,
            f"the factory must return a histo.interfaces.FeatureExtractor, not {type(extractor).__name__}",
        )
    size, dim = extractor.input_size, extractor.output_dim
    module = extractor.build().eval()
    g = torch.Generator().manual_seed(seed)
    patches = torch.rand(3, 3, size, size, generator=g)
    mean = torch.tensor(extractor.mean).view(1, 3, 1, 1)
    std = torch.tensor(extractor.std).view(1, 3, 1, 1)
    x = (patches - mean) / std
    with torch.no_grad():
        features = module(x)
        one = module(x[:1])
    _shape(features, (3, dim), "features", label)
    if not _close(one[0], features[0], atol):
        raise _fail(
            label, "a patch's features depend on the other patches of its batch (batch norm in train mode?)"
        )
    try:
        json.dumps(extractor.describe())
    except TypeError as exc:
        raise _fail(label, f"describe() must return JSON-serialisable values: {exc}") from None
    return {"features": features}


def _check_segmenter(
    name: str, params: Mapping[str, Any] | None, label: str, plugins: Plugins
) -> dict[str, Any]:
    import tempfile

    import numpy as np

    from ..interfaces import TissueMask
    from .data import small_slide

    segmenter = plugins.registry("tissue_segmenters").build(name, dict(params or {}))
    with tempfile.TemporaryDirectory() as tmp:
        path = small_slide(Path(tmp) / "small.tif", mpp=SMALL_SLIDE_MPP)
        slide = _open(path, plugins)
        with slide:
            result = segmenter.segment(slide)
    if not isinstance(result, TissueMask):
        raise _fail(
            label, f"segment(slide) must return a histo.interfaces.TissueMask, not {type(result).__name__}"
        )
    mask = np.asarray(result.mask)
    if mask.dtype != bool or mask.ndim != 2:
        raise _fail(
            label, f"TissueMask.mask must be a 2-D bool array; got {mask.dtype} with shape {mask.shape}"
        )
    if not result.downsample >= 1:
        raise _fail(
            label,
            f"TissueMask.downsample must be level-0 pixels per mask pixel (>= 1); got {result.downsample}",
        )
    if not 0 < result.tissue_fraction < 1:
        raise _fail(
            label, f"found tissue fraction {result.tissue_fraction:.2f} on a slide about a fifth tissue"
        )
    return {"mask": result}


SMALL_SLIDE_MPP = 0.5


def _open(path: Path, plugins: Plugins) -> Slide:
    """Open `path` with the first installed reader that can (the pixel size given, as a user may)."""
    errors = []
    for registered in plugins.registry("slide_readers"):
        reader = registered.spec.build(None)
        if reader.can_open(path):
            try:
                return reader.open(path, mpp_override=SMALL_SLIDE_MPP)
            except HistoError as exc:
                errors.append(f"{registered.name}: {exc}")
    raise ContractError(
        f"no installed slide reader opens {path.name} ({'; '.join(errors) or 'none takes .tif'})"
    )
