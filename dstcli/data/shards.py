"""The prepared-data format shared by every app: HDF5 shards plus `manifest.json`.

A prepared folder holds `train-NNNNN.h5` and `test-NNNNN.h5` shards and a `manifest.json`
written last. Each shard stores:

    images            (N, C, H, W) uint8, chunked by a few samples for random access;
                      (N, P, C, H, W) for apps whose samples are P images (fingerprint pairs)
    labels/<task>     (N, *label_shape) the task's target (class index -1 where unlabelled)
    Z/<task>          (N,) uint8 label mask, 1 = labelled (the paper's Z)
    sample_id         (N,) variable-length UTF-8, where the sample came from

and root attributes with the schema version, the app, the split and the task list. The format is
documented in docs/shard-format.md.

Writing goes to a hidden temporary folder beside the destination, which is renamed into place
only after the manifest is complete, so a reader never sees a half-written folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dstcli import __version__
from dstcli.apps.base import TaskSpec
from dstcli.data.staging import staging_dir, swap_in
from dstcli.errors import DataError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
SPLITS = ("train", "test")
DEFAULT_SHARD_BYTES = 256 * 2**20
CHUNK_BYTES = 256 * 2**10


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_sha256(root: Path) -> str:
    """One checksum for a folder: every file's relative path and bytes, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(file_sha256(path).encode())
    return digest.hexdigest()


def source_record(path: Path) -> dict[str, str]:
    path = Path(path)
    checksum = tree_sha256(path) if path.is_dir() else file_sha256(path)
    return {"path": str(path), "kind": "folder" if path.is_dir() else "file", "sha256": checksum}


# ---------------------------------------------------------------------------------------------
# Writing


