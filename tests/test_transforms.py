"""Per-fold transforms: fitted on training patients only. The leakage tests put extreme values into
test patients and check that nothing fitted moves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from histo.errors import HistoError
from histo.plugins.cohort import (
    HALLMARK_TUMOUR_MICROENVIRONMENT,
    ClassWeights,
    CohortConfig,
    GeneGroupsConfig,
    OmicsConfig,
    OmicsPipeline,
    OmicsPreprocessConfig,
    OmicsScaler,
    SplitConfig,
    SurvivalBins,
    VarianceFilter,
    load_cohort,
    load_omics,
    make_splits,
)


def expression(n: int = 40, genes: int = 6, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = rng.normal(5.0, 1.0, size=(n, genes)) * 2.0 ** np.arange(genes)  # variance grows with j
    return pd.DataFrame(data, index=[f"p{i}" for i in range(n)], columns=[f"G{j}" for j in range(genes)])


TRAIN = [f"p{i}" for i in range(30)]
TEST = [f"p{i}" for i in range(30, 40)]


def poisoned(frame: pd.DataFrame, ids: list[str], value: float = 1e9) -> pd.DataFrame:
    """A copy where the given patients hold an extreme value in every column."""
    copy = frame.copy()
    copy.loc[ids] = value
    return copy


# --- scaler -------------------------------------------------------------------------------------------


def test_scaler_uses_training_rows_only() -> None:
    data = expression()
    scaler = OmicsScaler().fit(data.loc[TRAIN])
    assert scaler.mean_ is not None and scaler.std_ is not None
    np.testing.assert_allclose(scaler.mean_, data.loc[TRAIN].mean())
    np.testing.assert_allclose(scaler.std_, data.loc[TRAIN].std(ddof=0))
    scaled = scaler.transform(data)
    np.testing.assert_allclose(scaled.loc[TRAIN].mean(), 0.0, atol=1e-12)
    np.testing.assert_allclose(scaled.loc[TRAIN].std(ddof=0), 1.0)


def test_scaler_leakage_extreme_test_rows_change_nothing() -> None:
    data = expression()
    clean = OmicsScaler().fit(data.loc[TRAIN])
    dirty = OmicsScaler().fit(poisoned(data, TEST).loc[TRAIN])
    pd.testing.assert_series_equal(clean.mean_, dirty.mean_)
    pd.testing.assert_series_equal(clean.std_, dirty.std_)
    # ...and a poisoned training row does move them, so the check above can fail
    moved = OmicsScaler().fit(poisoned(data, TRAIN[:1]).loc[TRAIN])
    assert not np.allclose(moved.mean_, clean.mean_)


def test_scaler_drops_genes_constant_on_train() -> None:
    data = expression()
    data.loc[TRAIN, "G2"] = 3.0  # constant on train, varies on test: still uninformative to fit on
    scaler = OmicsScaler().fit(data.loc[TRAIN])
    assert scaler.dropped_ == ["G2"]
    assert "G2" not in scaler.transform(data).columns
    assert np.isfinite(scaler.transform(data).to_numpy()).all()


def test_scaler_errors() -> None:
    with pytest.raises(RuntimeError, match="before fit"):
        OmicsScaler().transform(expression())
    scaler = OmicsScaler().fit(expression())
    with pytest.raises(HistoError, match="lacks 1 gene"):
        scaler.transform(expression().drop(columns="G1"))
    with pytest.raises(HistoError, match="missing or infinite"):
        OmicsScaler().fit(poisoned(expression(), ["p0"], np.nan))


# --- variance filter ----------------------------------------------------------------------------------


def test_variance_filter_ranks_on_train_only() -> None:
    data = expression()
    assert VarianceFilter(2).fit(data.loc[TRAIN]).genes_ == ["G4", "G5"]
    leaky = data.copy()
    leaky.loc[TEST, "G0"] = np.linspace(-1e6, 1e6, len(TEST))  # huge variance, but only on test rows
    kept = VarianceFilter(2).fit(leaky.loc[TRAIN])
    assert kept.genes_ == ["G4", "G5"]
    assert kept.transform(leaky).columns.tolist() == ["G4", "G5"]
    assert VarianceFilter(2).fit(leaky).genes_ == ["G0", "G5"]  # fitted on everything it would leak


# --- survival bins ------------------------------------------------------------------------------------


def survival(times: list[float], events: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"time": times, "event": events}, index=[f"p{i}" for i in range(len(times))])


def test_bins_are_quantiles_of_uncensored_training_times() -> None:
    train = survival([1, 2, 3, 4, 5, 6, 7, 8, 100, 200], [1, 1, 1, 1, 1, 1, 1, 1, 0, 0])
    bins = SurvivalBins(4).fit(train)
    assert bins.edges_ is not None
    np.testing.assert_allclose(bins.edges_, [0.0, 2.75, 4.5, 6.25, np.inf])
    assert bins.transform(train).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 3, 3]
    # [a, b): a time on an edge goes to the upper bin; 0 and huge times stay in range
    assert bins.transform(np.array([0.0, 2.75, 4.4999, 1e9])).tolist() == [0, 1, 1, 3]


def test_bins_leakage_test_and_censored_times_do_not_move_edges() -> None:
    train = survival([1, 2, 3, 4, 5, 6, 7, 8], [1] * 8)
    reference = SurvivalBins(4).fit(train).edges_
    test = survival([1e6, 2e6], [1, 1])
    bins = SurvivalBins(4).fit(train)
    bins.transform(pd.concat([train, test]))
    np.testing.assert_array_equal(bins.edges_, reference)
    censored_extreme = pd.concat([train, survival([1e6], [0]).set_axis(["c"])])
    np.testing.assert_array_equal(SurvivalBins(4).fit(censored_extreme).edges_, reference)
    uncensored_extreme = pd.concat([train, survival([1e6], [1]).set_axis(["u"])])
    assert not np.array_equal(SurvivalBins(4).fit(uncensored_extreme).edges_, reference)


def test_bins_errors() -> None:
    with pytest.raises(HistoError, match="2 uncensored training patient"):
        SurvivalBins(4).fit(survival([1, 2, 3], [1, 1, 0]))
    with pytest.raises(HistoError, match="tie at bin edges"):
        SurvivalBins(4).fit(survival([5, 5, 5, 5, 5, 6], [1] * 6))
    with pytest.raises(RuntimeError, match="before fit"):
        SurvivalBins().transform(np.array([1.0]))


# --- class weights ------------------------------------------------------------------------------------


def test_class_weights_from_training_counts() -> None:
    train = pd.Series(["a"] * 6 + ["b"] * 3 + ["c"] * 1)
    weights = ClassWeights().fit(train)
    assert weights.classes_ == ["a", "b", "c"]
    np.testing.assert_allclose(weights.weights_, [10 / 18, 10 / 9, 10 / 3])
    np.testing.assert_allclose(weights.transform(pd.Series(["c", "a"])), [10 / 3, 10 / 18])
    # the test part's counts play no role
    same = ClassWeights().fit(train)
    same.transform(pd.Series(["c"] * 1000))
    np.testing.assert_allclose(same.weights_, weights.weights_)


def test_class_weights_errors() -> None:
    with pytest.raises(HistoError, match="class\\(es\\) c have no training patient"):
        ClassWeights(["a", "b", "c"]).fit(pd.Series(["a", "b"]))
    with pytest.raises(HistoError, match="labels z are not among the fitted classes"):
        ClassWeights().fit(pd.Series(["a", "b"])).transform(pd.Series(["z"]))
    with pytest.raises(HistoError, match="training labels z are not among"):
        ClassWeights(["a"]).fit(pd.Series(["a", "z"]))


# --- the omics pipeline on a real fold ----------------------------------------------------------------


@pytest.fixture(scope="module")
def stad_fold(shared_data: Path) -> tuple[object, list[str], list[str]]:
    cohort = load_cohort(
        CohortConfig(
            table=shared_data / "omics" / "tcga_stad" / "clinical.csv",
            patient_column="case_id",
            time_column="survival_months",
            event_column="censorship",
            event_is="censored",
        )
    )
    omics = load_omics(
        OmicsConfig(
            table=shared_data / "omics" / "tcga_stad" / "rna_xena.csv",
            groups=GeneGroupsConfig(
                gmt=shared_data / "genesets" / "h.all.v7.0.symbols.gmt",
                select=HALLMARK_TUMOUR_MICROENVIRONMENT,
            ),
        )
    )
    usable = cohort.patients.loc[cohort.patients.index.isin(omics.data.index)]
    split = SplitConfig(files=shared_data / "omics" / "tcga_stad" / "splits", stratify="event")
    fold = make_splits(usable, split, seed=42)[0]
    return omics, fold.train, fold.test


def test_pipeline_on_stad_fold_is_fitted_on_train_only(stad_fold: tuple) -> None:
    omics, train, test = stad_fold
    pipe = OmicsPipeline(OmicsPreprocessConfig(top_k_variance=50)).fit(omics, train)
    out = pipe.transform(omics, train)
    assert {g: a.shape for g, a in out.items()} == {
        "tumour": (len(train), 50),
        "microenvironment": (len(train), 50),
    }
    assert all(a.dtype == np.float32 for a in out.values())
    np.testing.assert_allclose(out["tumour"].mean(axis=0), 0.0, atol=1e-5)

    poisoned_omics = type(omics)(**{**omics.__dict__, "data": poisoned(omics.data, test)})
    dirty = OmicsPipeline(OmicsPreprocessConfig(top_k_variance=50)).fit(poisoned_omics, train)
    assert dirty.groups_ == pipe.groups_
    assert pipe.scaler_ is not None and dirty.scaler_ is not None
    pd.testing.assert_series_equal(dirty.scaler_.mean_, pipe.scaler_.mean_)
    pd.testing.assert_series_equal(dirty.scaler_.std_, pipe.scaler_.std_)
    np.testing.assert_array_equal(dirty.transform(poisoned_omics, train)["tumour"], out["tumour"])


def test_pipeline_reports_and_refuses_unknown_patients(stad_fold: tuple) -> None:
    omics, train, _ = stad_fold
    pipe = OmicsPipeline().fit(omics, train)
    report = pipe.report()
    assert report["genes_per_group"] == {g: len(genes) for g, genes in omics.groups.items()}
    with pytest.raises(HistoError, match="1 requested patient\\(s\\) have no expression row \\(nobody\\)"):
        pipe.transform(omics, ["nobody"])
