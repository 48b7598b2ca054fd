"""Matching clinical, slides and expression by case, and the report of who is in and who is not, and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from histo.errors import HistoError

from ..table import few
from .clinical import Survival, read_survival
from .config import TcgaCohortConfig
from .expression import Expression, FileNote, read_expression
from .sample_sheet import read_sample_sheets
from .slides import SlideFile, scan_slides


@dataclass
class TcgaCohort:
    """The matched cohort: `cases` is one row per case (matched or not) with its status and reasons."""

    cases: pd.DataFrame
    slides: dict[str, list[SlideFile]]
    survival: Survival
    expression: Expression | None
    notes: list[FileNote] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def matched(self) -> list[str]:
        return self.cases.index[self.cases["status"] == "matched"].tolist()

    def cohort_table(self) -> pd.DataFrame:
        """cohort.csv: one row per kept slide of each matched case (one row per case without slides)."""
        rows = []
        extra = [c for c in self.survival.table.columns if c not in ("time", "event")]
        for case in self.matched:
            info = self.cases.loc[case]
            base: dict[str, Any] = {"patient_id": case}
            if "survival" in self.settings["required"] or case in self.survival.table.index:
                surv = self.survival.table.loc[case] if case in self.survival.table.index else None
                base["time"] = None if surv is None else round(float(surv["time"]), 4)
                base["event"] = None if surv is None else int(surv["event"])
            base |= {"site": info["site"], "expression_sample": info["expression_sample"]}
            for column in extra:
                base[column] = (
                    self.survival.table.at[case, column] if case in self.survival.table.index else None
                )
            chosen: list[SlideFile | None] = list(self.slides.get(case, []))
            if self.settings["slides"]:
                for slide in chosen or [None]:
                    rows.append(
                        {
                            "patient_id": case,
                            "slide_id": slide.slide_id if slide else None,
                            "sample_type": slide.barcode.sample_type if slide else None,
                            "slide_type": slide.barcode.slide_type if slide else None,
                        }
                        | base
                    )
            else:
                rows.append(base)
        return pd.DataFrame(rows)

    def omics_table(self) -> pd.DataFrame:
        assert self.expression is not None
        keep = [c for c in self.matched if c in self.expression.table.index]
        table = self.expression.table.loc[keep]
        table.index.name = "patient_id"
        return table

    def report(self) -> dict[str, Any]:
        """match_report.json: settings, counts, each unmatched case with its reasons, every file not used."""
        status = self.cases["status"]
        unmatched = self.cases[status != "matched"]
        reasons: dict[str, int] = {}
        for text in unmatched["reasons"]:
            for reason in text.split("; "):
                key = reason.split(":")[0]
                reasons[key] = reasons.get(key, 0) + 1
        multi = sum(1 for c in self.matched if len(self.slides.get(c, [])) > 1)
        return {
            "settings": self.settings,
            "counts": {
                "cases_seen": len(self.cases),
                "matched": int((status == "matched").sum()),
                "unmatched": len(unmatched),
                "unmatched_by_reason": reasons,
                "slides": sum(len(self.slides.get(c, [])) for c in self.matched),
                "cases_with_several_slides": multi,
                "files_not_used": len(self.notes),
            },
            "survival": self.survival.describe(),
            "expression": self.expression.description if self.expression else None,
            "unmatched": [{"case_id": c, "reasons": r.split("; ")} for c, r in unmatched["reasons"].items()],
            "clinical_exclusions": [e.to_dict() for e in self.survival.exclusions],
            "files_not_used": [n.to_dict() for n in self.notes],
        }

    def summary_lines(self) -> list[str]:
        """A few log lines: how many matched, and the commonest reasons for the others."""
        counts = self.report()["counts"]
        lines = [
            f"{counts['matched']} of {counts['cases_seen']} cases matched "
            f"({', '.join(self.settings['required'])}); "
            f"{counts['slides']} slides, {counts['cases_with_several_slides']} cases with several"
        ]
        for reason, n in sorted(counts["unmatched_by_reason"].items(), key=lambda kv: -kv[1]):
            lines.append(f"  {n} case(s) unmatched: {reason}")
        if counts["files_not_used"]:
            lines.append(
                f"  {counts['files_not_used']} file(s) or profiles not used (files_not_used in the report)"
            )
        return lines


def _slide_reason(case: str, notes: list[FileNote]) -> str:
    mine = [n for n in notes if n.case == case]
    if not mine:
        return "no slide: no slide file of this case below slides"
    return "no usable slide: " + few((f"{Path(n.item).name} ({n.reason})" for n in mine), 3)


def _expression_reason(case: str, notes: list[FileNote]) -> str:
    mine = [n for n in notes if n.case == case]
    if not mine:
        return "no expression: no profile of this case in the expression data"
    return "no usable expression: " + few((n.reason for n in mine), 2)


def build_tcga_cohort(config: TcgaCohortConfig) -> TcgaCohort:
    """Read every source and match them by case (docs/cohorts.md, 'TCGA and GDC cohorts')."""
    required = config.required()
    survival = read_survival(config.clinical, config.time_unit)
    sheets = read_sample_sheets(list(config.sample_sheets))
    notes: list[FileNote] = []
    slides: dict[str, list[SlideFile]] = {}
    slide_notes: list[FileNote] = []
    if config.slides is not None:
        slides = scan_slides(
            Path(config.slides), sheets, config.sample_types, list(config.slide_types), slide_notes
        )
    expression = None
    expression_notes: list[FileNote] = []
    if config.expression is not None:
        expression = read_expression(config.expression, sheets, config.sample_types)
        expression_notes = expression.notes
    notes = slide_notes + expression_notes

    excluded = {e.patient: e.reason for e in survival.exclusions if e.patient}
    cases = set(survival.table.index) | set(excluded) | set(slides)
    cases |= {n.case for n in notes if n.case}
    if expression is not None:
        cases |= set(expression.chosen)
    records = []
    for case in sorted(cases):
        reasons = []
        if "survival" in required and case not in survival.table.index:
            reasons.append(
                f"no survival: {excluded[case]}"
                if case in excluded
                else "no survival: not in the clinical table"
            )
        if "slides" in required and not slides.get(case):
            reasons.append(_slide_reason(case, slide_notes))
        if "expression" in required and (expression is None or case not in expression.chosen):
            reasons.append(_expression_reason(case, expression_notes))
        profile = expression.chosen.get(case) if expression is not None else None
        records.append(
            {
                "case_id": case,
                "status": "unmatched" if reasons else "matched",
                "site": case.split("-")[1],
                "slides": ";".join(s.slide_id for s in slides.get(case, [])),
                "expression_sample": profile.barcode.text if profile else None,
                "expression_source": (
                    Path(profile.key).name
                    if config.expression and config.expression.format == "star"
                    else profile.source
                )
                if profile
                else None,
                "reasons": "; ".join(reasons),
            }
        )
    table = pd.DataFrame(records).set_index("case_id")
    settings = {
        "required": required,
        "sample_types": config.sample_types,
        "slide_types": list(config.slide_types),
        "time_unit": config.time_unit,
        "slides": config.slides is not None,
        "sample_sheets": [str(p) for p in config.sample_sheets],
        "aliquot_rule": "first listed sample type with a profile; then the Broad GDAC Firehose replicate "
        "rule (RNA analyte H > R > T, then the later plate, then the highest barcode); "
        "sample-sheet files of one sample by sample id, then file id",
        "slides_rule": "every slide of the case whose sample type and slide type are listed",
    }
    cohort = TcgaCohort(table, slides, survival, expression, notes, settings)
    if not cohort.matched:
        first = few((f"{c}: {r}" for c, r in table["reasons"].items()), 3)
        raise HistoError(f"no case has everything required ({', '.join(required)}); first reasons: {first}")
    return cohort
