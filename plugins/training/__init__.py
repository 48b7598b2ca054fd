"""The training engine: patient bags, padding collation, the fit loop, evaluation and checkpoints."""
