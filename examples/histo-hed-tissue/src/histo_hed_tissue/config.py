"""Parameters of `hed_threshold`. Only pydantic is imported here: histo reads this class when it lists
plugins and validates recipes, long before any pixel is read."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)

Stain = Literal["haematoxylin", "eosin", "dab"]
H_AND_E: tuple[Stain, ...] = ("haematoxylin", "eosin")


class HedThresholdConfig(BaseModel):
    """Tissue where the chosen stains' optical density exceeds a threshold, then cleaned up.

    Areas and radii are in microns (converted with the slide's mpp), so one setting works across
    scanners and magnifications.
    """

    # extra="forbid": a misspelt key in a recipe is an error naming it, not a silently ignored option
    model_config = ConfigDict(extra="forbid")

    thumbnail_size: int = Field(
        default=2048,
        ge=64,
        le=16384,
        description="longer side, in pixels, of the low-resolution image the mask is computed on",
    )
    stains: list[Stain] = Field(
        default_factory=lambda: list(H_AND_E),
        min_length=1,
        description="stains whose optical densities are summed; add 'dab' for brown IHC staining",
    )
    threshold: Literal["otsu"] | Annotated[float, Field(gt=0)] = Field(
        default="otsu",
        description="'otsu' picks the cut per slide (Otsu on log optical density); a number is a fixed "
        "optical density above which a pixel is tissue (0.1-0.2 suits most H&E)",
    )
    min_od: float = Field(
        default=0.05,
        ge=0,
        description="floor for the Otsu cut, so that on a slide with no tissue glass noise is not split "
        "into 'tissue' and 'background'",
    )
    closing_radius_um: float = Field(
        default=20.0,
        ge=0,
        description="radius (microns) of the morphological closing that joins nearby tissue fragments; "
        "0 disables it",
    )
    max_hole_area_um2: float = Field(
        default=10_000.0,
        ge=0,
        description="holes inside tissue up to this area (square microns) are filled; larger ones "
        "(lumens, fat) stay background; 0 keeps every hole",
    )
    min_tissue_area_um2: float = Field(
        default=20_000.0,
        ge=0,
        description="tissue regions smaller than this (square microns) are dropped as debris; 0 keeps all",
    )

    @field_validator("threshold", mode="wrap")
    @classmethod
    def _one_threshold_message(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # pydantic reports a failed union once per branch; a recipe author needs one sentence
        try:
            return handler(value)
        except ValidationError:
            raise ValueError("expected 'otsu' or an optical density above 0") from None
