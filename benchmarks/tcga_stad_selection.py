"""Model selection for small cohorts, measured on TCGA-STAD's training parts only (test folds untouched).

Each of SurvPath's 5 published folds has a training part of 217-276 patients. This script splits every
training part again into `--inner` stratified pseudo-folds (pseudo-test = one of them, pseudo-train =
the rest), writes those as split files, and runs histo's own train stage (the recipe, with
`splits.files` pointed at them) once per variant: selection protocol, fixed-epoch refit vs early
stopping, seed averaging, or encoder settings. The published test folds are never read: every patient
of a pseudo-fold comes from a published training column. Coxnet with inner-CV alpha is fitted on the
same pseudo-folds, genes and scaling as a reference (`benchmarks/tcga_stad_coxnet.py`).

Reported: Harrell's C-index per pseudo-fold, mean and std over all of them, the mean paired difference
to the first variant and a Wilcoxon signed-rank p-value (pseudo-folds of different published folds
share patients, so the p-value is descriptive), and wall time per variant.

    python benchmarks/tcga_stad_selection.py --experiment selection --json /tmp/sel.json
    python benchmarks/tcga_stad_selection.py --experiment encoder --json /tmp/enc.json
    python benchmarks/tcga_stad_selection.py --variant mine="training.epochs=50 training.selection.seeds=3"
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

DEFAULT_RECIPE = Path("recipes/tcga_stad_omics_survival.yaml")
P = "stages.train.params."
HOLDOUT = {"training.selection.protocol": "holdout", "splits.val_fraction": "0.2"}

# the variants of each experiment; the first is the baseline the others are paired against
EXPERIMENTS: dict[str, dict[str, dict[str, str]]] = {
    "selection": {
        "holdout 20%, early stopping": HOLDOUT,
        "holdout 20%, early stopping, 5 seeds averaged": {**HOLDOUT, "training.selection.seeds": "5"},
        "repeated 5 x 20%, refit at fixed epoch": {
            "training.selection.protocol": "repeated",
            "training.selection.final": "refit",
        },
        "inner 5-fold CV, refit at fixed epoch": {
            "training.selection.protocol": "inner_cv",
            "training.selection.final": "refit",
        },
        "inner 5-fold CV, ensemble of the 5 early-stopped models": {
            "training.selection.protocol": "inner_cv",
            "training.selection.final": "ensemble",
        },
    },
    "encoder": {},  # filled by --variant; see docs/results-tcga-stad.md for the configurations tried
}


def pseudo_folds(recipe: Path, folder: Path, inner: int, seed: int) -> list[dict[str, Any]]:
    """Write pseudo split files (train, val=pseudo-test) cut from each published training column."""
    from sklearn.model_selection import StratifiedKFold

    from histo.plugins.cohort import load_cohort, split_files
    from histo.recipe import load_recipe

    config = load_recipe(recipe, []).stages[0].config
    patients = load_cohort(config.cohort).patients
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for k, path in enumerate(split_files(config.splits)):
        published = pd.read_csv(path, dtype=str)
        train = sorted(set(published["train"].dropna()) & set(patients.index))  # the test column is unused
        events = patients.loc[train, "event"].to_numpy()
        splitter = StratifiedKFold(n_splits=inner, shuffle=True, random_state=seed + k)
        for j, (rest, held) in enumerate(splitter.split(np.zeros(len(train)), events)):
            frame = pd.DataFrame(
                {
                    "train": pd.Series([train[i] for i in rest], dtype=object),
                    "val": pd.Series([train[i] for i in held], dtype=object),
                }
            )
            frame.to_csv(folder / f"splits_{k * inner + j}.csv", index=False)
            made.append(
                {
                    "published": k,
                    "pseudo": j,
                    "train": len(rest),
                    "test": len(held),
                    "test_events": int(events[held].sum()),
                }
            )
    return made


def run_variant(
    recipe: Path, out: Path, folder: Path, overrides: dict[str, str]
) -> tuple[list[float], float]:
    from histo.errors import HistoError
    from histo.io import read_json
    from histo.recipe import load_recipe
    from histo.run import run_recipe

    sets = [f"{P}splits.files={folder}", *(f"{P}{k}={v}" for k, v in overrides.items())]
    loaded = load_recipe(recipe, sets)
    began = time.perf_counter()
    result = run_recipe(loaded, out, quiet=True, argv=sys.argv)
    seconds = time.perf_counter() - began
    record = result.summary["stages"][0]
    if record["status"] not in ("done", "cached"):
        raise HistoError(f"variant {overrides} failed: {record.get('error')} (see {out}/histo.log)")
    metrics = read_json(out / "stages" / record["id"] / "metrics.json")
    return [float(f["test"]["c_index"]) for f in metrics["folds"]], seconds


def coxnet_reference(recipe: Path, out: Path, folder: Path) -> list[float]:
    """Coxnet, alpha by inner 5-fold CV on each pseudo-train, on the run's folds, genes and scaling."""
    from tcga_stad_coxnet import evaluate  # type: ignore[import-not-found]

    from histo.recipe import load_recipe

    config = load_recipe(recipe, [f"{P}splits.files={folder}"]).stages[0].config
    return [r.coxnet_cv_test for r in evaluate(config, out / "stages" / "train", 0.5, seed=0)]


