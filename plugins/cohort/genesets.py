"""Gene groups: which genes feed which omics encoder, from GMT sets, list files or inline lists."""

from __future__ import annotations

import difflib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from histo.errors import HistoError
from histo.recipe.refs import InputPath

from .table import few

# The documented default for the paper's knowledge-driven split on TCGA (docs/cohorts.md says why):
# cancer-cell-intrinsic programmes (proliferation, oncogenic signalling, DNA repair) versus programmes
# carried by immune and stromal cells (immune signalling, complement, angiogenesis, and EMT, which in
# bulk tumours mostly reflects cancer-associated fibroblasts).
HALLMARK_TUMOUR_MICROENVIRONMENT: dict[str, list[str]] = {
    "tumour": [
        "HALLMARK_E2F_TARGETS",
        "HALLMARK_G2M_CHECKPOINT",
        "HALLMARK_MITOTIC_SPINDLE",
        "HALLMARK_MYC_TARGETS_V1",
        "HALLMARK_MYC_TARGETS_V2",
        "HALLMARK_MTORC1_SIGNALING",
        "HALLMARK_PI3K_AKT_MTOR_SIGNALING",
        "HALLMARK_DNA_REPAIR",
        "HALLMARK_WNT_BETA_CATENIN_SIGNALING",
    ],
    "microenvironment": [
        "HALLMARK_INFLAMMATORY_RESPONSE",
        "HALLMARK_INTERFERON_GAMMA_RESPONSE",
        "HALLMARK_INTERFERON_ALPHA_RESPONSE",
        "HALLMARK_ALLOGRAFT_REJECTION",
        "HALLMARK_IL6_JAK_STAT3_SIGNALING",
        "HALLMARK_IL2_STAT5_SIGNALING",
        "HALLMARK_TNFA_SIGNALING_VIA_NFKB",
        "HALLMARK_COMPLEMENT",
        "HALLMARK_ANGIOGENESIS",
        "HALLMARK_EPITHELIAL_MESENCHYMAL_TRANSITION",
        "HALLMARK_TGF_BETA_SIGNALING",
    ],
}


class GeneGroupsConfig(BaseModel):
    """Gene groups, each feeding one omics encoder. With no source at all, every gene of the table
    forms one group named `all`."""

    model_config = ConfigDict(extra="forbid")

    gmt: InputPath | None = Field(
        default=None, description="GMT file (MSigDB format: name, description, genes)."
    )
    select: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Group name -> GMT set names merged into that group (union). Empty with a gmt: "
        "every set of the file is its own group.",
    )
    lists: list[InputPath] = Field(
        default_factory=list,
        description="Plain text files, one gene per line (blank lines and # comments ignored); each "
        "file is a group named after the file name without extension.",
    )
    genes: dict[str, list[str]] = Field(
        default_factory=dict, description="Group name -> genes, written in the recipe."
    )
    exclusive: bool = Field(
        default=False,
        description="A gene requested by several groups stays in the first of them only (order: select, "
        "lists, genes, each as written), so the groups' inputs are disjoint.",
    )

    @model_validator(mode="after")
    def _select_needs_gmt(self) -> GeneGroupsConfig:
        if self.select and self.gmt is None:
            raise ValueError("select names GMT sets, so it needs gmt: <file.gmt>")
        empty = [name for name, sets in self.select.items() if not sets]
        if empty:
            raise ValueError(f"select: group {empty[0]!r} lists no GMT sets")
        return self


def _unique(genes: list[str]) -> list[str]:
    return list(dict.fromkeys(g for g in genes if g))


def read_gmt(path: Path) -> dict[str, list[str]]:
    """Sets of a GMT file: tab-separated `name<TAB>description<TAB>gene<TAB>gene...` per line."""
    path = Path(path)
    if not path.is_file():
        raise HistoError(f"{path}: no such GMT file; check groups.gmt in the recipe")
    sets: dict[str, list[str]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = [f.strip() for f in line.split("\t")]
        if len(fields) < 3 or not fields[0]:
            raise HistoError(
                f"{path}, line {number}: a GMT line is name<TAB>description<TAB>genes...; "
                f"found {len(fields)} tab-separated field(s). Is the file tab-separated?"
            )
        if fields[0] in sets:
            raise HistoError(f"{path}, line {number}: gene set {fields[0]!r} is defined twice")
        sets[fields[0]] = _unique(fields[2:])
    if not sets:
        raise HistoError(f"{path}: no gene sets in the file")
    return sets


def read_gene_list(path: Path) -> list[str]:
    """One gene per line; blank lines and lines starting with # are ignored."""
    path = Path(path)
    if not path.is_file():
        raise HistoError(f"{path}: no such gene list file; check groups.lists in the recipe")
    genes = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        gene = line.strip()
        if not gene or gene.startswith("#"):
            continue
        if any(sep in gene for sep in ("\t", ",", " ", ";")):
            raise HistoError(
                f"{path}, line {number}: expected one gene per line, found {gene[:60]!r}; "
                "for GMT files use groups.gmt"
            )
        genes.append(gene)
    if not genes:
        raise HistoError(f"{path}: the gene list is empty")
    return _unique(genes)


def resolve_groups(config: GeneGroupsConfig) -> dict[str, list[str]]:
    """Requested genes per group, in the order written; {} when no source is configured."""
    groups: dict[str, list[str]] = {}

    def add(name: str, genes: list[str], where: str) -> None:
        if name in groups:
            raise HistoError(
                f"gene group {name!r} is defined twice (again by {where}); group names must be unique"
            )
        groups[name] = _unique(genes)

    if config.gmt is not None:
        sets = read_gmt(config.gmt)
        for group, names in (config.select or {s: [s] for s in sets}).items():
            unknown = [n for n in names if n not in sets]
            if unknown:
                close = difflib.get_close_matches(unknown[0], list(sets), n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else f"; it has {few(sets, 4)}"
                raise HistoError(
                    f"{config.gmt}: groups.select.{group} names {few(unknown, 3)}, not a set of "
                    f"this file{hint}"
                )
            add(group, [g for n in names for g in sets[n]], f"groups.select in {config.gmt}")
    for path in config.lists:
        add(Path(path).stem, read_gene_list(path), f"groups.lists file {path}")
    for group, genes in config.genes.items():
        if not genes:
            raise HistoError(f"groups.genes.{group} is empty; list at least one gene")
        add(group, [g.strip() for g in genes], "groups.genes")
    if config.exclusive:
        taken: set[str] = set()
        for group, genes in groups.items():
            groups[group] = [g for g in genes if g not in taken]
            taken.update(genes)
    return groups
