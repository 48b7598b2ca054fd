"""Multi-magnification tiling: target magnifications, per-slide read plans, aligned grids, coords files.

Not a plugin kind: the `tile` stage uses it, and so can any stage or script that needs patch grids.
"""

from .grid import Grid, integral_image, tile, tissue_fractions
from .magnification import Magnification, nest, ratio
from .plan import GridPlan, TilingError, choose_level, plan_grids

__all__ = [
    "Grid",
    "GridPlan",
    "Magnification",
    "TilingError",
    "choose_level",
    "integral_image",
    "nest",
    "plan_grids",
    "ratio",
    "tile",
    "tissue_fractions",
]
