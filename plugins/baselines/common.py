"""Kept for code that imported it: the helper is public as `histo.blocks.embedding_dim`."""

from histo.blocks import embedding_dim as output_dim

__all__ = ["output_dim"]
