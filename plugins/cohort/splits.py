"""Patient-level cross-validation folds: generated (stratified, grouped, seeded) or imported from CSVs.

Guarantees (tested): train, val and test of a fold are disjoint; a generated split puts every patient
in exactly one test fold; with `group_column` no group (e.g. a TCGA tissue-source site) has patients
on two sides of a fold; ids of an imported file that the cohort lacks are recorded per fold.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from histo.errors import HistoError
from histo.io import atomic_path
from histo.recipe.bounds import Seed
from histo.recipe.refs import InputPath

from .table import few, read_table


class SplitConfig(BaseModel):
    """How patients are split into folds, each with train, validation and test patients."""

    model_config = ConfigDict(extra="forbid")

    folds: int = Field(default=5, ge=2, description="Number of generated folds (ignored with files).")
    val_fraction: float = Field(
        default=0.2,
        ge=0.0,
        lt=1.0,
        description="Share of each fold's non-test patients held out for validation (model selection); "
        "0 for none. Carved with the same stratification and grouping as the folds.",
    )
    stratify: Literal["label", "event", "none"] = Field(
        default="none",
        description="Keep the proportions of the label classes ('label') or of events vs censored "
        "patients ('event') alike across folds.",
    )
    group_column: str | None = Field(
        default=None,
        description="Cohort column whose groups never straddle train/val/test (e.g. `site` for TCGA "
        "tissue-source sites, against site-specific staining shortcuts). Blank = the patient's own group.",
    )
    files: InputPath | None = Field(
        default=None,
        description="Folder of published split CSVs (or one CSV) with columns train, val (and optionally "
        "test). Without a test column, `val` is the held-out TEST fold and validation is carved from "
        "`train` (stratified, seeded); with a test column the three columns are used as written.",
    )
    pattern: str = Field(
        default="splits_*.csv", description="File name pattern of the split CSVs inside `files`."
    )
    seed: Seed | None = Field(default=None, description="Seed of the shuffles; default: the recipe's seed.")


@dataclass
class Fold:
    """Patient ids of one fold. `not_in_cohort`: ids of an imported file that are not among the patients
    given to `make_splits` (left out); `unassigned`: given patients that an imported file puts nowhere."""

    index: int
    train: list[str]
    val: list[str]
    test: list[str]
    source: str | None = None
    not_in_cohort: list[str] = field(default_factory=list)
    unassigned: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        parts = {"train": set(self.train), "val": set(self.val), "test": set(self.test)}
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            shared = parts[a] & parts[b]
            if shared:
                where = f" ({self.source})" if self.source else ""
                raise HistoError(
                    f"fold {self.index}{where}: patient(s) {few(sorted(shared))} are in both "
                    f"{a} and {b}; that would leak them into evaluation"
                )

    def summary(self) -> dict[str, Any]:
        return {
            "fold": self.index,
            "source": self.source,
            "train": len(self.train),
            "val": len(self.val),
            "test": len(self.test),
            "not_in_cohort": len(self.not_in_cohort),
            "unassigned": len(self.unassigned),
        }


def _strata(patients: pd.DataFrame, config: SplitConfig, label_column: str | None) -> pd.Series | None:
    if config.stratify == "none":
        return None
    column = label_column if config.stratify == "label" else "event"
    if column is None:
        raise HistoError(
            "splits.stratify is 'label' but the cohort has no label column; set "
            "cohort.label_column or use stratify: event / none"
        )
    if column not in patients.columns:
        raise HistoError(
            f"splits.stratify is {config.stratify!r} but the patient table has no {column!r} "
            "column (stratify: event needs time_column/event_column in the cohort)"
        )
    strata = patients[column]
    if strata.isna().any():
        raise HistoError(
            f"splits: patient(s) {few(strata.index[strata.isna()])} have no {column!r}; "
            "exclude them before splitting"
        )
    return strata.astype(str)


def _groups(patients: pd.DataFrame, config: SplitConfig) -> pd.Series | None:
    if config.group_column is None:
        return None
    if config.group_column not in patients.columns:
        raise HistoError(
            f"splits.group_column {config.group_column!r} is not a cohort column; it has "
            f"{few(patients.columns, 10)}"
        )
    groups = patients[config.group_column].astype("string")
    own = pd.Series(["\x00patient:" + p for p in patients.index], index=patients.index, dtype="string")
    return groups.fillna(own).astype(str)


def _check_strata(strata: pd.Series, folds: int) -> None:
    counts = strata.value_counts()
    small = counts[counts < folds].sort_index().sort_values(kind="stable")  # the rarest first
    if not small.empty:
        raise HistoError(
            f"splits: stratum {small.index[0]!r} has {small.iloc[0]} patient(s), fewer than the {folds} "
            "folds, so some test folds would lack it; use fewer folds, merge rare classes or stratify: none"
        )


def _holdout(
    ids: list[str], strata: pd.Series | None, groups: pd.Series | None, fraction: float, seed: Sequence[int]
) -> tuple[list[str], list[str]]:
    """Split `ids` into (train, val) with about `fraction` in val, by stratum and never across a group."""
    if fraction == 0 or not ids:
        return sorted(ids), []
    rng = np.random.default_rng(list(seed))
    if groups is not None:
        from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

        sub = groups.loc[ids]
        n_splits = max(2, round(1 / fraction))
        if sub.nunique() < n_splits:
            raise HistoError(
                f"splits: {sub.nunique()} group(s) in a training part cannot give a validation "
                f"share of {fraction:g} without splitting a group; lower val_fraction or drop "
                "group_column"
            )
        random_state = int(rng.integers(2**31 - 1))
        splitter: Any
        if strata is not None:
            splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
        else:
            splitter = GroupKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
        labels = strata.loc[ids].to_numpy() if strata is not None else np.zeros(len(ids))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "least populated class" is expected here
            candidates = list(splitter.split(np.zeros(len(ids)), labels, sub.to_numpy()))
        # groups are uneven (one TCGA site can hold a third of a cohort): take the candidate whose
        # validation size is closest to the asked share
        train_idx, val_idx = min(candidates, key=lambda c: abs(len(c[1]) - fraction * len(ids)))
        return sorted(ids[i] for i in train_idx), sorted(ids[i] for i in val_idx)
    keys = strata.loc[ids] if strata is not None else pd.Series("", index=ids)
    members = {k: sorted(v) for k, v in keys.groupby(keys, sort=True).groups.items()}
    target = round(fraction * len(ids))
    exact = {k: fraction * len(m) for k, m in members.items()}
    take = {k: int(np.floor(e)) for k, e in exact.items()}
    by_remainder = sorted(exact, key=lambda k: (-(exact[k] - take[k]), str(k)))
    for k in by_remainder[: max(0, target - sum(take.values()))]:
        take[k] += 1
    val: list[str] = []
    for k, m in members.items():
        val += list(rng.permutation(np.array(m, dtype=object))[: take[k]])
    chosen = set(val)
    return sorted(i for i in ids if i not in chosen), sorted(val)


def _generate(
    patients: pd.DataFrame, config: SplitConfig, strata: pd.Series | None, groups: pd.Series | None, seed: int
) -> list[Fold]:
    from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

    ids = patients.index.tolist()
    if len(ids) < config.folds:
        raise HistoError(f"splits: {len(ids)} patient(s) cannot make {config.folds} folds")
    if strata is not None:
        _check_strata(strata, config.folds)
    labels = strata.to_numpy() if strata is not None else np.zeros(len(ids))
    splitter: Any
    if groups is not None:
        if groups.nunique() < config.folds:
            raise HistoError(
                f"splits: group_column {config.group_column!r} has {groups.nunique()} group(s), "
                f"fewer than the {config.folds} folds; use fewer folds"
            )
        cls = StratifiedGroupKFold if strata is not None else GroupKFold
        splitter = cls(n_splits=config.folds, shuffle=True, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            parts = list(splitter.split(np.zeros(len(ids)), labels, groups.to_numpy()))
    else:
        cls = StratifiedKFold if strata is not None else KFold
        splitter = cls(n_splits=config.folds, shuffle=True, random_state=seed)
        parts = list(splitter.split(np.zeros(len(ids)), labels))
    folds = []
    for k, (rest_idx, test_idx) in enumerate(parts):
        rest = [ids[i] for i in rest_idx]
        train, val = _holdout(rest, strata, groups, config.val_fraction, (seed, k))
        folds.append(Fold(index=k, train=train, val=val, test=sorted(ids[i] for i in test_idx)))
    return folds


def _natural_key(path: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def split_files(config: SplitConfig) -> list[Path]:
    """The split CSVs named by `files` (a folder, matched with `pattern`, or one file), in natural order."""
    assert config.files is not None
    root = Path(config.files)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise HistoError(f"{root}: splits.files is neither a folder nor a file")
    found = sorted((p for p in root.glob(config.pattern) if p.is_file()), key=_natural_key)
    if not found:
        raise HistoError(f"{root}: no file matches splits.pattern {config.pattern!r}")
    return found


def _column_ids(frame: pd.DataFrame, column: str) -> list[str]:
    if column not in frame.columns:
        return []
    values = frame[column].dropna()
    return list(dict.fromkeys(values.astype(str)))


def _import(
    patients: pd.DataFrame, config: SplitConfig, strata: pd.Series | None, groups: pd.Series | None, seed: int
) -> list[Fold]:
    cohort = set(patients.index)
    folds = []
    for k, path in enumerate(split_files(config)):
        frame = read_table(path, ["train", "val", "test"])
        if "train" not in frame.columns or "val" not in frame.columns:
            raise HistoError(
                f"{path}: a split file needs columns train and val (case ids); it has {few(frame.columns, 8)}"
            )
        columns = {c: _column_ids(frame, c) for c in ("train", "val", "test")}
        listed = [i for ids in columns.values() for i in ids]
        not_in_cohort = sorted({i for i in listed if i not in cohort})
        kept = {c: [i for i in ids if i in cohort] for c, ids in columns.items()}
        if "test" in frame.columns:
            train, val, test = sorted(kept["train"]), sorted(kept["val"]), sorted(kept["test"])
        else:
            test = sorted(kept["val"])
            overlap = set(kept["train"]) & set(test)
            if overlap:
                raise HistoError(
                    f"{path}: patient(s) {few(sorted(overlap))} are in both train and val; the "
                    "file would leak them into evaluation"
                )
            train, val = _holdout(kept["train"], strata, groups, config.val_fraction, (seed, k))
        if not test:
            raise HistoError(
                f"{path}: no test patient of this file is in the cohort "
                f"({len(not_in_cohort)} id(s) unknown, e.g. {few(not_in_cohort, 3)})"
            )
        fold = Fold(
            index=k,
            train=train,
            val=val,
            test=test,
            source=str(path),
            not_in_cohort=not_in_cohort,
            unassigned=sorted(cohort - set(train) - set(val) - set(test)),
        )
        if groups is not None:
            _check_groups(fold, groups, config.group_column or "")
        folds.append(fold)
    return folds


def _check_groups(fold: Fold, groups: pd.Series, column: str) -> None:
    sides = {
        name: set(groups.loc[ids])
        for name, ids in (("train", fold.train), ("val", fold.val), ("test", fold.test))
    }
    for a, b in (("train", "test"), ("val", "test"), ("train", "val")):
        shared = sides[a] & sides[b]
        if shared:
            raise HistoError(
                f"{fold.source}: {column} group(s) {few(sorted(shared))} have patients in both "
                f"{a} and {b}, which group_column forbids; drop group_column or fix the file"
            )


def make_splits(
    patients: pd.DataFrame, config: SplitConfig, label_column: str | None = None, seed: int = 0
) -> list[Fold]:
    """Folds of the patients in `patients` (indexed by patient id; pass only usable patients).

    `seed` is the recipe seed, used unless the config sets its own.
    """
    if not patients.index.is_unique:
        raise HistoError("splits: the patient table has repeated patient ids")
    patients = patients.set_axis(patients.index.astype(str))
    strata = _strata(patients, config, label_column)
    groups = _groups(patients, config)
    seed = config.seed if config.seed is not None else seed
    if config.files is not None:
        return _import(patients, config, strata, groups, seed)
    return _generate(patients, config, strata, groups, seed)


def export_splits(folds: Sequence[Fold], folder: Path) -> list[Path]:
    """Write `splits_{k}.csv` (columns train, val, test; shorter columns padded with blanks), atomically."""
    written = []
    for fold in folds:
        columns = {"train": fold.train, "val": fold.val, "test": fold.test}
        frame = pd.DataFrame({c: pd.Series(ids, dtype=object) for c, ids in columns.items()})
        target = Path(folder) / f"splits_{fold.index}.csv"
        with atomic_path(target) as tmp:
            frame.to_csv(tmp, index=False)
        written.append(target)
    return written


def splits_summary(folds: Sequence[Fold]) -> list[dict[str, Any]]:
    """Per-fold counts, for the run's metrics and the cohort report."""
    return [fold.summary() for fold in folds]
