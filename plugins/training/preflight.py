"""The train stage's input check, run before any stage of the recipe: tables parse, the columns the
recipe names exist, patient and slide ids meet across tables, and every class occurs."""

from __future__ import annotations

from typing import Any

from histo.errors import HistoError
from histo.run.preflight import missing_paths

Loc = tuple[str | int, ...]


def _few(items: list[str], limit: int = 3) -> str:
    return ", ".join(items[:limit]) + (", ..." if len(items) > limit else "")


def check_train_inputs(config: Any) -> list[tuple[Loc, str]]:
    """Every problem with a train stage's tables and bags; [] when they come from an earlier stage."""
    from histo.plugins.cohort import load_cohort, load_omics
    from histo.plugins.cohort.table import slide_key

    from_stage = config.data_from is not None  # relative paths are read from its folder, not written yet
    problems = missing_paths(config, skip_relative=from_stage)
    if problems or from_stage:
        return problems

    cohort = omics = None
    try:
        cohort = load_cohort(config.cohort)
    except HistoError as exc:
        problems.append((("cohort",), str(exc)))
    if config.omics is not None:
        try:
            omics = load_omics(config.omics)
        except HistoError as exc:
            problems.append((("omics",), str(exc)))
    if cohort is None:
        return problems

    patients = [str(p) for p in cohort.patients.index]
    from histo.plugins.tasks.configs import ClassificationConfig, check_class_labels

    task_config = config.task._config  # validated; the task itself is not built (that imports torch)
    if isinstance(task_config, ClassificationConfig):
        found = check_class_labels(task_config, cohort.patients, str(config.cohort.table))
        problems += [(("task", "params", "classes"), message) for message in found]

    if omics is not None and not set(patients) & {str(p) for p in omics.data.index}:
        problems.append(
            (
                ("omics", "table"),
                f"no patient id of {config.cohort.table} ({_few(patients)}) is in {omics.file} "
                f"({_few([str(p) for p in omics.data.index])}); check patient_column of both tables",
            )
        )

    features = config.features
    if features is not None and features.folder is not None and config.cohort.slide_column is not None:
        from histo.plugins.features import find_bags

        per_mag = features.folder / "features"
        mags = features.magnifications or (
            sorted(p.name for p in per_mag.iterdir() if p.is_dir() and not p.name.startswith("."))
            if per_mag.is_dir()
            else []
        )
        try:
            if per_mag.is_dir() and mags:
                found_bags = find_bags(per_mag / mags[0])
            else:
                found_bags = find_bags(features.folder, encoder=features.encoder)
            bags = {slide_key(s) for s in found_bags}
        except HistoError as exc:
            problems.append((("features", "folder"), str(exc)))
        else:
            slides = sorted({slide_key(s) for listed in cohort.slides.values() for s in listed})
            if slides and not bags & set(slides):
                problems.append(
                    (
                        ("features", "folder"),
                        f"no slide id of {config.cohort.table} ({_few(slides)}) has a feature bag in "
                        f"{features.folder} ({_few(sorted(bags))}); check slide_column and the folder",
                    )
                )
    return problems
