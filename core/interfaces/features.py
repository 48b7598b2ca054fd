"""Patch feature extractors: they declare their input and output, the engine does batching and I/O."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


class FeatureExtractor(ABC):
    """Describes and builds a patch encoder.

    The engine resizes patches to `input_size`, scales to [0, 1], normalises with `mean`/`std` and
    calls the module on float tensors [N, 3, input_size, input_size]; it returns [N, output_dim].
    """

    input_size: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    output_dim: int
    # On a CPU, the most intra-op threads worth giving the module (None: as many as the cores the
    # readers leave). A module of many small ops can run slower on 2 threads than on 1; with a cap,
    # the cores it leaves go to reader workers instead.
    max_threads: int | None = None
    # The filter of the one resize from the read size to `input_size` (PIL's, antialiased when
    # shrinking): models are trained with a given one, and the features depend on it.
    interpolation: str = "bilinear"  # or "bicubic"
    # The autocast dtype the extract stage's `precision: auto` uses on a GPU ("fp32", "bf16" or
    # "fp16"; None: bf16). Some models' authors run them in fp16 or full fp32.
    gpu_precision: str | None = None

    @abstractmethod
    def build(self) -> torch.nn.Module:
        """Construct the model with its weights loaded (called once per process)."""

    def describe(self) -> dict[str, Any]:
        """What identifies this extractor's features; written into every feature file."""
        return {
            "input_size": self.input_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "output_dim": self.output_dim,
        }
