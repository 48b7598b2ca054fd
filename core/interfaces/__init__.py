"""The contract of each component kind. Plugins implement these; stages consume them.

Torch-based kinds are Protocols, so that importing this package (and listing plugins) does not import
torch.
"""

from .classical import ClassicalModel, InnerSplit
from .features import FeatureExtractor
from .models import (
    Distiller,
    FusionStrategy,
    GradientCoordinator,
    ModelDims,
    OmicsEncoder,
    SlideEncoder,
    Task,
    TokenAggregator,
)
from .slides import Mpp, Slide, SlideReader
from .stages import Stage, StageContext
from .tissue import TissueMask, TissueSegmenter

__all__ = [
    "ClassicalModel",
    "Distiller",
    "FeatureExtractor",
    "FusionStrategy",
    "GradientCoordinator",
    "InnerSplit",
    "ModelDims",
    "Mpp",
    "OmicsEncoder",
    "Slide",
    "SlideEncoder",
    "SlideReader",
    "Stage",
    "StageContext",
    "Task",
    "TissueMask",
    "TissueSegmenter",
    "TokenAggregator",
]