class _SplitWriter:
    """Appends samples to one split, rolling over to a new shard at the size bound."""

    def __init__(self, owner: DatasetWriter, split: str):
        self.owner = owner
        self.split = split
        self.shards: list[dict[str, Any]] = []
        self.labelled = {t.name: 0 for t in owner.tasks}
        self.samples = 0
        self._file = None
        self._rows = 0

    def append(
        self,
        images: np.ndarray,
        labels: dict[str, np.ndarray],
        masks: dict[str, np.ndarray],
        sample_ids: list[str],
    ) -> None:
        """Add a block of samples: images (n, C, H, W) uint8, per-task labels and masks."""
        n = len(images)
        self.owner._check_block(images, labels, masks, sample_ids)
        start = 0
        while start < n:
            if self._file is None or self._rows >= self.owner.shard_samples:
                self._open_next()
            take = min(n - start, self.owner.shard_samples - self._rows)
            stop = start + take
            self._write(images[start:stop], labels, masks, sample_ids, start, stop)
            start = stop
        for task in self.owner.tasks:
            self.labelled[task.name] += int(np.count_nonzero(masks[task.name]))
        self.samples += n

    def _open_next(self) -> None:
        import h5py

        self._close_current()
        name = f"{self.split}-{len(self.shards):05d}.h5"
        f = h5py.File(self.owner.tmp_dir / name, "w")
        shape = self.owner.image_shape
        chunk = max(1, min(self.owner.shard_samples, CHUNK_BYTES // self.owner.sample_bytes))
        f.create_dataset(
            "images", (0, *shape), maxshape=(None, *shape), dtype="uint8",
            chunks=(chunk, *shape),
        )
        for task in self.owner.tasks:
            shape, dtype = self.owner.label_layout[task.name]
            # Chunks of about CHUNK_BYTES whatever a label's size: a clean image per row
            # (denoising) must not be chunked like a class index.
            row = max(1, int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize)
            rows = max(1, min(4096, self.owner.shard_samples, CHUNK_BYTES // row))
            f.create_dataset(
                f"labels/{task.name}", (0, *shape), maxshape=(None, *shape), dtype=dtype,
                chunks=(rows, *shape),
            )
            f.create_dataset(f"Z/{task.name}", (0,), maxshape=(None,), dtype="uint8",
                             chunks=(max(1, min(4096, self.owner.shard_samples)),))
        f.create_dataset("sample_id", (0,), maxshape=(None,), dtype=h5py.string_dtype(),
                         chunks=(max(1, min(4096, self.owner.shard_samples)),))
        self.owner._write_root_attrs(f, self.split)
        self._file = f
        self._rows = 0
        self.shards.append({"file": name, "samples": 0})

    def _write(self, images, labels, masks, sample_ids, start, stop) -> None:
        f = self._file
        a, b = self._rows, self._rows + (stop - start)
        for key, block in [("images", images)] + [
            (f"labels/{t}", labels[t][start:stop]) for t in labels
        ] + [(f"Z/{t}", masks[t][start:stop].astype(np.uint8)) for t in masks]:
            ds = f[key]
            ds.resize(b, axis=0)
            ds[a:b] = block
        ids = f["sample_id"]
        ids.resize(b, axis=0)
        ids[a:b] = sample_ids[start:stop]
        self._rows = b
        self.shards[-1]["samples"] = b

    def _close_current(self) -> None:
        if self._file is not None:
            self._file.attrs["samples"] = self._rows
            self._file.close()
            self._file = None

    def finish(self) -> dict[str, Any]:
        self._close_current()
        for shard in self.shards:
            shard["bytes"] = (self.owner.tmp_dir / shard["file"]).stat().st_size
        return {"samples": self.samples, "labelled": self.labelled, "shards": self.shards}


class DatasetWriter:
    """Writes one prepared folder atomically.

    Use as a context manager: on an exception the temporary folder is removed and the
    destination is left as it was; on success `commit()` must have been called.
    """

    def __init__(
        self,
        out_dir: Path,
        app: str,
        tasks: list[TaskSpec],
        image_shape: tuple[int, int, int],
        protocol: dict[str, Any],
        sources: list[dict[str, str]],
        preset: str,
        label_layout: dict[str, tuple[tuple[int, ...], str]] | None = None,
        max_shard_bytes: int = DEFAULT_SHARD_BYTES,
        force: bool = False,
    ):
        self.out_dir = Path(out_dir)
        self.app = app
        self.tasks = list(tasks)
        self.image_shape = tuple(image_shape)
        self.protocol = protocol
        self.sources = sources
        self.preset = preset
        self.force = force
        self.warnings: list[str] = []
        self.label_layout = {t.name: ((), "int64") for t in self.tasks}
        self.label_layout.update(label_layout or {})
        if len(self.image_shape) not in (3, 4):
            raise ValueError(f"image_shape must be (C, H, W) or (P, C, H, W), got "
                             f"{self.image_shape}")
        self.sample_bytes = int(np.prod(self.image_shape))
        label_bytes = sum(int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
                          for shape, dtype in self.label_layout.values())
        self.shard_samples = max(1, max_shard_bytes // (self.sample_bytes + label_bytes))
        if self.out_dir.exists() and not force:
            what = "a prepared dataset" if (self.out_dir / MANIFEST).exists() else "a folder"
            raise DataError(
                f"{self.out_dir} already holds {what}; pass --force to replace it, "
                "or choose another --out"
            )
        self.tmp_dir = staging_dir(self.out_dir)
        self._splits = {s: _SplitWriter(self, s) for s in SPLITS}
        self._committed = False

    def split(self, name: str) -> _SplitWriter:
        return self._splits[name]

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def _check_block(self, images, labels, masks, sample_ids) -> None:
        n = len(images)
        if images.dtype != np.uint8 or images.shape[1:] != self.image_shape:
            raise ValueError(f"images must be uint8 {self.image_shape}, got "
                             f"{images.dtype} {images.shape[1:]}")
        names = {t.name for t in self.tasks}
        if set(labels) != names or set(masks) != names:
            raise ValueError("labels and masks must have one entry per task")
        if any(len(a) != n for a in [*labels.values(), *masks.values(), sample_ids]):
            raise ValueError("labels, masks and sample ids must have one row per image")

    def _write_root_attrs(self, f, split: str) -> None:
        f.attrs["schema_version"] = SCHEMA_VERSION
        f.attrs["app"] = self.app
        f.attrs["split"] = split
        f.attrs["tasks"] = json.dumps([t.to_json() for t in self.tasks])

    def commit(self) -> dict[str, Any]:
        """Close the shards, write the manifest, and move the folder into place."""
        splits = {name: writer.finish() for name, writer in self._splits.items()}
        tasks = []
        for t in self.tasks:
            entry = t.to_json()
            entry["labelled"] = {s: splits[s]["labelled"][t.name] for s in SPLITS}
            shape, dtype = self.label_layout[t.name]
            entry["label"] = {"shape": list(shape), "dtype": dtype}
            tasks.append(entry)
        *pair, c, h, w = self.image_shape
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "app": self.app,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "dst_version": __version__,
            "image": {"inputs": pair[0] if pair else 1, "channels": c, "height": h, "width": w,
                      "dtype": "uint8", "preset": self.preset},
            "tasks": tasks,
            "splits": {s: {k: v for k, v in splits[s].items() if k != "labelled"}
                       for s in SPLITS},
            "protocol": self.protocol,
            "sources": self.sources,
            "warnings": self.warnings,
        }
        tmp_manifest = self.tmp_dir / (MANIFEST + ".tmp")
        tmp_manifest.write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(tmp_manifest, self.tmp_dir / MANIFEST)

        swap_in(self.tmp_dir, self.out_dir)
        self._committed = True
        return manifest

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        for writer in self._splits.values():
            try:
                writer._close_current()
            except Exception:  # noqa: BLE001 - the original error matters more
                pass
        if not self._committed:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class PreparedData:
    """A prepared folder whose manifest has been read and checked."""

    root: Path
    manifest: dict[str, Any]

    @property
    def app(self) -> str:
        return self.manifest["app"]

    @property
    def tasks(self) -> list[TaskSpec]:
        return [TaskSpec.from_json(t) for t in self.manifest["tasks"]]

    def labelled_count(self, task: str, split: str = "train") -> int:
        for t in self.manifest["tasks"]:
            if t["name"] == task:
                return int(t["labelled"][split])
        raise KeyError(task)

    @property
    def inputs(self) -> int:
        """Images per sample: 1, or 2 for a bilateral app's pairs."""
        return int(self.manifest["image"].get("inputs", 1))

    @property
    def channels(self) -> int:
        return int(self.manifest["image"]["channels"])

    @property
    def input_size(self) -> tuple[int, int]:
        im = self.manifest["image"]
        return int(im["height"]), int(im["width"])

    @property
    def image_shape(self) -> tuple[int, ...]:
        """One sample's images as stored: (C, H, W), or (P, C, H, W) for P inputs."""
        single = (self.channels, *self.input_size)
        return single if self.inputs == 1 else (self.inputs, *single)

    def shard_paths(self, split: str) -> list[Path]:
        return [self.root / s["file"] for s in self.manifest["splits"][split]["shards"]]


def open_prepared(root: Path) -> PreparedData:
    """Read and check a prepared folder: manifest present, schema known, shards whole."""
    root = Path(root)
    manifest_path = root / MANIFEST
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; run `dst prepare` first and pass its --out")
    if not manifest_path.exists():
        raise DataError(
            f"{root} has no {MANIFEST}: it is not a prepared dataset, or its preparation did "
            "not finish; run `dst prepare` again"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{manifest_path} is not valid JSON ({e}); prepare the data again") from e
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise DataError(
            f"{manifest_path} has schema version {version!r}, this dst reads version "
            f"{SCHEMA_VERSION}; prepare the data again with this version"
        )
    for split in SPLITS:
        for shard in manifest["splits"][split]["shards"]:
            path = root / shard["file"]
            if not path.exists():
                raise DataError(f"shard {path} is missing; prepare the data again")
            size = path.stat().st_size
            if size != shard["bytes"]:
                raise DataError(
                    f"shard {path} has {size} bytes, the manifest says {shard['bytes']}: it is "
                    "truncated or was changed; prepare the data again"
                )
    return PreparedData(root, manifest)


def finished_prepare(root: Path, app: str) -> PreparedData | None:
    """The prepared folder at root when a prepare of `app` finished there, else None.

    `dst prepare` calls this before reading any raw data, so that a finished prepare is not
    redone (hours for the real sets) unless --force; a folder that is damaged, half there or
    of another app is not "finished" and the writer refuses it as before.
    """
    try:
        data = open_prepared(root)
    except DataError:
        return None
    return data if data.app == app else None


def verify_prepared(root: Path) -> list[str]:
    """Every problem of a prepared folder, deeper than open_prepared: each shard opened.

    Checks the manifest (schema version, shard sizes), then in each shard the schema version
    attribute and the row count of every dataset against the manifest. Returns [] when whole.
    """
    import h5py

    try:
        data = open_prepared(root)
    except DataError as e:
        return [str(e)]
    problems = []
    names = [t.name for t in data.tasks]
    keys = ["images", "sample_id"] + [f"{kind}/{t}" for t in names for kind in ("labels", "Z")]
    for split in SPLITS:
        for shard in data.manifest["splits"][split]["shards"]:
            path = data.root / shard["file"]
            try:
                f = h5py.File(path, "r")
            except OSError as e:
                problems.append(f"shard {path} does not open as HDF5 ({e}); prepare the data "
                                "again")
                continue
            with f:
                version = f.attrs.get("schema_version")
                if version != SCHEMA_VERSION:
                    problems.append(f"shard {path} has schema version {version}, the "
                                    f"manifest {SCHEMA_VERSION}; prepare the data again")
                for key in keys:
                    try:
                        rows = f[key].shape[0]
                        _ = f[key][max(0, rows - 1):rows]  # the last chunk must read
                    except (KeyError, OSError) as e:
                        problems.append(f"shard {path}: dataset {key} is missing or unreadable "
                                        f"({e}); prepare the data again")
                        continue
                    if rows != shard["samples"]:
                        problems.append(f"shard {path}: dataset {key} has {rows} rows, the "
                                        f"manifest says {shard['samples']}; prepare the data "
                                        "again")
    return problems


def _read_rows(ds, rows: np.ndarray) -> np.ndarray:
    """Read arbitrary rows of an HDF5 dataset: h5py wants increasing, unique indices."""
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    unique, inverse = np.unique(sorted_rows, return_inverse=True)
    block = ds[unique]
    out = np.empty((len(rows), *block.shape[1:]), dtype=block.dtype)
    out[order] = block[inverse]
    return out


class ShardDataset:
    """Random access to one split of a prepared folder.

    Each process opens the HDF5 files itself on first use (h5py handles must not cross a
    fork), and `__getitems__` reads a whole batch per shard in one call.
    """

    def __init__(self, data: PreparedData, split: str):
        self.data = data
        self.split = split
        self.paths = data.shard_paths(split)
        sizes = [s["samples"] for s in data.manifest["splits"][split]["shards"]]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.task_names = [t.name for t in data.tasks]
        self._files: list | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _handles(self) -> list:
        import h5py

        if self._files is None or self._pid != os.getpid():
            self._files = [h5py.File(p, "r") for p in self.paths]
            self._pid = os.getpid()
        return self._files

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_files"] = None
        state["_pid"] = None
        return state

    def read(self, indices) -> dict[str, Any]:
        """A batch as numpy arrays: images, labels per task, Z per task, in index order."""
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"sample index out of range 0..{len(self) - 1}")
        files = self._handles()
        shard_of = np.searchsorted(self.offsets, indices, side="right") - 1
        images = np.empty((len(indices), *self.data.image_shape), dtype=np.uint8)
        labels: dict[str, np.ndarray] = {}
        masks: dict[str, np.ndarray] = {}
        for s in np.unique(shard_of):
            where = np.nonzero(shard_of == s)[0]
            local = indices[where] - self.offsets[s]
            f = files[s]
            images[where] = _read_rows(f["images"], local)
            for t in self.task_names:
                block = _read_rows(f[f"labels/{t}"], local)
                if t not in labels:
                    labels[t] = np.empty((len(indices), *block.shape[1:]), dtype=block.dtype)
                    masks[t] = np.empty(len(indices), dtype=np.uint8)
                labels[t][where] = block
                masks[t][where] = _read_rows(f[f"Z/{t}"], local)
        return {"images": images, "labels": labels, "Z": masks}

    def read_all(self, key: str) -> np.ndarray:
        """One array (`Z/<task>`, `labels/<task>`) over the whole split, in sample order."""
        files = self._handles()
        return np.concatenate([f[key][:] for f in files]) if files else np.empty(0)

    def __getitems__(self, indices) -> dict[str, Any]:
        import torch

        batch = self.read(indices)
        return {
            "images": torch.from_numpy(batch["images"]),
            "labels": {t: torch.from_numpy(a) for t, a in batch["labels"].items()},
            "Z": {t: torch.from_numpy(a.astype(bool)) for t, a in batch["Z"].items()},
        }

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])
