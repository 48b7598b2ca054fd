"""TCGA-STAD omics-only survival: histo's deep recipe against scikit-survival's Coxnet, same run, same folds.

Runs the recipe (a finished, unchanged run in `--out` is reused by histo's stage cache), then fits
`CoxnetSurvivalAnalysis` on exactly the patients and genes the deep model saw:
- the folds are read back from the run (`stages/<train>/splits/splits_<k>.csv`: train, val, test),
  so both models share train, validation and test patients fold by fold;
- the inputs come from histo's own data layer (`load_cohort`, `load_omics`, `OmicsPipeline` fitted on
  each fold's training patients only), so genes, scaling and exclusions are identical and leak-free
  (a gene shared by two groups is one column for Coxnet; the deep model sees it in both groups);
- Coxnet's penalty `alpha` is chosen without the test fold, in two ways reported side by side:
  `val` (the primary, the deep model's own protocol: fit on train, pick the alpha with the best
  validation C-index) and `cv` (inner 5-fold CV on the training patients; validation unused).
Harrell's C-index on each test fold (`concordance_index_censored`), mean and sample std over folds,
and the ratio deep / Coxnet are printed; `--json` keeps everything.

    python benchmarks/tcga_stad_coxnet.py                                # ~2-5 min on 2 busy cores
    python benchmarks/tcga_stad_coxnet.py --out /tmp/stad --json /tmp/stad/benchmark.json
    python benchmarks/tcga_stad_coxnet.py --set stages.train.params.training.epochs=40   # a variant
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DEFAULT_RECIPE = Path("recipes/tcga_stad_omics_survival.yaml")
INNER_FOLDS = 5


@dataclass
class FoldResult:
    fold: int
    n_train: int
    n_val: int
    n_test: int
    test_events: int
    genes: int
    deep_test: float
    deep_val: float  # the validation C-index at the epoch the deep model selected
    deep_best_epoch: int  # -1: an average of models stopped at different epochs
    coxnet_test: float  # alpha chosen on validation
    coxnet_val: float
    coxnet_alpha: float
    coxnet_nonzero: int
    coxnet_cv_test: float  # alpha chosen by inner CV on train
    coxnet_cv_alpha: float
    coxnet_cv_nonzero: int
    notes: list[str] = field(default_factory=list)


def c_index(risk: np.ndarray, time: np.ndarray, event: np.ndarray) -> float:
    from sksurv.metrics import concordance_index_censored

    return float(concordance_index_censored(event.astype(bool), time, risk)[0])


def run_histo(recipe: Path, out: Path, overrides: list[str], stage_id: str | None) -> tuple[Any, str, float]:
    """Run (or reuse) the recipe; return the train stage's config, its id and the wall time."""
    from histo.errors import HistoError
    from histo.recipe import load_recipe
    from histo.run import run_recipe

    loaded = load_recipe(recipe, overrides)
    stages = [s for s in loaded.stages if s.entry.name == "train"]
    if stage_id is not None:
        stages = [s for s in stages if s.id == stage_id]
    if len(stages) != 1:
        raise HistoError(f"{recipe}: expected one train stage (use --stage); found {[s.id for s in stages]}")
    stage = stages[0]
    if stage.config.omics is None or stage.config.features is not None:
        raise HistoError(f"{recipe}: stage {stage.id!r} is not omics-only; Coxnet sees expression only")
    if getattr(stage.config, "data_from", None) is not None:  # its tables live in another stage's folder
        raise HistoError(f"{recipe}: stage {stage.id!r} reads its tables via data_from; not supported here")
    began = time.perf_counter()
    result = run_recipe(loaded, out, quiet=True, argv=sys.argv)
    seconds = time.perf_counter() - began
    record = next(s for s in result.summary["stages"] if s["id"] == stage.id)
    if record["status"] not in ("done", "cached"):
        raise HistoError(f"histo run failed at stage {stage.id}: {record.get('error')} (see {out}/histo.log)")
    return stage.config, stage.id, seconds if record["status"] == "done" else float("nan")


def read_split(path: Path) -> dict[str, list[str]]:
    frame = pd.read_csv(path, dtype=str)
    return {c: frame[c].dropna().tolist() for c in ("train", "val", "test")}


