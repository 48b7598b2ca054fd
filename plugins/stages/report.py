"""`report`: writes `<run>/report.html`, one self-contained page describing the run it is part of.

It builds from the summary the runner has written so far (the stages before it) and shows the
stages after it as pending; `histo report RUN_DIR` rebuilds the page from a finished run at any time.
The page's content is described in docs/report.md.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from histo import ComponentSpec
from histo.interfaces import Stage, StageContext


class ReportConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, description="page title; default 'histo run report: <run name>'")


class ReportStage(Stage[ReportConfig]):
    # The report shows the whole run but names no upstream stage, so no cache key could see a change
    # in what it describes: it is rebuilt on every run (about a second).
    cacheable = False

    def run(self, ctx: StageContext) -> None:
        from histo.plugins.report import build_report

        if not ctx.is_main:
            return
        path = build_report(ctx.run_dir, title=self.config.title, building=ctx.stage_id)
        ctx.add_artifact(path, "this report (self-contained HTML)")
        ctx.log.info("%s: wrote %s", ctx.stage_id, path)


SPEC = ComponentSpec(
    name="report",
    factory=ReportStage,
    config=ReportConfig,
    description="one self-contained HTML page (report.html) with the run's results, plots and failures",
)
