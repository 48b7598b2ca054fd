"""Feature-bag files: histo's own (streamed, atomic), CLAM's and TRIDENT's layouts, and shards."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from histo.errors import HistoError
from histo.plugins.features import BagWriter, find_bags, iter_shard, read_bag, write_bag, write_shards

RNG = np.random.default_rng(0)


def _bag(n: int = 6, d: int = 4) -> tuple[np.ndarray, np.ndarray]:
    features = RNG.normal(size=(n, d)).astype(np.float32)
    coords = np.stack([np.arange(n) * 256, np.arange(n) * 128], axis=1).astype(np.int64)
    return features, coords


def test_histo_bag_round_trip_keeps_missing_rows_aligned(tmp_path: Path) -> None:
    features, coords = _bag()
    valid = np.array([True, False, True, True, False, True])
    features[~valid] = np.nan
    parent = np.array([0, 0, 1, 1, 2, 2])
    path = write_bag(
        tmp_path / "s1.h5",
        features,
        coords,
        {"slide_id": "s1", "extractor_hash": "abc"},
        valid=valid,
        parent=parent,
    )

    full = read_bag(path, drop_missing=False)
    assert full.layout == "histo"
    assert full.features.shape == (6, 4) and np.isnan(full.features[~valid]).all()
    np.testing.assert_array_equal(full.coords, coords)
    assert full.rows is None and full.attrs["n_missing"] == 2 and full.attrs["n_patches"] == 6

    dropped = read_bag(path)
    np.testing.assert_array_equal(dropped.rows, [0, 2, 3, 5])
    np.testing.assert_array_equal(dropped.features, features[valid])
    np.testing.assert_array_equal(dropped.coords, coords[valid])
    np.testing.assert_array_equal(dropped.parent, parent[valid])
    assert dropped.slide_id == "s1" and dropped.feature_dim == 4 and len(dropped) == 4


def test_bag_writer_streams_batches_and_float16(tmp_path: Path) -> None:
    features, coords = _bag(10, 3)
    writer = BagWriter(
        tmp_path / "b.h5", coords=coords, feature_dim=3, attrs={"slide_id": "b"}, dtype="float16"
    )
    for start in range(0, 10, 4):
        rows = np.arange(start, min(start + 4, 10))
        writer.write(rows, features[rows], np.ones(len(rows), bool))
    assert not (tmp_path / "b.h5").exists(), "the file must not appear before commit"
    writer.commit()
    with h5py.File(tmp_path / "b.h5") as f:
        assert f["features"].dtype == np.float16
        assert f["features"].chunks is None, "contiguous: whole bags read fast and can be memory-mapped"
    np.testing.assert_allclose(read_bag(tmp_path / "b.h5").features, features, rtol=1e-3, atol=1e-3)


def test_aborted_writer_leaves_the_previous_file_and_no_temporary(tmp_path: Path) -> None:
    features, coords = _bag()
    target = write_bag(tmp_path / "s.h5", features, coords, {"slide_id": "s", "extractor_hash": "old"})
    before = target.read_bytes()
    writer = BagWriter(target, coords=coords, feature_dim=4, attrs={"extractor_hash": "new"})
    writer.write(np.arange(3), features[:3], np.ones(3, bool))
    writer.abort()
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["s.h5"]


def _clam(root: Path) -> np.ndarray:
    """CLAM's extract_features_fp.py output: h5_files (appended, chunked, int32 coords) and pt_files."""
    features, coords = _bag(5, 8)
    (root / "h5_files").mkdir(parents=True)
    (root / "pt_files").mkdir()
    with h5py.File(root / "h5_files" / "TCGA-AA-0001.h5", "w") as f:
        f.create_dataset("features", data=features, maxshape=(None, 8), chunks=(1, 8))
        f.create_dataset("coords", data=coords.astype(np.int32), maxshape=(None, 2), chunks=(1, 2))
    torch.save(torch.from_numpy(features), root / "pt_files" / "TCGA-AA-0001.pt")
    torch.save(torch.from_numpy(features[:2]), root / "pt_files" / "TCGA-AA-0002.pt")  # pt only
    return features


def test_clam_layout(tmp_path: Path) -> None:
    features = _clam(tmp_path / "clam")
    bags = find_bags(tmp_path / "clam")
    assert bags == {
        "TCGA-AA-0001": tmp_path / "clam" / "h5_files" / "TCGA-AA-0001.h5",
        "TCGA-AA-0002": tmp_path / "clam" / "pt_files" / "TCGA-AA-0002.pt",
    }
    h5 = read_bag(bags["TCGA-AA-0001"])
    assert h5.layout == "clam" and h5.coords is not None and h5.coords.dtype == np.int64
    np.testing.assert_array_equal(h5.features, features)
    pt = read_bag(bags["TCGA-AA-0002"])
    assert pt.layout == "pt" and pt.coords is None and pt.slide_id == "TCGA-AA-0002"
    np.testing.assert_array_equal(pt.features, features[:2])


def _trident(job: Path, encoder: str) -> tuple[Path, np.ndarray]:
    """TRIDENT's Processor output: <job>/20x_256px_0px_overlap/features_<encoder>/<slide>.h5."""
    folder = job / "20x_256px_0px_overlap" / f"features_{encoder}"
    folder.mkdir(parents=True, exist_ok=True)
    features, coords = _bag(7, 16)
    with h5py.File(folder / "slide-a.h5", "w") as f:
        dset = f.create_dataset("features", data=features, maxshape=(None, 16), chunks=(1, 16))
        dset.attrs.update({"name": "slide-a", "savetodir": str(folder), "encoder": encoder})
        cset = f.create_dataset("coords", data=coords, maxshape=(None, 2), chunks=(1, 2))
        cset.attrs.update(
            {
                "patch_size": 256,
                "patch_size_level0": 512,
                "level0_magnification": 40,
                "target_magnification": 20,
                "overlap": 0,
                "name": "slide-a",
                "level0_width": 4000,
                "level0_height": 3000,
            }
        )
    np.save(folder / "unused.npy", features)  # other files are ignored
    torch.save(features[:3], folder / "slide-b.pt")  # saveas='pt' stores a numpy array
    return folder, features


