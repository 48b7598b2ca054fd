"""histo plugin: the `film` fusion strategy (the transcriptome modulates patch features, then attention)."""

__version__ = "0.1.0"
