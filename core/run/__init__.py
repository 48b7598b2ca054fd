"""Runs: the run directory, provenance, content-addressed stage caching and the stage runner."""

from .context import StageContext
from .environment import EnvironmentFault, raise_if_environment
from .runner import RunResult, run_recipe

__all__ = ["EnvironmentFault", "RunResult", "StageContext", "raise_if_environment", "run_recipe"]
