"""Runs: the run directory, provenance, content-addressed stage caching and the stage runner."""

from .context import StageContext
from .runner import RunResult, run_recipe

__all__ = ["RunResult", "StageContext", "run_recipe"]