def test_trident_layout(tmp_path: Path) -> None:
    folder, features = _trident(tmp_path / "job", "uni_v1")
    bags = find_bags(tmp_path / "job")
    assert bags == {"slide-a": folder / "slide-a.h5", "slide-b": folder / "slide-b.pt"}
    bag = read_bag(bags["slide-a"])
    assert bag.layout == "trident"
    assert bag.attrs["encoder"] == "uni_v1" and bag.attrs["patch_size_level0"] == 512
    np.testing.assert_array_equal(bag.features, features)
    np.testing.assert_array_equal(read_bag(bags["slide-b"]).features, features[:3])

    _trident(tmp_path / "job", "conch_v15")
    with pytest.raises(HistoError, match=r"several encoders .*conch_v15.*uni_v1"):
        find_bags(tmp_path / "job")
    assert find_bags(tmp_path / "job", encoder="conch_v15").keys() == {"slide-a", "slide-b"}


def test_histo_stage_folder_with_magnifications(tmp_path: Path) -> None:
    features, coords = _bag()
    for mag in ("10x", "20x"):
        write_bag(
            tmp_path / "extract" / "features" / mag / "s1.h5", features, coords, {"extractor_hash": "h"}
        )
    (tmp_path / "extract" / "features" / "20x" / ".s2.h5.abc.partial").write_bytes(b"half")
    with pytest.raises(HistoError, match=r"several magnifications .*10x, 20x.*`magnification`"):
        find_bags(tmp_path / "extract")
    assert find_bags(tmp_path / "extract", magnification="20x") == {
        "s1": tmp_path / "extract" / "features" / "20x" / "s1.h5"
    }
    with pytest.raises(HistoError, match="no magnification '5x'"):
        find_bags(tmp_path / "extract", magnification="5x")
    assert find_bags(tmp_path / "extract" / "features" / "10x").keys() == {"s1"}


def test_clear_errors_for_bad_folders_and_files(tmp_path: Path) -> None:
    with pytest.raises(HistoError, match="no feature files"):
        find_bags(tmp_path)
    with pytest.raises(HistoError, match="does not exist"):
        find_bags(tmp_path / "nope")
    with h5py.File(tmp_path / "coords_only.h5", "w") as f:
        f.create_dataset("coords", data=np.zeros((2, 2), np.int64))
    with pytest.raises(HistoError, match="no `features` dataset"):
        read_bag(tmp_path / "coords_only.h5")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "dict.pt")
    with pytest.raises(HistoError, match="holds a dict"):
        read_bag(tmp_path / "dict.pt")


def test_pt_files_are_never_unpickled_as_code(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("pwned",))

    torch.save(Evil(), tmp_path / "evil.pt")
    with pytest.raises(HistoError, match=r"cannot read .*evil.pt"):
        read_bag(tmp_path / "evil.pt")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_shards_hold_every_bag_and_are_reproducible(tmp_path: Path) -> None:
    wds = pytest.importorskip("webdataset")
    sources = []
    for i, slide in enumerate(["TCGA-02-0001-01Z-00-DX1.83fdf3e0", "b", "c"]):
        features, coords = _bag(4 + i, 5)
        valid = np.ones(len(features), bool)
        valid[0] = i != 1  # slide b has a missing patch: shards keep only read patches
        features[~valid] = np.nan
        path = write_bag(
            tmp_path / "bags" / f"{slide}.h5", features, coords, {"slide_id": slide}, valid=valid
        )
        sources.append((slide, "20x", path))

    index = write_shards(sources, tmp_path / "s1", max_samples=2)
    assert [len(s["samples"]) for s in index["shards"]] == [2, 1]
    assert json.loads((tmp_path / "s1" / "index.json").read_text()) == index
    again = write_shards(sources, tmp_path / "s2", max_samples=2)
    assert again == index
    for shard in index["shards"]:
        assert _sha(tmp_path / "s1" / shard["shard"]) == _sha(tmp_path / "s2" / shard["shard"])

    seen = {}
    for shard in index["shards"]:
        for meta, features, coords in iter_shard(tmp_path / "s1" / shard["shard"]):
            seen[meta["slide_id"]] = (meta, features, coords)
    assert seen.keys() == {"TCGA-02-0001-01Z-00-DX1.83fdf3e0", "b", "c"}
    meta_b, features_b, coords_b = seen["b"]
    expected = read_bag(tmp_path / "bags" / "b.h5")
    np.testing.assert_array_equal(features_b, expected.features)
    np.testing.assert_array_equal(coords_b, expected.coords)
    assert meta_b["n_missing"] == 1 and meta_b["n_patches"] == 5 and not np.isnan(features_b).any()

    # webdataset itself reads them: one sample per bag, with a key free of dots
    urls = [str(tmp_path / "s1" / s["shard"]) for s in index["shards"]]
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode())
    assert len(samples) == 3
    first = samples[0]
    assert "." not in first["__key__"] and first["json"]["slide_id"] == "TCGA-02-0001-01Z-00-DX1.83fdf3e0"
    assert first["features.npy"].shape == (4, 5)

    by_size = write_shards(sources, tmp_path / "s3", max_samples=100, max_bytes=1)
    assert len(by_size["shards"]) == 3, "a sample larger than max_bytes still gets a shard of its own"
