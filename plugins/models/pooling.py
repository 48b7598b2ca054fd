"""Masked pooling helpers, now public in `histo.blocks` (kept here for code that imported them)."""

from histo.blocks import masked_mean, masked_softmax

__all__ = ["masked_mean", "masked_softmax"]
