"""Cohort and transcriptomics data layer: patient tables, expression with gene groups, leak-free
cross-validation folds and the per-fold transforms, used by the training stages.

Not a plugin kind: nothing here registers with the plugin manager, so importing it (pandas) costs
nothing for `histo plugins`. docs/cohorts.md is the user guide.
"""

from .cohort import Cohort, CohortConfig, load_cohort
from .exclusions import Exclusion
from .genesets import (
    HALLMARK_TUMOUR_MICROENVIRONMENT,
    GeneGroupsConfig,
    read_gene_list,
    read_gmt,
    resolve_groups,
)
from .omics import GroupReport, OmicsConfig, OmicsTable, load_omics
from .report import cohort_report, modalities, write_cohort_report
from .splits import Fold, SplitConfig, export_splits, make_splits, split_files, splits_summary
from .table import read_table, slide_key
from .transforms import (
    ClassWeights,
    OmicsPipeline,
    OmicsPreprocessConfig,
    OmicsScaler,
    SurvivalBins,
    VarianceFilter,
)

__all__ = [
    "HALLMARK_TUMOUR_MICROENVIRONMENT",
    "ClassWeights",
    "Cohort",
    "CohortConfig",
    "Exclusion",
    "Fold",
    "GeneGroupsConfig",
    "GroupReport",
    "OmicsConfig",
    "OmicsPipeline",
    "OmicsPreprocessConfig",
    "OmicsScaler",
    "OmicsTable",
    "SplitConfig",
    "SurvivalBins",
    "VarianceFilter",
    "cohort_report",
    "export_splits",
    "load_cohort",
    "load_omics",
    "make_splits",
    "modalities",
    "read_gene_list",
    "read_gmt",
    "read_table",
    "resolve_groups",
    "slide_key",
    "split_files",
    "splits_summary",
    "write_cohort_report",
]
