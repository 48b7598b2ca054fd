"""`tcga_cohort`: a TCGA cohort from what a lab downloads (GDC slides and sample sheets, GDC or cBioPortal
clinical files, a Xena matrix or STAR count files), matched by case. Outputs in the stage folder:
    cohort.csv          one row per slide of each matched case (patient_id, slide_id, time, event, site, ...)
    omics.csv           the chosen expression profile of each matched case, in the recorded scale
    match_report.json   who was matched, who was not and why, every file not used, the rules applied
    match_report.csv    one row per case seen, with its status and reasons
    slides/             links to the chosen slide files (a tile stage reads them with `slides_from`)
A later train stage reads the tables with `data_from`; docs/cohorts.md has the recipe.
"""

from __future__ import annotations

from histo import ComponentSpec
from histo.interfaces import Stage, StageContext
from histo.plugins.cohort.tcga.config import TcgaCohortConfig


class TcgaCohortStage(Stage[TcgaCohortConfig]):
    version = "1"

    def run(self, ctx: StageContext) -> None:
        from histo.plugins.cohort.tcga import OUTPUTS, build_tcga_cohort, write_tcga_cohort

        cohort = build_tcga_cohort(self.config)
        for line in cohort.summary_lines():
            ctx.log.info("%s: %s", ctx.stage_id, line)
        for case, reasons in cohort.cases.loc[cohort.cases["status"] != "matched", "reasons"].items():
            ctx.record_failure(str(case), str(reasons), kind="match")
        if not ctx.is_main:
            return
        written = write_tcga_cohort(cohort, ctx.out_dir, link=self.config.link_slides)
        for name, path in written.items():
            ctx.add_artifact(path, OUTPUTS.get(name, "links to the cohort's slide files"))
        counts = cohort.report()["counts"]
        ctx.add_metrics(
            cases_matched=counts["matched"],
            cases_unmatched=counts["unmatched"],
            slides=counts["slides"],
            files_not_used=counts["files_not_used"],
        )


SPEC = ComponentSpec(
    "tcga_cohort",
    TcgaCohortStage,
    TcgaCohortConfig,
    "a TCGA cohort from GDC slides and sample sheets, GDC/cBioPortal clinical and Xena/STAR expression, "
    "matched by case, with a report of who was left out and why",
)