def design(pipeline: Any, omics: Any, ids: list[str]) -> pd.DataFrame:
    """Patients x genes after the fold's pipeline; a gene shared by two groups appears once."""
    parts = pipeline.transform(omics, ids)
    frame = pd.concat(
        [pd.DataFrame(parts[g], index=ids, columns=genes) for g, genes in pipeline.groups_.items()], axis=1
    )
    return frame.loc[:, ~frame.columns.duplicated()]


def fit_coxnet(x: np.ndarray, y: np.ndarray, l1_ratio: float, alphas: np.ndarray | None = None) -> Any:
    from sksurv.linear_model import CoxnetSurvivalAnalysis

    model = CoxnetSurvivalAnalysis(l1_ratio=l1_ratio, alphas=alphas, alpha_min_ratio=0.01, max_iter=100_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings at the weakest penalties of the path
        model.fit(x, y)
    return model


def path_scores(model: Any, x: np.ndarray, time: np.ndarray, event: np.ndarray) -> np.ndarray:
    """C-index of every alpha of the fitted path on (x, time, event)."""
    risks = x @ model.coef_  # [patients, alphas]: Coxnet's risk is the linear predictor
    return np.array([c_index(risks[:, j], time, event) for j in range(risks.shape[1])])


def pick(scores: np.ndarray) -> int:
    """Best score; ties go to the strongest penalty (alphas are in decreasing order)."""
    return int(np.flatnonzero(scores >= np.nanmax(scores) - 1e-12)[0])


def inner_cv_alpha(
    x: np.ndarray, time: np.ndarray, event: np.ndarray, alphas: np.ndarray, l1_ratio: float, seed: int
) -> int:
    from sklearn.model_selection import StratifiedKFold
    from sksurv.util import Surv

    scores = np.zeros((INNER_FOLDS, len(alphas)))
    splitter = StratifiedKFold(n_splits=INNER_FOLDS, shuffle=True, random_state=seed)
    for i, (fit_idx, held_idx) in enumerate(splitter.split(x, event)):
        y = Surv.from_arrays(event[fit_idx].astype(bool), time[fit_idx])
        model = fit_coxnet(x[fit_idx], y, l1_ratio, alphas=alphas)
        scores[i, : model.coef_.shape[1]] = path_scores(model, x[held_idx], time[held_idx], event[held_idx])
    return pick(scores.mean(axis=0))


def evaluate(config: Any, stage_dir: Path, l1_ratio: float, seed: int) -> list[FoldResult]:
    from sksurv.util import Surv

    from histo.errors import HistoError
    from histo.plugins.cohort import OmicsPipeline, load_cohort, load_omics

    task = config.task.build()
    cohort = load_cohort(config.cohort)
    omics = load_omics(config.omics)
    labels = cohort.patients
    time_all = pd.to_numeric(labels[task.config.time_column]).astype(float)
    event_all = pd.to_numeric(labels[task.config.event_column]).astype(int)
    predictions = pd.read_csv(stage_dir / "predictions.csv", dtype={"patient_id": str})
    split_files = sorted((stage_dir / "splits").glob("splits_*.csv"), key=lambda p: int(p.stem.split("_")[1]))
    if not split_files:
        raise HistoError(f"{stage_dir / 'splits'}: no splits_<k>.csv; is this a finished train stage?")

    results = []
    for k, path in enumerate(split_files):
        split = read_split(path)
        deep = predictions[predictions["fold"] == k].set_index("patient_id")
        if sorted(deep.index) != sorted(split["test"]):
            raise HistoError(f"{path}: the deep model's test patients differ from the split's test column")
        record = json.loads((stage_dir / "folds" / str(k) / "metrics.json").read_text())
        best = record["best_epoch"]
        deep_val = deep_validation(stage_dir / "folds" / str(k), record)

        pipeline = OmicsPipeline(config.omics.preprocess).fit(omics, split["train"])
        x = {part: design(pipeline, omics, ids) for part, ids in split.items()}
        t = {part: time_all.loc[ids].to_numpy() for part, ids in split.items()}
        e = {part: event_all.loc[ids].to_numpy() for part, ids in split.items()}
        y_train = Surv.from_arrays(e["train"].astype(bool), t["train"])
        model = fit_coxnet(x["train"].to_numpy(), y_train, l1_ratio)
        alphas = np.asarray(model.alphas_)
        # without validation patients (the run selected by inner splits) only the inner-CV alpha exists
        val_scores = (
            path_scores(model, x["val"].to_numpy(), t["val"], e["val"])
            if split["val"] else np.full(len(alphas), np.nan)
        )  # fmt: skip
        j = pick(val_scores) if split["val"] else -1
        test_risk = x["test"].to_numpy() @ model.coef_
        j_cv = inner_cv_alpha(x["train"].to_numpy(), t["train"], e["train"], alphas, l1_ratio, seed + k)

        deep_risk = deep.loc[split["test"], "risk"].to_numpy()
        notes = []
        if not split["val"]:
            notes.append("no validation patients: no alpha chosen on validation")
        elif j == 0 or j == len(alphas) - 1:
            notes.append(f"validation picked the {'strongest' if j == 0 else 'weakest'} alpha of the path")
        results.append(
            FoldResult(
                fold=k,
                n_train=len(split["train"]), n_val=len(split["val"]), n_test=len(split["test"]),
                test_events=int(e["test"].sum()), genes=x["train"].shape[1],
                deep_test=c_index(deep_risk, t["test"], e["test"]),
                deep_val=deep_val, deep_best_epoch=-1 if best is None else int(best),
                coxnet_test=c_index(test_risk[:, j], t["test"], e["test"]) if j >= 0 else math.nan,
                coxnet_val=float(val_scores[j]), coxnet_alpha=float(alphas[j]) if j >= 0 else math.nan,
                coxnet_nonzero=int(np.count_nonzero(model.coef_[:, j])) if j >= 0 else -1,
                coxnet_cv_test=c_index(test_risk[:, j_cv], t["test"], e["test"]),
                coxnet_cv_alpha=float(alphas[j_cv]),
                coxnet_cv_nonzero=int(np.count_nonzero(model.coef_[:, j_cv])),
                notes=notes,
            )
        )  # fmt: skip
    return results


def deep_validation(fold_dir: Path, record: dict[str, Any]) -> float:
    """The validation C-index the deep model was selected on: at its best epoch (holdout), or the mean
    inner validation curve at the chosen epoch (inner CV / repeated splits)."""
    selection = record.get("selection") or {}
    if selection.get("protocol", "holdout") != "holdout":
        score = selection.get("score")
        return float(score) if score is not None else math.nan
    if record.get("best_epoch") is None:  # seeds averaged, each at its own epoch
        return math.nan
    history = json.loads((fold_dir / "history.json").read_text())
    return next(float(h["val_c_index"]) for h in history if h["epoch"] == record["best_epoch"])


def paired_test(deep: list[float], other: list[float]) -> dict[str, float] | None:
    """Paired t-test and Wilcoxon signed-rank test of deep - other across folds (scipy); None when the
    other model has no value on some fold."""
    from scipy.stats import ttest_rel, wilcoxon

    a, b = np.asarray(deep, dtype=float), np.asarray(other, dtype=float)
    if np.isnan(b).any() or len(a) < 2:
        return None
    diff = a - b
    return {
        "folds": len(diff), "diff_mean": float(diff.mean()), "diff_std": float(diff.std(ddof=1)),
        "deep_ahead": int((diff > 0).sum()), "t_p": float(ttest_rel(a, b).pvalue),
        "wilcoxon_p": float(wilcoxon(diff).pvalue) if np.any(diff != 0) else 1.0,
    }  # fmt: skip


def mean_std(values: list[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=float)
    if np.isnan(array).all():
        return math.nan, math.nan
    array = array[~np.isnan(array)]
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def report(results: list[FoldResult], histo_seconds: float, coxnet_seconds: float) -> dict[str, Any]:
    columns = {
        "deep": "deep_test", "deep_val": "deep_val", "coxnet": "coxnet_test",
        "coxnet_val": "coxnet_val", "coxnet_cv": "coxnet_cv_test",
    }  # fmt: skip
    summary = {name: mean_std([getattr(r, attr) for r in results]) for name, attr in columns.items()}
    print(
        f"{'fold':>4} {'train':>5} {'val':>4} {'test':>4} {'events':>6} {'genes':>5} | "
        f"{'deep':>6} {'(val)':>6} {'ep':>3} | {'coxnet':>6} {'(val)':>6} {'alpha':>7} {'nz':>4} | "
        f"{'cox-cv':>6} {'alpha':>7} {'nz':>4}"
    )
    for r in results:
        print(
            f"{r.fold:>4} {r.n_train:>5} {r.n_val:>4} {r.n_test:>4} {r.test_events:>6} {r.genes:>5} | "
            f"{r.deep_test:6.3f} {r.deep_val:6.3f} {r.deep_best_epoch:>3} | "
            f"{r.coxnet_test:6.3f} {r.coxnet_val:6.3f} {r.coxnet_alpha:7.4f} {r.coxnet_nonzero:>4} | "
            f"{r.coxnet_cv_test:6.3f} {r.coxnet_cv_alpha:7.4f} {r.coxnet_cv_nonzero:>4}"
            + (f"   ({'; '.join(r.notes)})" if r.notes else "")
        )
    print()
    for name, label in (
        ("deep", "deep (histo recipe)"), ("coxnet", "Coxnet, alpha on validation"),
        ("coxnet_cv", "Coxnet, alpha by inner CV on train"),
    ):  # fmt: skip
        mean, std = summary[name]
        print(f"test C-index  {label:<36} {mean:.3f} ± {std:.3f}")
    for name, label in (("deep_val", "deep"), ("coxnet_val", "Coxnet")):
        mean, std = summary[name]
        print(f"val C-index   {label:<36} {mean:.3f} ± {std:.3f}  (selected on it: optimistic)")
    ratio = summary["deep"][0] / summary["coxnet"][0]
    ratio_cv = summary["deep"][0] / summary["coxnet_cv"][0]
    print(f"ratio deep / Coxnet: {ratio:.3f} (alpha on validation), {ratio_cv:.3f} (inner CV)")
    tests = {}
    for name, label in (("coxnet", "alpha on validation"), ("coxnet_cv", "alpha by inner CV")):
        other = [getattr(r, columns[name]) for r in results]
        tests[name] = paired_test([r.deep_test for r in results], other)
        if tests[name]:
            t = tests[name]
            print(f"paired, deep - Coxnet ({label}): {t['diff_mean']:+.3f} ± {t['diff_std']:.3f} over "
                  f"{t['folds']} folds, deep ahead in {t['deep_ahead']}; paired t p = {t['t_p']:.2f}, "
                  f"Wilcoxon p = {t['wilcoxon_p']:.2f}")  # fmt: skip
    wall = "cached, not rerun" if np.isnan(histo_seconds) else f"{histo_seconds:.1f} s"
    print(f"wall time: histo recipe {wall}; Coxnet (both selections, 5 folds) {coxnet_seconds:.1f} s")
    return {
        "folds": [asdict(r) for r in results],
        "summary": {k: {"mean": m, "std": s} for k, (m, s) in summary.items()},
        "paired_tests": tests,
        "ratio_deep_over_coxnet": ratio,
        "ratio_deep_over_coxnet_cv": ratio_cv,
        "seconds": {"histo": None if np.isnan(histo_seconds) else histo_seconds, "coxnet": coxnet_seconds},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=DEFAULT_RECIPE)
    parser.add_argument("--out", type=Path, help="histo run directory (default: a temporary one)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="recipe override, as `histo run --set`")  # fmt: skip
    parser.add_argument("--stage", help="train stage id, when the recipe has several")
    parser.add_argument("--l1-ratio", type=float, default=0.5, help="Coxnet's elastic-net mixing (1 = lasso)")
    parser.add_argument("--json", type=Path, help="write every number here")
    args = parser.parse_args(argv)

    from histo.errors import HistoError
    from histo.io import write_json_atomic

    with tempfile.TemporaryDirectory(prefix="histo-stad-") as scratch:
        out = args.out or Path(scratch) / "run"
        try:
            config, stage_id, histo_seconds = run_histo(args.recipe, out, args.overrides, args.stage)
            began = time.perf_counter()
            results = evaluate(config, out / "stages" / stage_id, args.l1_ratio, seed=0)
            coxnet_seconds = time.perf_counter() - began
        except HistoError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        import torch

        print(f"recipe {' '.join([str(args.recipe), *args.overrides])}; run in {out}")
        print(
            f"{dt.date.today()} · {platform.node()} · {platform.processor() or platform.machine()} · "
            f"{os.cpu_count()} CPUs · torch {torch.__version__} ({torch.get_num_threads()} threads) · "
            f"Coxnet l1_ratio {args.l1_ratio}\n"
        )
        data = report(results, histo_seconds, coxnet_seconds)
        if args.json:
            data.update(recipe=str(args.recipe), overrides=args.overrides, l1_ratio=args.l1_ratio)
            write_json_atomic(args.json, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
