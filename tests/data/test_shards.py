"""The shard format: bounded, chunked, self-describing, atomic, and checked on reading."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from dstcli.apps.base import TaskSpec
from dstcli.data.shards import SCHEMA_VERSION, DatasetWriter, ShardDataset, open_prepared
from dstcli.errors import DataError

TASKS = [TaskSpec("a", "classification", 17, 13, num_classes=3),
         TaskSpec("b", "classification", 17, 13, num_classes=2)]


def block(n: int, start: int = 0):
    rng = np.random.default_rng(start)
    images = rng.integers(0, 256, size=(n, 1, 8, 8), dtype=np.uint8)
    labels = {"a": np.arange(start, start + n) % 3, "b": np.full(n, -1)}
    masks = {"a": np.ones(n, np.uint8), "b": np.zeros(n, np.uint8)}
    return images, labels, masks, [f"s{start + i}" for i in range(n)]


def write(out, max_shard_bytes=80 * 7, **kw):
    with DatasetWriter(out, "omniglot", TASKS, (1, 8, 8), {"seed": 3}, [], "cpu-tiny",
                       max_shard_bytes=max_shard_bytes, **kw) as writer:
        writer.split("train").append(*block(10))
        writer.split("train").append(*block(5, start=10))
        writer.split("test").append(*block(4, start=100))
        return writer.commit()


def test_shards_are_bounded_and_read_back(tmp_path):
    manifest = write(tmp_path / "d")
    shards = manifest["splits"]["train"]["shards"]

    # A sample is 64 image bytes and two int64 labels: 80 bytes, 7 to a shard.
    assert [s["samples"] for s in shards] == [7, 7, 1]
    data = open_prepared(tmp_path / "d")
    dataset = ShardDataset(data, "train")
    order = np.array([14, 0, 7, 3, 3])
    batch = dataset.read(order)
    images, labels, _, _ = block(10)
    more, more_labels, _, _ = block(5, start=10)
    all_images = np.concatenate([images, more])
    assert np.array_equal(batch["images"], all_images[order])
    assert list(batch["labels"]["a"]) == list(order % 3)
    assert list(batch["Z"]["b"]) == [0] * 5


def test_manifest_and_root_attributes_describe_the_data(tmp_path):
    manifest = write(tmp_path / "d")
    on_disk = json.loads((tmp_path / "d" / "manifest.json").read_text())

    assert on_disk == manifest
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert manifest["protocol"] == {"seed": 3}
    assert manifest["image"] == {"inputs": 1, "channels": 1, "height": 8, "width": 8,
                                 "dtype": "uint8", "preset": "cpu-tiny"}
    a = next(t for t in manifest["tasks"] if t["name"] == "a")
    assert a["labelled"] == {"train": 15, "test": 4}
    assert a["depth"] == 17 and a["num_classes"] == 3 and a["kind"] == "classification"
    with h5py.File(tmp_path / "d" / "train-00000.h5") as f:
        assert f.attrs["schema_version"] == SCHEMA_VERSION
        assert f.attrs["split"] == "train"
        assert [t["name"] for t in json.loads(f.attrs["tasks"])] == ["a", "b"]
        assert f["images"].chunks[0] <= 7 and f["images"].dtype == np.uint8
        assert f["Z/a"].dtype == np.uint8


def test_an_interrupted_prepare_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with DatasetWriter(tmp_path / "d", "omniglot", TASKS, (1, 8, 8), {}, [], "cpu-tiny"
                           ) as writer:
            writer.split("train").append(*block(3))
            raise RuntimeError("killed half-way")
    assert list(tmp_path.iterdir()) == []


def test_force_replaces_whole(tmp_path):
    write(tmp_path / "d")
    with pytest.raises(DataError, match="--force"):
        write(tmp_path / "d")
    write(tmp_path / "d", max_shard_bytes=10**6, force=True)
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [
        "manifest.json", "test-00000.h5", "train-00000.h5"]


def test_reader_refuses_folder_without_manifest(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(DataError, match="no manifest.json"):
        open_prepared(tmp_path / "d")
    with pytest.raises(DataError, match="not a folder"):
        open_prepared(tmp_path / "nothing")


def test_reader_names_a_truncated_shard(tmp_path):
    write(tmp_path / "d")
    shard = tmp_path / "d" / "train-00001.h5"
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(DataError, match="train-00001.h5 has 100 bytes"):
        open_prepared(tmp_path / "d")


def test_reader_refuses_another_schema_version(tmp_path):
    write(tmp_path / "d")
    path = tmp_path / "d" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["schema_version"] = 99
    path.write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="schema version 99"):
        open_prepared(tmp_path / "d")


def test_pair_samples_keep_both_images(tmp_path):
    with DatasetWriter(tmp_path / "pairs", "omniglot", TASKS, (2, 1, 8, 8), {}, [],
                       "cpu-tiny") as writer:
        images = np.arange(3 * 2 * 64, dtype=np.uint8).reshape(3, 2, 1, 8, 8)
        labels = {"a": np.zeros(3, np.int64), "b": np.zeros(3, np.int64)}
        masks = {"a": np.ones(3, np.uint8), "b": np.ones(3, np.uint8)}
        writer.split("train").append(images, labels, masks, ["p0", "p1", "p2"])
        manifest = writer.commit()

    assert manifest["image"]["inputs"] == 2
    data = open_prepared(tmp_path / "pairs")
    assert data.image_shape == (2, 1, 8, 8) and data.input_size == (8, 8)
    assert np.array_equal(ShardDataset(data, "train").read([2, 0])["images"], images[[2, 0]])
