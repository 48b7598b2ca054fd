"""histo plugin: the `gene_transformer` omics encoder (one token per gene group, self-attention)."""

__version__ = "0.1.0"
