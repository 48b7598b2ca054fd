"""Finding, verifying and strictly loading a published weights file, never downloading it.

Where a file is looked for: the `weights:` path a recipe gives, else the local Hugging Face cache
(`models--ORG--NAME/snapshots/*/`, the cache `huggingface-cli download` fills, found through
`HF_HUB_CACHE`, `HF_HOME` or `~/.cache/huggingface`), else other local caches an encoder names (the
torch hub cache for torchvision weights). A run never reaches the network: gated models need a
login and an accepted licence, and cluster nodes often have no internet.
"""

from __future__ import annotations

import math
import os
import pickle
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from histo.errors import HistoError

from .hashing import file_sha256
from .keymaps import State, unwrap

# Buffers that old checkpoints lack and that hold no learned value (torch fills them in).
OPTIONAL_SUFFIXES = ("num_batches_tracked",)


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache folder, resolved as `huggingface_hub` resolves it."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def torch_hub_checkpoints() -> Path:
    """Where torchvision keeps downloaded weights (`TORCH_HOME`, default ~/.cache/torch)."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    default = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "torch"
    return Path(os.environ.get("TORCH_HOME", default)).expanduser() / "hub" / "checkpoints"


def hf_snapshots(repo: str) -> tuple[Path, list[Path]]:
    """The repo's cache folder and its snapshots, the one `refs/main` names first, then newest first."""
    folder = hf_hub_cache() / f"models--{repo.replace('/', '--')}"
    snapshots = folder / "snapshots"
    if not snapshots.is_dir():
        return folder, []
    found = sorted((p for p in snapshots.iterdir() if p.is_dir()), key=lambda p: -p.stat().st_mtime)
    main = folder / "refs" / "main"
    if main.is_file():
        head = snapshots / main.read_text().strip()
        found = [head, *(p for p in found if p != head)] if head.is_dir() else found
    return folder, found


@dataclass(frozen=True)
class WeightsSource:
    """Where an encoder's published weights live, and how to get them."""

    hf_repo: str | None
    filenames: tuple[str, ...]  # in order of preference, as published
    how_to_get: str  # the licence / gated-access note and the download command
    other_files: tuple[Path, ...] = ()  # other local caches (e.g. torch hub), tried after the HF cache

    def locate(self, label: str) -> Path:
        """The first existing file, or an error saying everywhere it looked and how to get it."""
        looked: list[str] = []
        if self.hf_repo is not None:
            folder, snapshots = hf_snapshots(self.hf_repo)
            for snapshot in snapshots:
                for name in self.filenames:
                    if (snapshot / name).is_file():
                        return snapshot / name
            looked.append(f"{folder}/snapshots/*/{{{','.join(self.filenames)}}}")
        for path in self.other_files:
            if path.is_file():
                return path
            looked.append(str(path))
        raise HistoError(
            f"no weights for `{label}`: looked in {'; '.join(looked)}. Nothing is downloaded during a "
            f"run. {self.how_to_get}"
        )


def check_sha256(path: Path, expected: str | None, source: str = "the extractor's `sha256:`") -> str:
    """The file's sha256; an error when it differs from the one expected."""
    digest = file_sha256(path)
    if expected is not None and digest != expected.lower():
        raise HistoError(
            f"{path} has sha256 {digest}, but {source} expects {expected.lower()}: the file is incomplete, "
            "corrupt or another model's; download it again (or fix `sha256:`)"
        )
    return digest


def hf_blob_sha256(path: Path) -> str | None:
    """The sha256 the Hugging Face cache recorded for a large file, if `path` is one of its snapshots.

    Snapshot files link to `blobs/<name>`; for files stored with Git LFS (every weights file) the name
    is the sha256 of the content, so a truncated or altered download is caught without a `sha256:`.
    """
    if not path.is_symlink() or path.parent.parent.name != "snapshots":
        return None
    name = path.resolve().name
    is_digest = len(name) == 64 and all(c in "0123456789abcdef" for c in name)
    return name if is_digest and path.resolve().parent.name == "blobs" else None


def read_state_dict(path: Path) -> State:
    """Tensors from `.safetensors` (no code runs) or a torch file read with the weights-only unpickler."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        try:  # memory-mapped: the tensors become the parameters, so a 4.5 GB file is not held twice
            return unwrap(torch.load(path, map_location="cpu", weights_only=True, mmap=True))
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            # files saved before torch 1.6's zip format (torchvision's resnet50-19c8e357.pth) cannot be mapped
            return unwrap(torch.load(path, map_location="cpu", weights_only=True))
    except pickle.UnpicklingError as exc:
        text = str(exc)
        reason = text.split("WeightsUnpickler error:", 1)[-1].strip().split("\n")[0] or text.split("\n")[0]
        raise HistoError(
            f"cannot read weights file {path}: not a plain state dict of tensors ({reason}); use the file "
            "as published (pytorch_model.bin, model.safetensors); files that run code to unpickle are refused"
        ) from exc
    except (OSError, RuntimeError, EOFError, TypeError, ValueError, zipfile.BadZipFile) as exc:
        raise HistoError(f"cannot read weights file {path}: {type(exc).__name__}: {exc}") from exc


def _listing(title: str, keys: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit]) + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")
    return f"{title} ({len(keys)}): {shown}"


def load_strict(module: nn.Module, state: State, path: Path, label: str, assign: bool = False) -> None:
    """Every parameter and buffer from the file and every file tensor used, same shapes; else one error."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith(OPTIONAL_SUFFIXES)]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {list(state[k].shape)} (expected {list(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        parts = [
            _listing(title, keys)
            for title, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if keys
        ]
        raise HistoError(
            f"{path} does not hold `{label}` weights as published: {'; '.join(parts)}. Check that the file "
            "is this model's (not another version or a fine-tuned copy with other names)"
        )
    # keys were checked above; optional buffers may be absent. `assign` takes the file's tensors as
    # the parameters (for a module built on the meta device).
    module.load_state_dict(state, strict=False, assign=assign)


def adapt_grid(module: nn.Module, state: State) -> None:
    """A ViT's position embeddings take the file's grid (any square one): they are resampled per input.

    The grid a model was trained at is a property of its file, not of its architecture: taking it from
    the file keeps a checkpoint published at another size loadable, and the forward pass resamples.
    """
    for prefix, owner in module.named_modules():
        arch = getattr(owner, "arch", None)
        pos = getattr(owner, "pos_embed", None)
        key = f"{prefix}.pos_embed" if prefix else "pos_embed"
        if arch is None or not isinstance(pos, nn.Parameter) or key not in state:
            continue
        theirs = state[key]
        if theirs.shape == pos.shape or theirs.ndim != 3 or theirs.shape[2] != pos.shape[2]:
            continue
        patches = theirs.shape[1] - (0 if arch.no_embed_class else arch.num_prefix_tokens)
        if patches > 0 and math.isqrt(patches) ** 2 == patches:
            owner.pos_embed = nn.Parameter(torch.zeros_like(theirs, dtype=pos.dtype, device=pos.device))
