"""GDC-style slide downloads for the TCGA-STAD tables, to try the `tcga_cohort` stage without 300 GB
of slides.

    python -m histo.plugins.cohort.tcga.example runs/tcga_stad_gdc [--data ../shared/data] [--slide FILE]

Writes, as the GDC client lays a download out:
    slides/<file id>/<barcode>.<uuid>.svs   each a link to one real slide (`--slide`, default
                                            CMU-1-small-region), named like the TCGA file it stands for
    gdc_sample_sheet.tsv                    the GDC sample sheet of those files
The names are those of clinical.csv's diagnostic slides, plus what a real download holds besides:
every 7th case also has a frozen top section (01A-01-TS1), every 11th a normal-tissue frozen slide
(11A-01-TS1), and every 29th case's diagnostic slide is listed in the sheet but not downloaded, so the
match report has something to say. Deterministic: the same names every time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import uuid
from pathlib import Path

import pandas as pd

from histo.errors import HistoError
from histo.io import atomic_path

from .sample_sheet import COLUMNS

DEFAULT_DATA = Path("../shared/data")
DEFAULT_SLIDE = Path("slides/cmu-1-small-region.svs")


def _uuid(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"histo-example/{name}"))


def _row(file_name: str, case: str, sample: str, kind: str) -> dict[str, str]:
    return dict(
        zip(
            COLUMNS,
            (_uuid(file_name), file_name, "Biospecimen", "Slide Image", "TCGA-STAD", case, sample, kind),
            strict=True,
        )
    )


def example_files(clinical: Path, cases: int | None = None) -> tuple[list[dict[str, str]], set[str]]:
    """(sample sheet rows, names of the files that are 'not downloaded')."""
    table = pd.read_csv(clinical, dtype=str)
    if not {"case_id", "slide_id"} <= set(table.columns):
        raise HistoError(f"{clinical}: expected columns case_id and slide_id (SurvPath's clinical.csv)")
    ordered = sorted(table["case_id"].unique())[:cases]
    rows: list[dict[str, str]] = []
    missing: set[str] = set()
    for i, case in enumerate(ordered):
        for name in sorted(table.loc[table["case_id"] == case, "slide_id"]):
            sample = name.split("-")[3]
            rows.append(_row(name, case, f"{case}-{sample}", "Primary Tumor"))
            if i % 29 == 28:
                missing.add(name)
        if i % 7 == 0:
            name = f"{case}-01A-01-TS1.{_uuid(case + 'TS1').upper()}.svs"
            rows.append(_row(name, case, f"{case}-01A", "Primary Tumor"))
        if i % 11 == 5:
            name = f"{case}-11A-01-TS1.{_uuid(case + 'N-TS1').upper()}.svs"
            rows.append(_row(name, case, f"{case}-11A", "Solid Tissue Normal"))
    return rows, missing


def write_example(
    out: Path,
    data: Path = DEFAULT_DATA,
    slide: Path | None = None,
    cases: int | None = None,
    copy: bool = False,
) -> Path:
    """Write the slides/ folder and gdc_sample_sheet.tsv under `out`; returns the sheet's path."""
    source = (slide or data / DEFAULT_SLIDE).resolve()
    if not source.is_file():
        raise HistoError(
            f"{source}: no such slide; pass --slide with any slide file, or --data ../shared/data"
        )
    rows, missing = example_files(data / "omics" / "tcga_stad" / "clinical.csv", cases)
    for row in rows:
        if row["File Name"] in missing:
            continue
        target = out / "slides" / row["File ID"] / row["File Name"]
        if target.exists() or target.is_symlink():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if copy:
            with atomic_path(target) as tmp:
                shutil.copyfile(source, tmp)
        else:
            os.symlink(source, target)
    sheet = out / "gdc_sample_sheet.tsv"
    with atomic_path(sheet) as tmp:
        pd.DataFrame(rows, columns=list(COLUMNS)).to_csv(tmp, sep="\t", index=False)
    return sheet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m histo.plugins.cohort.tcga.example",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("out", type=Path, help="folder to write slides/ and gdc_sample_sheet.tsv into")
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="the shared data folder (../shared/data)"
    )
    parser.add_argument("--slide", type=Path, help="the real slide every file links to")
    parser.add_argument("--cases", type=int, help="only the first N cases (sorted by case id)")
    parser.add_argument("--copy", action="store_true", help="copy the slide instead of linking it")
    args = parser.parse_args(argv)
    try:
        sheet = write_example(args.out, args.data, args.slide, args.cases, args.copy)
    except HistoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out / 'slides'} and {sheet}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
