"""histo plugin: the `gated_mil` slide encoder (multi-branch gated-attention MIL)."""

__version__ = "0.1.0"
