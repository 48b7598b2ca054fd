"""Expression tables and gene groups: the real TCGA-STAD Xena table with Hallmark sets, and bad tables."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from pydantic import ValidationError

from histo.errors import HistoError
from histo.plugins.cohort import (
    HALLMARK_TUMOUR_MICROENVIRONMENT,
    GeneGroupsConfig,
    OmicsConfig,
    load_omics,
    read_gene_list,
    read_gmt,
    resolve_groups,
)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "cohorts.md"


def stad(shared_data: Path) -> Path:
    return shared_data / "omics" / "tcga_stad" / "rna_xena.csv"


def hallmark(shared_data: Path) -> Path:
    return shared_data / "genesets" / "h.all.v7.0.symbols.gmt"


def write(tmp_path: Path, text: str, name: str = "omics.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def inline(**groups: list[str]) -> GeneGroupsConfig:
    return GeneGroupsConfig(genes=groups)


# --- real data ----------------------------------------------------------------------------------------


def test_stad_hallmark_groups_report_found_and_missing(shared_data: Path) -> None:
    config = OmicsConfig(
        table=stad(shared_data),
        groups=GeneGroupsConfig(gmt=hallmark(shared_data), select=HALLMARK_TUMOUR_MICROENVIRONMENT),
    )
    omics = load_omics(config)

    table = pd.read_csv(stad(shared_data), index_col=0)
    sets = read_gmt(hallmark(shared_data))
    for group, names in HALLMARK_TUMOUR_MICROENVIRONMENT.items():
        requested = list(dict.fromkeys(g for n in names for g in sets[n]))
        found = [g for g in requested if g in table.columns]
        assert omics.groups[group] == found
        report = omics.reports[group]
        assert (report.requested, report.found, report.missing) == (
            len(requested),
            len(found),
            len(requested) - len(found),
        )
        assert set(report.missing_examples) <= set(requested) - set(found)
    used = set(omics.groups["tumour"]) | set(omics.groups["microenvironment"])
    assert list(omics.data.columns) == list(
        dict.fromkeys(omics.groups["tumour"] + omics.groups["microenvironment"])
    )
    assert omics.unused_genes == table.shape[1] - len(used)
    assert omics.data.index.tolist() == table.index.tolist()
    gene = omics.groups["tumour"][0]
    np.testing.assert_allclose(omics.data[gene].to_numpy(), table[gene].to_numpy())
    assert omics.exclusions == []


def test_stad_without_groups_is_one_group_of_every_gene(shared_data: Path) -> None:
    omics = load_omics(OmicsConfig(table=stad(shared_data)))
    assert list(omics.groups) == ["all"]
    assert omics.data.shape == (336, 1577)


def test_stad_is_log_scaled_so_log2p1_is_refused(shared_data: Path) -> None:
    expected = r"rna_xena\.csv: log_transform log2p1 needs values >= 0.*row \d+.*looks log-scaled already"
    with pytest.raises(HistoError, match=expected):
        load_omics(OmicsConfig(table=stad(shared_data), log_transform="log2p1"))


def test_hallmark_sets_parse(shared_data: Path) -> None:
    sets = read_gmt(hallmark(shared_data))
    assert len(sets) == 50
    assert len({g for genes in sets.values() for g in genes}) == 4384
    assert sets["HALLMARK_ANGIOGENESIS"][:3] == ["VCAN", "POSTN", "FSTL1"]


def test_docs_example_matches_the_hallmark_mapping(shared_data: Path) -> None:
    """The YAML in docs/cohorts.md is the mapping the code ships, and every set exists in Hallmark v7.0."""
    text = DOCS.read_text()
    block = re.search(r"<!-- hallmark-groups -->\s*```yaml\n(.*?)```", text, re.S)
    assert block is not None, "docs/cohorts.md lost its hallmark-groups example"
    omics = yaml.safe_load(block.group(1))["omics"]
    omics["table"] = str(stad(shared_data))
    omics["groups"]["gmt"] = str(hallmark(shared_data))
    config = OmicsConfig.model_validate(omics)
    assert config.groups.select == HALLMARK_TUMOUR_MICROENVIRONMENT
    loaded = load_omics(config)
    assert all(len(genes) > 0 for genes in loaded.groups.values())


# --- groups -------------------------------------------------------------------------------------------


def test_gmt_without_select_gives_one_group_per_set(tmp_path: Path) -> None:
    gmt = write(tmp_path, "S1\turl\tA\tB\n\nS2\t\tC\tA\n", "sets.gmt")
    assert resolve_groups(GeneGroupsConfig(gmt=gmt)) == {"S1": ["A", "B"], "S2": ["C", "A"]}


def test_select_merges_sets_and_lists_files_name_groups(tmp_path: Path) -> None:
    gmt = write(tmp_path, "S1\t-\tA\tB\nS2\t-\tB\tC\nS3\t-\tD\n", "sets.gmt")
    listed = write(tmp_path, "# immune genes\nE\n\nF\nE\n", "immune.txt")
    config = GeneGroupsConfig(gmt=gmt, select={"t": ["S1", "S2"]}, lists=[listed], genes={"x": ["D", " G "]})
    assert resolve_groups(config) == {"t": ["A", "B", "C"], "immune": ["E", "F"], "x": ["D", "G"]}


def test_exclusive_keeps_a_shared_gene_in_the_first_group(tmp_path: Path) -> None:
    config = GeneGroupsConfig(genes={"a": ["G1", "G2"], "b": ["G2", "G3"]}, exclusive=True)
    assert resolve_groups(config) == {"a": ["G1", "G2"], "b": ["G3"]}
    shared = GeneGroupsConfig(genes={"a": ["G1", "G2"], "b": ["G2", "G3"]})
    assert resolve_groups(shared)["b"] == ["G2", "G3"]


def test_unknown_set_name_suggests_close_names(shared_data: Path) -> None:
    config = GeneGroupsConfig(gmt=hallmark(shared_data), select={"t": ["HALLMARK_E2F_TARGET"]})
    with pytest.raises(
        HistoError, match=r"groups\.select\.t names HALLMARK_E2F_TARGET.*did you mean HALLMARK_E2F_TARGETS"
    ):
        resolve_groups(config)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("S1 A B C\n", r"line 1: a GMT line is name<TAB>"),
        ("S1\t-\tA\nS1\t-\tB\n", "line 2: gene set 'S1' is defined twice"),
        ("\n", "no gene sets"),
    ],
)
def test_malformed_gmt(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(HistoError, match=match):
        read_gmt(write(tmp_path, text, "bad.gmt"))


def test_gene_list_rejects_several_genes_per_line(tmp_path: Path) -> None:
    with pytest.raises(HistoError, match=r"list\.txt, line 2: expected one gene per line"):
        read_gene_list(write(tmp_path, "A\nB,C\n", "list.txt"))
    with pytest.raises(HistoError, match="empty"):
        read_gene_list(write(tmp_path, "# nothing\n", "empty.txt"))


def test_group_defined_twice_is_an_error(tmp_path: Path) -> None:
    listed = write(tmp_path, "A\n", "t.txt")
    with pytest.raises(HistoError, match="gene group 't' is defined twice"):
        resolve_groups(GeneGroupsConfig(lists=[listed], genes={"t": ["B"]}))


def test_select_needs_a_gmt() -> None:
    with pytest.raises(ValidationError, match="select names GMT sets, so it needs gmt"):
        GeneGroupsConfig(select={"t": ["S1"]})


def test_group_with_no_gene_in_table_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "id,TP53,MKI67\np1,1,2\n")
    config = OmicsConfig(table=path, groups=inline(t=["TP53"], m=["ENSG000001", "ENSG000002"]))
    with pytest.raises(
        HistoError, match=r"gene group 'm' has none of its 2 genes.*ENSG000001, ENSG000002.*TP53, MKI67"
    ):
        load_omics(config)


def test_missing_genes_are_counted_not_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "id,TP53,MKI67,CD8A\np1,1,2,3\np2,4,5,6\n")
    omics = load_omics(OmicsConfig(table=path, groups=inline(t=["TP53", "MYC", "MKI67"], m=["CD8A", "CD4"])))
    assert omics.groups == {"t": ["TP53", "MKI67"], "m": ["CD8A"]}
    assert (omics.reports["t"].missing, omics.reports["t"].missing_examples) == (1, ("MYC",))
    assert omics.reports["m"].to_dict() == {
        "requested": 2,
        "found": 1,
        "missing": 1,
        "missing_examples": ["CD4"],
    }


# --- values -------------------------------------------------------------------------------------------

NAN_TABLE = "id,G1,G2,G3\np1,1,2,3\np2,,5,6\np3,7,inf,9\np4,1,1,1\n"


def test_missing_values_exclude_the_patient_by_default(tmp_path: Path) -> None:
    omics = load_omics(OmicsConfig(table=write(tmp_path, NAN_TABLE)))
    assert omics.ids == ["p1", "p4"]
    assert [(e.patient, e.rows, e.reason) for e in omics.exclusions] == [
        ("p2", (3,), "missing or infinite expression for G1"),
        ("p3", (4,), "missing or infinite expression for G2"),
    ]


def test_missing_values_in_ungrouped_genes_do_not_matter(tmp_path: Path) -> None:
    omics = load_omics(OmicsConfig(table=write(tmp_path, NAN_TABLE), groups=inline(g=["G3"])))
    assert omics.ids == ["p1", "p2", "p3", "p4"]
    assert omics.unused_genes == 2


def test_missing_values_as_error_name_row_and_genes(tmp_path: Path) -> None:
    with pytest.raises(HistoError, match=r"2 patient\(s\) in 2 gene\(s\), e\.g\. patient p2 \(row 3\): G1"):
        load_omics(OmicsConfig(table=write(tmp_path, NAN_TABLE), missing="error"))


def test_missing_values_drop_gene(tmp_path: Path) -> None:
    omics = load_omics(
        OmicsConfig(
            table=write(tmp_path, NAN_TABLE),
            missing="drop_gene",
            groups=inline(a=["G1", "G3"], b=["G2", "G3"]),
        )
    )
    assert omics.dropped_genes == ["G1", "G2"]
    assert omics.groups == {"a": ["G3"], "b": ["G3"]}
    assert omics.ids == ["p1", "p2", "p3", "p4"]
    with pytest.raises(HistoError, match="gene group 'b' has no gene left"):
        load_omics(
            OmicsConfig(
                table=write(tmp_path, NAN_TABLE), missing="drop_gene", groups=inline(a=["G3"], b=["G2"])
            )
        )


def test_log2p1(tmp_path: Path) -> None:
    omics = load_omics(OmicsConfig(table=write(tmp_path, "id,G1\np1,0\np2,3\n"), log_transform="log2p1"))
    assert omics.data["G1"].tolist() == [0.0, 2.0]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("id,G1\np1,1\np2,2\np1,3\n", r"patient p1 has several rows \(rows 2, 4"),
        ("id,G1\np1,1\n,2\n", r"row 3 have no patient id"),
        ("id,G1,type\np1,1,tumour\n", r"gene column\(s\) type hold text.*row 2: 'tumour'"),
        ("id\np1\n", "no gene columns"),
    ],
)
def test_bad_tables(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(HistoError, match=match):
        load_omics(OmicsConfig(table=write(tmp_path, text)))


def test_named_patient_column_and_tsv(tmp_path: Path) -> None:
    path = write(tmp_path, "G1\tcase\tG2\n1\tp1\t2\n3\tp2\t4\n", "omics.tsv")
    omics = load_omics(OmicsConfig(table=path, patient_column="case"))
    assert omics.ids == ["p1", "p2"]
    assert omics.data.columns.tolist() == ["G1", "G2"]
    with pytest.raises(HistoError, match="patient_column 'case_id' not found"):
        load_omics(OmicsConfig(table=path, patient_column="case_id"))
