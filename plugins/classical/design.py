"""The patients x features matrix a classical model sees in one fold: the expression table through the
deep models' own per-fold `OmicsPipeline`, and/or slide features mean-pooled per patient (over all
patches of all its slides, per magnification, magnifications side by side) and z-scored with the training
rows' mean and standard deviation. Nothing is fitted on validation or test patients."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from histo.errors import HistoError
from histo.plugins.cohort import OmicsPipeline


def pooled_slide_features(
    features: Any, slides: dict[str, list[str]], patients: Sequence[str]
) -> pd.DataFrame:
    """Patient -> mean patch feature per magnification, concatenated (`<mag>_<i>` columns)."""
    from histo.plugins.training.bags import SlideFeatures

    if not isinstance(features, SlideFeatures):
        raise HistoError(
            "classical models pool the per-slide bag files; `features.source: shards` is not supported "
            "here (use `source: bags`)"
        )
    rows, columns = [], [f"{mag}_{i}" for mag in features.magnifications for i in range(features.feature_dim)]
    for patient in patients:
        parts = []
        for mag in features.magnifications:
            bag, _ = features.patient_bag(slides[patient], mag)
            if len(bag) == 0:
                raise HistoError(f"patient {patient}: no patch features at {mag} in any of its slides")
            parts.append(bag.mean(axis=0, dtype=np.float64))
        rows.append(np.concatenate(parts))
    return pd.DataFrame(np.asarray(rows), index=list(patients), columns=columns)


@dataclass
class Design:
    """Matrices of one fold's parts, their column names and what the fitted transforms dropped."""

    x: dict[str, np.ndarray]  # part -> [patients, features]
    columns: list[str]
    dropped: list[str]


def fold_design(
    parts: dict[str, list[str]],
    fit_ids: list[str],
    omics: Any,
    preprocess: Any,
    pooled: pd.DataFrame | None,
) -> Design:
    """`parts` (name -> patient ids) as matrices; every transform fitted on `fit_ids` only."""
    blocks: dict[str, list[np.ndarray]] = {name: [] for name in parts}
    columns: list[str] = []
    dropped: list[str] = []
    if omics is not None:
        pipeline = OmicsPipeline(preprocess).fit(omics, fit_ids)
        genes = list(dict.fromkeys(g for group in (pipeline.groups_ or {}).values() for g in group))
        for name, ids in parts.items():
            groups = pipeline.transform(omics, ids)
            frame = pd.concat(
                [
                    pd.DataFrame(groups[g], index=ids, columns=cols)
                    for g, cols in (pipeline.groups_ or {}).items()
                ],
                axis=1,
            )
            blocks[name].append(frame.loc[:, ~frame.columns.duplicated()][genes].to_numpy(np.float64))
        columns += [f"gene:{g}" for g in genes]
        dropped += list(pipeline.report()["constant_on_train"])
    if pooled is not None:
        train = pooled.loc[fit_ids].to_numpy(np.float64)
        mean, std = train.mean(axis=0), train.std(axis=0)
        keep = std > 1e-8 * np.maximum(1.0, np.abs(mean))
        dropped += [c for c, k in zip(pooled.columns, keep, strict=True) if not k]
        for name, ids in parts.items():
            blocks[name].append((pooled.loc[ids].to_numpy(np.float64)[:, keep] - mean[keep]) / std[keep])
        columns += [f"slide:{c}" for c, k in zip(pooled.columns, keep, strict=True) if k]
    if not columns:
        raise HistoError("the classical stage has no input: give `omics`, `features` or both")
    return Design({name: np.hstack(b) for name, b in blocks.items()}, columns, dropped)
