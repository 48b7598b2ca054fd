"""Patient items streamed from webdataset shards, for cohorts whose bags do not fit in memory.

Shards are read one after the other (the magnifications' shard lists in lockstep, one sample of each
in turn), so a patient whose slides and magnifications were written at the same place in each list is
complete soon after its first sample arrives. Partial patients wait in a dict and leave it the moment
they are complete: memory is bounded by the pending patients plus the shuffle buffer, never the cohort.

Tar members are read with webdataset's tar iterators (one sample in memory at a time, members of other
patients skipped unread). Its `WebDataset` pipeline is not used: it splits *shards* across ranks and
workers, which gives ranks different numbers of steps (DDP then hangs) and breaks the lockstep across
magnifications. Here every rank reads every shard and keeps its own share of *patients*.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from histo.errors import HistoError
from histo.plugins.cohort.table import slide_key

from .dataset import limit_patches
from .shard_source import ShardFeatures

Arrays = tuple[np.ndarray, np.ndarray]


class PatientStream(IterableDataset[dict[str, Any]]):
    """The items of `PatientDataset` (same keys, same bag order), read sequentially from shards.

    The trainer reseeds `rng` each epoch: shard order, the split of patients across ranks, the shuffle
    buffer and patch sampling all follow from it, so an epoch repeats exactly, also after a resume.
    """

    def __init__(
        self,
        patients: Sequence[str],
        targets: np.ndarray,
        *,
        slides: Mapping[str, list[str]],
        features: ShardFeatures,
        omics: Mapping[str, np.ndarray] | None = None,
        max_patches: int | None = None,
        sample: bool = False,
        shuffle: bool = False,
        buffer: int = 64,
        seed: int = 0,
    ) -> None:
        """`shuffle`: shard order and a `buffer`-patient shuffle buffer (training); else shard order."""
        self.patients = list(patients)
        self.targets = targets
        self.slides = {p: [slide_key(s) for s in slides.get(p, [])] for p in self.patients}
        self.features = features
        self.omics = omics or {}
        self.max_patches = max_patches
        self.sample = sample
        self.shuffle = shuffle
        self.buffer = max(1, buffer)
        self.rng = np.random.default_rng(seed)
        self.rank, self.world_size = 0, 1
        self.peak_pending = 0  # most patients held incomplete at once in the last pass (num_workers=0)
        owners: dict[str, list[int]] = {}
        for index, patient in enumerate(self.patients):
            for slide in self.slides[patient]:
                owners.setdefault(slide, []).append(index)
        self._owners = owners

    def split_ranks(self, rank: int, world_size: int) -> None:
        """Give each DDP rank an equal share of patients (the remainder sits out, a different one each
        epoch), so that every rank runs the same number of steps."""
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        """Patients this rank yields per pass (over all its DataLoader workers)."""
        return len(self.patients) // self.world_size if self.world_size > 1 else len(self.patients)

    def _own(self, rng: np.random.Generator) -> list[int]:
        n = len(self.patients)
        mine = list(range(n))
        if self.world_size > 1:  # the same draw on every rank: ranks hold disjoint, equal shares
            order = rng.permutation(n)[: n // self.world_size * self.world_size]
            mine = sorted(int(i) for i in order[self.rank :: self.world_size])
        worker = get_worker_info()
        if worker is not None:
            mine = mine[worker.id :: worker.num_workers]
        return mine

    def __iter__(self) -> Iterator[dict[str, Any]]:
        rng = self.rng
        mags = self.features.magnifications
        n_shards = max(len(self.features.shards[m]) for m in mags)
        order = rng.permutation(n_shards) if self.shuffle else np.arange(n_shards)
        own = set(self._own(rng))
        wanted = {
            mag: {
                self.features.samples[mag][s].key
                for p in own
                for s in self.slides[self.patients[p]]
                if s in self.features.samples[mag]
            }
            for mag in mags
        }
        missing = {p: len(self.slides[self.patients[p]]) * len(mags) for p in own}
        pending: dict[int, dict[tuple[str, str], Arrays]] = {}
        buffered: list[dict[str, Any]] = []
        self.peak_pending = 0
        for mag, slide, arrays in self._samples([int(i) for i in order], wanted):
            for p in self._owners.get(slide, []):
                if p not in missing or (mag, slide) in pending.get(p, {}):
                    continue
                pending.setdefault(p, {})[(mag, slide)] = arrays
                self.peak_pending = max(self.peak_pending, len(pending))
                missing[p] -= 1
                if missing[p]:
                    continue
                del missing[p]
                item = self._item(p, pending.pop(p))
                if not self.shuffle:
                    yield item
                    continue
                buffered.append(item)
                if len(buffered) >= self.buffer:
                    yield buffered.pop(int(rng.integers(len(buffered))))
        for i in rng.permutation(len(buffered)) if self.shuffle else range(len(buffered)):
            yield buffered[i]
        if missing:
            names = sorted(self.patients[p] for p in missing)
            raise HistoError(
                f"{len(names)} patient(s) never completed while streaming the shards (e.g. {names[:5]}): "
                "a slide listed in index.json is not in its shard; rerun the extract stage"
            )

    def _samples(self, order: list[int], wanted: Mapping[str, set[str]]) -> Iterator[tuple[str, str, Arrays]]:
        """(magnification, slide, (features, coords)) of the wanted samples, the magnifications' shards
        at each position of `order` read in lockstep."""
        from webdataset.tariterators import tarfile_samples

        for position in order:
            readers = []
            for mag in self.features.magnifications:
                shards = self.features.shards[mag]
                if position < len(shards) and wanted[mag]:
                    keys = wanted[mag]
                    readers.append(
                        (mag, shards[position], iter(tarfile_samples(
                            [{"url": str(shards[position])}],
                            select_files=lambda name, keys=keys: name.partition(".")[0] in keys,
                        )))
                    )  # fmt: skip
            while readers:
                for reader in list(readers):
                    mag, shard, samples = reader
                    sample = next(samples, None)
                    if sample is None:
                        readers.remove(reader)
                        continue
                    yield mag, *self._decode(shard, sample)

    def _decode(self, shard: Any, sample: dict[str, Any]) -> tuple[str, Arrays]:
        """As `SlideFeatures` reads a bag: float32, rows with non-finite features dropped."""
        try:
            meta = json.loads(sample["json"])
            features = np.load(io.BytesIO(sample["features.npy"]), allow_pickle=False).astype(np.float32)
            coords = np.load(io.BytesIO(sample["coords.npy"]), allow_pickle=False).astype(np.float32)
        except (KeyError, ValueError) as exc:
            raise HistoError(f"{shard}: sample {sample.get('__key__')} is unreadable ({exc})") from None
        if features.ndim != 2 or features.shape[1] != self.features.feature_dim:
            raise HistoError(
                f"{shard}: sample {sample['__key__']} has features of shape {features.shape}, other "
                f"slides have {self.features.feature_dim}-d; were they made by different extractors?"
            )
        if len(coords) != len(features):
            coords = np.zeros((len(features), 2), np.float32)
        finite = np.isfinite(features).all(axis=1)
        if not finite.all():
            features, coords = features[finite], coords[finite]
        return slide_key(str(meta["slide_id"])), (features, coords)

    def _item(self, index: int, parts: Mapping[tuple[str, str], Arrays]) -> dict[str, Any]:
        patient = self.patients[index]
        rng = self.rng if self.sample else None
        item: dict[str, Any] = {
            "patient_id": patient, "target": self.targets[index], "features": {}, "coords": {}, "omics": {},
        }  # fmt: skip
        for mag in self.features.magnifications:
            bags = [parts[(mag, s)] for s in self.slides[patient]]
            features = np.concatenate([b[0] for b in bags])
            coords = np.concatenate([b[1] for b in bags])
            item["features"][mag], item["coords"][mag] = limit_patches(
                features, coords, self.max_patches, rng
            )
        for group, values in self.omics.items():
            item["omics"][group] = values[index]
        return item
