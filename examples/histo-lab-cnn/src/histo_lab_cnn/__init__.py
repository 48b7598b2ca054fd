"""histo plugin: `lab_cnn`, a lab's own CNN patch encoder with its trained weights loaded from disk."""

__version__ = "0.1.0"
