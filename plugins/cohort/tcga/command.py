"""`histo cohort tcga`: the `tcga_cohort` stage's work from the command line, into a folder.

The flags map onto the stage's params (docs/cohorts.md), so a cohort built here and one built in a recipe
are the same; the recipe is preferable when training follows, since the match report then lands in the run.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `histo cohort tcga` (parsing them imports nothing heavy)."""
    parser.add_argument(
        "--out", required=True, help="folder for cohort.csv, omics.csv, match_report.*, slides/"
    )
    parser.add_argument(
        "--clinical", required=True, help="GDC clinical.tsv, cBioPortal patient file, or a table"
    )
    parser.add_argument(
        "--clinical-columns",
        nargs=3,
        metavar=("CASE", "TIME", "EVENT"),
        help="for any other table: its case, time and 0/1 event columns",
    )
    parser.add_argument(
        "--censored", action="store_true", help="with --clinical-columns: 1 in EVENT = censored"
    )
    parser.add_argument(
        "--clinical-time-unit",
        choices=["days", "months"],
        default="months",
        help="with --clinical-columns: the unit of TIME",
    )
    parser.add_argument("--keep-column", action="append", default=[], help="clinical column to copy")
    parser.add_argument("--slides", help="folder of slide files named by TCGA barcode")
    parser.add_argument("--sample-sheet", action="append", default=[], help="a GDC sample sheet (repeatable)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--xena", help="a Xena expression matrix")
    source.add_argument("--star", help="a folder of GDC STAR gene count files")
    parser.add_argument(
        "--xena-scale",
        choices=["linear", "log2p1", "log2p001"],
        default="log2p1",
        help="what the Xena matrix holds",
    )
    parser.add_argument("--star-value", default="tpm_unstranded", help="the STAR column to read")
    parser.add_argument(
        "--scale", choices=["linear", "log2p1"], default="log2p1", help="what omics.csv holds"
    )
    parser.add_argument("--sample-type", action="append", help="sample type code (repeatable; default 01)")
    parser.add_argument(
        "--slide-type",
        action="append",
        choices=["DX", "TS", "BS", "MS"],
        help="slide type (repeatable; default DX)",
    )
    parser.add_argument("--time-unit", choices=["months", "days"], default="months", help="unit of time")
    parser.add_argument("--no-link", action="store_true", help="do not write slides/ links")


def params_from(args: argparse.Namespace) -> dict[str, Any]:
    """The stage params the flags stand for."""
    clinical: dict[str, Any] = {"table": args.clinical, "keep_columns": args.keep_column}
    if args.clinical_columns:
        case, time, event = args.clinical_columns
        clinical |= {
            "format": "columns",
            "patient_column": case,
            "time_column": time,
            "event_column": event,
            "event_is": "censored" if args.censored else "event",
            "time_unit": args.clinical_time_unit,
        }
    params: dict[str, Any] = {
        "clinical": clinical,
        "slides": args.slides,
        "sample_sheets": args.sample_sheet,
        "time_unit": args.time_unit,
        "link_slides": not args.no_link,
    }
    if args.xena:
        params["expression"] = {
            "format": "xena",
            "path": args.xena,
            "input_scale": args.xena_scale,
            "scale": args.scale,
        }
    elif args.star:
        params["expression"] = {
            "format": "star",
            "path": args.star,
            "value": args.star_value,
            "scale": args.scale,
        }
    if args.sample_type:
        params["sample_types"] = args.sample_type
    if args.slide_type:
        params["slide_types"] = args.slide_type
    return params


def main(argv: list[str], say: Any = print) -> int:
    """Parse `histo cohort tcga`'s flags and run it."""
    parser = argparse.ArgumentParser(
        prog="histo cohort tcga",
        description="Match a TCGA download by case into cohort.csv, omics.csv and a match report "
        "(docs/cohorts.md, 'TCGA and GDC cohorts').",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv), say)


def run(args: argparse.Namespace, say: Any = print) -> int:
    """Build and write the cohort; `say` prints the summary lines. Errors raise HistoError."""
    from pathlib import Path

    from histo.recipe import resolve_config

    from .build import build_tcga_cohort
    from .config import TcgaCohortConfig
    from .write import write_tcga_cohort

    config = resolve_config(TcgaCohortConfig, params_from(args), label="histo cohort tcga")
    cohort = build_tcga_cohort(config)
    written = write_tcga_cohort(cohort, Path(args.out), link=config.link_slides)
    for line in cohort.summary_lines():
        say(line)
    say(f"wrote {', '.join(str(p) for p in written.values())}")
    return 0
