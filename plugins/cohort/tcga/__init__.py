"""TCGA / GDC cohorts: slides named by barcode, GDC sample sheets, GDC or cBioPortal clinical files and
Xena or STAR expression, matched by case into histo's cohort tables with a report of who was left out
and why. The `tcga_cohort` stage and `histo cohort tcga` run it; docs/cohorts.md is the user guide."""

from .barcodes import Barcode, parse_barcode
from .build import TcgaCohort, build_tcga_cohort
from .clinical import Survival, read_survival
from .config import ClinicalConfig, ExpressionConfig, TcgaCohortConfig
from .expression import Expression, read_expression, read_star
from .sample_sheet import SheetEntry, read_sample_sheet, read_sample_sheets
from .write import OUTPUTS, write_tcga_cohort

__all__ = [
    "OUTPUTS",
    "Barcode",
    "ClinicalConfig",
    "Expression",
    "ExpressionConfig",
    "SheetEntry",
    "Survival",
    "TcgaCohort",
    "TcgaCohortConfig",
    "build_tcga_cohort",
    "parse_barcode",
    "read_expression",
    "read_sample_sheet",
    "read_sample_sheets",
    "read_star",
    "read_survival",
    "write_tcga_cohort",
]
