"""Training from webdataset shards (`features: {source: shards}`): the same learning as from the bags,
every patient once per pass, memory bounded by the pending patients, and clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_train_stage import WSI, make_bags, run

from histo.errors import HistoError
from histo.io import read_json
from histo.plugins.features.shards import write_shards
from histo.plugins.training.bags import SlideFeatures
from histo.plugins.training.dataset import PatientDataset
from histo.plugins.training.shard_source import ShardFeatures
from histo.plugins.training.stream import PatientStream

MAGS = ("10x", "20x")


def shard_bags(bags: Path, per_shard: int = 6, order: dict[str, list[str]] | None = None) -> Path:
    """Shards of make_bags' HDF5 bags, laid out as the extract stage writes them (`shards/<mag>/`)."""
    for mag in MAGS:
        files = sorted((bags / "features" / mag).glob("*.h5"))
        slides = (order or {}).get(mag) or [f.stem for f in files]
        samples = [(s, mag, bags / "features" / mag / f"{s}.h5") for s in slides]
        write_shards(samples, bags / "shards" / mag, max_samples=per_shard)
    return bags


def cohort_slides(cohort: Path) -> dict[str, list[str]]:
    table = pd.read_csv(cohort)
    return {p: list(group["slide_id"]) for p, group in table.groupby("patient_id", sort=True)}


def stream(bags: Path, cohort: Path, patients: list[str] | None = None, **kw: object) -> PatientStream:
    slides = cohort_slides(cohort)
    ids = patients or sorted(slides)
    folders = {mag: bags / "shards" / mag for mag in MAGS}
    return PatientStream(ids, np.arange(len(ids)), slides=slides, features=ShardFeatures(folders), **kw)  # type: ignore[arg-type]


def test_stream_yields_the_bags_items_once_with_bounded_memory(tmp_path: Path) -> None:
    bags, cohort, _ = make_bags(tmp_path)
    shard_bags(bags, per_shard=6)
    slides = cohort_slides(cohort)
    ids = sorted(slides)
    memory = PatientDataset(
        ids, np.arange(len(ids)), slides=slides,
        features=SlideFeatures({m: dict(sorted((f.stem, f) for f in (bags / "features" / m).glob("*.h5")))
                                for m in MAGS}),
        max_patches=6,
    )  # fmt: skip
    streamed = stream(bags, cohort, max_patches=6)
    items = list(streamed)
    assert [item["patient_id"] for item in items] == ids  # unshuffled: shard order, which is id order here
    expected = {memory[i]["patient_id"]: memory[i] for i in range(len(memory))}
    for item in items:
        for mag in MAGS:  # same slides, same order, same evenly spaced subsample as the in-memory path
            np.testing.assert_array_equal(
                item["features"][mag], expected[item["patient_id"]]["features"][mag]
            )
            np.testing.assert_array_equal(item["coords"][mag], expected[item["patient_id"]]["coords"][mag])
        assert item["target"] == expected[item["patient_id"]]["target"]
    # 6 slides per shard (36 slides, 24 patients): never more than a shard's patients wait, not the cohort
    assert 1 <= streamed.peak_pending <= 6

    fold = ids[::3]  # only the fold's patients come out; the others are skipped while streaming
    assert sorted(item["patient_id"] for item in stream(bags, cohort, fold)) == fold


def test_shuffled_epochs_repeat_from_the_seed_and_ranks_get_equal_disjoint_shares(tmp_path: Path) -> None:
    bags, cohort, _ = make_bags(tmp_path)
    shard_bags(bags, per_shard=4)

    def epoch(epoch: int, rank: int = 0, world: int = 1, patients: list[str] | None = None) -> list[str]:
        s = stream(bags, cohort, patients, shuffle=True, buffer=5, sample=True, max_patches=3)
        s.rng = np.random.default_rng([7, epoch])  # as the trainer reseeds it per epoch
        s.split_ranks(rank, world)
        out = [item["patient_id"] for item in s]
        assert len(out) == len(s) and s.peak_pending <= 4
        return out

    first = epoch(0)
    assert sorted(first) == sorted(cohort_slides(cohort)) and len(set(first)) == 24
    assert epoch(0) == first  # exactly repeatable (a resumed run reseeds the same way)
    assert epoch(1) != first  # a new order each epoch
    odd = sorted(cohort_slides(cohort))[:23]
    a, b = epoch(2, 0, 2, odd), epoch(2, 1, 2, odd)
    assert len(a) == len(b) == 11 and not set(a) & set(b)  # same number of steps on every rank


def test_unaligned_shards_still_give_every_patient_once(tmp_path: Path) -> None:
    bags, cohort, _ = make_bags(tmp_path, patients=10)
    stems = sorted(f.stem for f in (bags / "features" / "10x").glob("*.h5"))
    shard_bags(bags, per_shard=3, order={"10x": stems, "20x": stems[::-1]})
    s = stream(bags, cohort, shuffle=True, buffer=3)
    ids = [item["patient_id"] for item in s]
    assert sorted(ids) == sorted(cohort_slides(cohort))
    assert s.peak_pending > 3  # reversed orders: patients wait longer (memory grows, results do not change)


