"""The webdataset shards of an extract stage as a feature source: which slides they hold, per
magnification, read from each `shards/<mag>/index.json` without opening the shards themselves."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from histo.errors import HistoError
from histo.plugins.cohort.table import slide_key

INDEX = "index.json"


@dataclass(frozen=True)
class ShardSample:
    """Where one (slide, magnification) bag lies: its shard file and its key inside it."""

    shard: Path
    key: str


class ShardFeatures:
    """The shards of every magnification; bags are streamed by `PatientStream`, never held here."""

    def __init__(self, folders: Mapping[str, Path]) -> None:
        """`folders`: magnification -> `shards/<mag>` folder holding index.json and its shards."""
        self.shards: dict[str, list[Path]] = {}
        self.samples: dict[str, dict[str, ShardSample]] = {}
        for mag, folder in folders.items():
            index = _read_index(folder)
            self.shards[mag] = []
            self.samples[mag] = {}
            for entry in index["shards"]:
                path = folder / entry["shard"]
                if not path.is_file():
                    raise HistoError(
                        f"{folder / INDEX} lists {entry['shard']}, which is missing; rerun extract"
                    )
                self.shards[mag].append(path)
                for sample in entry["samples"]:
                    self.samples[mag][slide_key(sample["slide_id"])] = ShardSample(path, sample["key"])
            if not self.samples[mag]:
                raise HistoError(f"{folder / INDEX} lists no sample: no slide has {mag} features")
        first_mag = next(iter(self.shards))
        self.feature_dim = _first_feature_dim(self.shards[first_mag][0])

    @property
    def magnifications(self) -> tuple[str, ...]:
        return tuple(self.shards)

    def has_slide(self, slide_id: str) -> bool:
        return all(slide_key(slide_id) in samples for samples in self.samples.values())

    def slides(self) -> set[str]:
        sets = [set(samples) for samples in self.samples.values()]
        return set.intersection(*sets) if sets else set()


def _read_index(folder: Path) -> dict[str, Any]:
    path = folder / INDEX
    if not path.is_file():
        raise HistoError(
            f"{path} does not exist: shards are written by the extract stage with `shards: true` "
            "(index.json last, so a missing one also means an unfinished extraction); rerun it so, or "
            "drop `source: shards` to read the HDF5 bags"
        )
    try:
        index = json.loads(path.read_text())
        if not isinstance(index.get("shards"), list):
            raise ValueError("no `shards` list")
        return dict(index)
    except (ValueError, AttributeError) as exc:
        raise HistoError(f"{path} is not a shard index ({exc}); rerun the extract stage") from None


def _first_feature_dim(shard: Path) -> int:
    """The feature size recorded in the first sample's json (reads one small member)."""
    with tarfile.open(shard, "r|") as tar:
        for member in tar:
            if member.name.endswith(".json"):
                handle = tar.extractfile(member)
                if handle is not None:
                    return int(json.loads(handle.read())["feature_dim"])
    raise HistoError(f"{shard} holds no sample json; rerun the extract stage")
