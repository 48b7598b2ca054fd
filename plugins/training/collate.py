"""Batches of variable-length bags: pad to the longest bag per magnification and keep a mask."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def pad_bags(bags: Sequence[np.ndarray], dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack [N_i, dim] arrays into [B, max N, dim] plus a bool mask [B, max N] (True = real patch)."""
    longest = max((len(b) for b in bags), default=0)
    longest = max(longest, 1)  # an all-empty batch still gives a valid (fully masked) tensor
    out = torch.zeros(len(bags), longest, dim, dtype=torch.float32)
    mask = torch.zeros(len(bags), longest, dtype=torch.bool)
    for i, bag in enumerate(bags):
        n = len(bag)
        if n:
            out[i, :n] = torch.from_numpy(np.ascontiguousarray(bag, dtype=np.float32))
            mask[i, :n] = True
    return out, mask


def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Turn PatientDataset items into a model batch (see histo.interfaces.models for the layout)."""
    batch: dict[str, Any] = {
        "patient_id": [item["patient_id"] for item in items],
        "target": torch.from_numpy(np.stack([item["target"] for item in items])),
        "features": {},
        "mask": {},
        "coords": {},
        "omics": {},
    }
    first = items[0]
    for mag in first["features"]:
        dim = first["features"][mag].shape[1]
        batch["features"][mag], batch["mask"][mag] = pad_bags([item["features"][mag] for item in items], dim)
        coords, _ = pad_bags([item["coords"][mag] for item in items], 2)
        batch["coords"][mag] = coords
    for group in first["omics"]:
        batch["omics"][group] = torch.from_numpy(np.stack([item["omics"][group] for item in items])).float()
    return batch


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    def move(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.to(device, non_blocking=True)
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        return value

    return {k: move(v) for k, v in batch.items()}
