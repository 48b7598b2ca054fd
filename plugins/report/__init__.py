"""The run report: one self-contained HTML page per run directory, and attention heatmaps.

`build_report(run_dir)` writes `<run_dir>/report.html` (see docs/report.md); `render_heatmap(...)`
draws per-patch weights over a slide thumbnail. The `report` and `heatmaps` stages and the
`histo report` command use them. Matplotlib and Pillow are imported only when a picture is made.
"""

from __future__ import annotations

from .build import build_report
from .heatmap import read_weight_maps, render_heatmap

__all__ = ["build_report", "read_weight_maps", "render_heatmap"]
