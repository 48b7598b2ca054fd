"""`histo run --rerun STAGE`: which stages to run regardless of their cache keys."""

from __future__ import annotations

from collections.abc import Collection

from ..errors import Problem, RecipeError
from ..recipe.loader import LoadedRecipe


def forced_stages(loaded: LoadedRecipe, rerun: Collection[str]) -> set[str]:
    """The named stages and every stage that reads one of them, directly or through another: a
    forced stage may write different outputs (the reason to force it), so its readers rerun too."""
    ids = [stage.id for stage in loaded.stages]
    unknown = [name for name in rerun if name not in ids]
    if unknown:
        raise RecipeError(
            [Problem(f"--rerun {name}", f"no stage {name!r}; stages: {', '.join(ids)}") for name in unknown],
            source="--rerun",
        )
    forced = set(rerun)
    for stage in loaded.stages:  # recipe order: a stage's upstream comes before it
        if any(upstream in forced for upstream in stage.upstream):
            forced.add(stage.id)
    return forced