def describe(
    name: str, values: list[float], base: list[float] | None, seconds: float | None
) -> dict[str, Any]:
    from scipy.stats import wilcoxon

    array = np.asarray(values)
    row: dict[str, Any] = {
        "variant": name,
        "mean": float(array.mean()),
        "std": float(array.std(ddof=1)),
        "per_fold": values,
        "seconds": seconds,
    }
    if base is not None and values is not base:
        diff = array - np.asarray(base)
        row["diff_mean"] = float(diff.mean())
        row["wins"] = int((diff > 0).sum())
        row["wilcoxon_p"] = float(wilcoxon(diff).pvalue) if np.any(diff != 0) else 1.0
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=DEFAULT_RECIPE)
    parser.add_argument("--experiment", choices=sorted(EXPERIMENTS), default="selection")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar='NAME="KEY=VALUE ..."',
        help="an extra variant: train-stage params overrides (relative to stages.train."
        "params), space-separated",
    )
    parser.add_argument("--inner", type=int, default=3, help="pseudo-folds per published training part")
    parser.add_argument("--seed", type=int, default=0, help="seed of the pseudo-folds")
    parser.add_argument("--out", type=Path, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--no-coxnet", action="store_true", help="skip the Coxnet reference")
    parser.add_argument("--json", type=Path, help="write every number here")
    args = parser.parse_args(argv)

    from histo.io import write_json_atomic

    variants = dict(EXPERIMENTS[args.experiment])
    for text in args.variant:
        name, _, sets = text.partition("=")
        variants[name] = dict(item.split("=", 1) for item in sets.split())
    if not variants:
        parser.error('no variant: pass --variant NAME="KEY=VALUE ..."')

    with tempfile.TemporaryDirectory(prefix="histo-selection-") as scratch:
        root = args.out or Path(scratch)
        folder = root / "pseudo_splits"
        folds = pseudo_folds(args.recipe, folder, args.inner, args.seed)
        import torch

        print(
            f"{dt.date.today()} · {platform.node()} · {os.cpu_count()} CPUs · torch {torch.__version__} "
            f"({torch.get_num_threads()} threads) · {len(folds)} pseudo-folds of the published training "
            f"parts ({args.inner} per fold; pseudo-test {min(f['test'] for f in folds)}-"
            f"{max(f['test'] for f in folds)} patients)\n"
        )
        rows: list[dict[str, Any]] = []
        base: list[float] | None = None
        reference: Path | None = None  # a run without a carve-out: Coxnet then fits the whole pseudo-train
        for i, (name, overrides) in enumerate(variants.items()):
            out = root / f"variant{i}"
            values, seconds = run_variant(args.recipe, out, folder, overrides)
            if not _whole(reference):
                reference = out
            base = base or values
            rows.append(describe(name, values, base, seconds))
            print(_line(rows[-1]), flush=True)
        if not args.no_coxnet and reference is not None:
            rows.append(
                describe(
                    "Coxnet (alpha by inner 5-fold CV), reference",
                    coxnet_reference(args.recipe, reference, folder),
                    base,
                    None,
                )
            )
            print(_line(rows[-1]), flush=True)
        if args.json:
            write_json_atomic(
                args.json,
                {
                    "experiment": args.experiment,
                    "variants": variants,
                    "pseudo_folds": folds,
                    "rows": rows,
                    "inner": args.inner,
                },
            )
    return 0


def _whole(run: Path | None) -> bool:
    """Whether the run trained on whole pseudo-train parts (no validation carve-out in its splits)."""
    if run is None:
        return False
    split = pd.read_csv(run / "stages" / "train" / "splits" / "splits_0.csv", dtype=str)
    return split["val"].dropna().empty


def _line(row: dict[str, Any]) -> str:
    text = f"{row['variant']:<58} C {row['mean']:.3f} ± {row['std']:.3f}"
    if "diff_mean" in row:
        text += (
            f"  Δ {row['diff_mean']:+.3f} (better in {row['wins']}/{len(row['per_fold'])}, "
            f"Wilcoxon p {row['wilcoxon_p']:.2f})"
        )
    if row.get("seconds") is not None:
        text += f"  {row['seconds']:.0f} s"
    return text


if __name__ == "__main__":
    sys.exit(main())