def test_missing_shards_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bags, cohort, _ = make_bags(tmp_path, patients=4)
    with pytest.raises(HistoError, match=r"index\.json does not exist.*shards: true"):
        ShardFeatures({"10x": bags / "shards" / "10x"})
    text = WSI.format(cohort=cohort, bags=bags).replace(
        "features: {folder: ", "features: {source: shards, folder: "
    )
    assert run(tmp_path, text) == 1
    captured = capsys.readouterr()
    assert f"{bags / 'shards'} does not exist" in captured.out + captured.err
    assert "`shards: true`" in captured.out + captured.err
    (bags / "shards" / "10x").mkdir(parents=True)  # an extraction stopped before index.json was written
    assert run(tmp_path, text, "again") == 1
    assert "index.json does not exist" in "".join(capsys.readouterr())


def test_shards_train_like_bags_and_record_slides_they_lack(tmp_path: Path) -> None:
    bags, cohort, _ = make_bags(tmp_path)
    stems = sorted(f.stem for f in (bags / "features" / "10x").glob("*.h5"))
    kept = [s for s in stems if not s.startswith("S05")]  # patient P05 has no shard sample
    shard_bags(bags, per_shard=6, order={"10x": kept, "20x": kept})
    text = WSI.format(cohort=cohort, bags=bags)
    assert run(tmp_path, text, "bags") == 0
    streamed = text.replace("features: {folder: ", "features: {source: shards, shuffle_buffer: 6, folder: ")
    assert run(tmp_path, streamed, "shards") == 0
    stage = tmp_path / "shards" / "stages" / "train"
    failures = (stage / "failures.jsonl").read_text()
    assert "S05-0.svs" in failures and "P05" in failures
    a = pd.read_csv(tmp_path / "bags" / "stages" / "train" / "predictions.csv")
    b = pd.read_csv(stage / "predictions.csv")
    assert b["patient_id"].is_unique and set(b["patient_id"]) == set(a["patient_id"]) - {"P05"}
    for out in ("bags", "shards"):
        assert read_json(tmp_path / out / "stages" / "train" / "metrics.json")["summary"]["auc"]["mean"] > 0.9
    joined = a.merge(b, on="patient_id", suffixes=("_bags", "_shards"))
    assert (joined["predicted_class_bags"] == joined["predicted_class_shards"]).mean() >= 0.9


def test_streamed_runs_repeat_exactly(tmp_path: Path) -> None:
    bags, cohort, _ = make_bags(tmp_path, patients=16)
    shard_bags(bags, per_shard=4)
    text = WSI.format(cohort=cohort, bags=bags).replace(
        "features: {folder: ", "features: {source: shards, folder: "
    )
    text = text.replace("epochs: 6", "epochs: 3").replace(
        "batch_size: 4", "batch_size: 3, accumulate: 2, max_patches: 6"
    )
    assert run(tmp_path, text, "a") == 0
    assert run(tmp_path, text, "b") == 0
    first = pd.read_csv(tmp_path / "a" / "stages" / "train" / "predictions.csv")
    pd.testing.assert_frame_equal(first, pd.read_csv(tmp_path / "b" / "stages" / "train" / "predictions.csv"))
    assert first["patient_id"].is_unique and len(first) == 16


@pytest.mark.slow
def test_streamed_ddp_ranks_take_equal_steps(tmp_path: Path) -> None:
    """Two gloo processes stream an odd cohort end to end (the equal shares themselves are checked in
    test_shuffled_epochs_repeat_from_the_seed_and_ranks_get_equal_disjoint_shares). torchrun is started
    as `python -m torch.distributed.run` so that it runs this interpreter's histo."""
    import os
    import subprocess
    import sys

    bags, cohort, _ = make_bags(tmp_path, patients=23)
    shard_bags(bags, per_shard=5)
    recipe = tmp_path / "ddp.yaml"
    text = WSI.format(cohort=cohort, bags=bags).replace(
        "features: {folder: ", "features: {source: shards, folder: "
    )
    # fold 2 trains on 13 patients: each rank gets 6, one patient sits out each epoch
    recipe.write_text(text.replace("epochs: 6", "epochs: 4").replace("batch_size: 4", "batch_size: 5"))
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "histo", "run", str(recipe), "--out", str(tmp_path / "ddp"), "--quiet"],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert read_json(tmp_path / "ddp" / "summary.json")["world_size"] == 2
    stage = tmp_path / "ddp" / "stages" / "train"
    assert read_json(stage / "metrics.json")["summary"]["auc"]["mean"] > 0.8
    predictions = pd.read_csv(stage / "predictions.csv")
    assert predictions["patient_id"].is_unique and len(predictions) == 23
