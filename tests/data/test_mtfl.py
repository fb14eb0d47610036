"""MTFL preparation: the real AFLW part of MTFL, the file format's traps, and bad lines."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from helpers import shared_data
from typer.testing import CliRunner

from dstcli.apps import APPS
from dstcli.cli.main import app as cli
from dstcli.data.protocols import manifests_dir
from dstcli.data.shards import ShardDataset, open_prepared
from dstcli.errors import DataError, DstError

SIZE = 32


def prepare(raw: Path, out: Path, **kw) -> dict:
    return APPS.get("mtfl").prepare(raw, out, "cpu-tiny", **kw)


def read_all(out: Path) -> tuple[list[str], dict]:
    """Both splits together: sample ids, labels and Z per task."""
    data = open_prepared(out)
    ids, labels, z = [], {}, {}
    for split in ("train", "test"):
        dataset = ShardDataset(data, split)
        batch = dataset.read(np.arange(len(dataset)))
        ids += list(dataset.read_all("sample_id").astype(str))
        for t in batch["labels"]:
            labels.setdefault(t, []).append(batch["labels"][t])
            z.setdefault(t, []).append(batch["Z"][t])
    return ids, {t: np.concatenate(v) for t, v in labels.items()}, {
        t: np.concatenate(v) for t, v in z.items()}


def test_real_mtfl_has_the_counts_of_its_testing_txt(tmp_path):
    root = shared_data("mtfl")
    manifest = prepare(root, tmp_path / "out")

    lines = [line.split() for line in (root / "testing.txt").read_text().splitlines()
             if line.strip()]
    splits = manifest["splits"]
    assert splits["train"]["samples"] + splits["test"]["samples"] == len(lines) == 2995
    assert splits["test"]["samples"] == round(0.3 * 2995)
    ids, labels, z = read_all(tmp_path / "out")
    for task in manifest["tasks"]:
        assert z[task["name"]].all(), task["name"]  # every label is kept by default
    # File value -> class index: gender 1 male -> 0; smile and glasses 1 yes -> 1; pose - 1.
    expected = {
        "gender": Counter({1: 0, 2: 1}[int(f[11])] for f in lines),
        "smile": Counter({1: 1, 2: 0}[int(f[12])] for f in lines),
        "spectacles": Counter({1: 1, 2: 0}[int(f[13])] for f in lines),
        "pose": Counter(int(f[14]) - 1 for f in lines),
    }
    for task, counts in expected.items():
        assert Counter(labels[task].tolist()) == counts, task

    # Landmarks: pixels of the 150x150 image, pixel centres, as shares of the width.
    first = ids.index("testing.txt:1:AFLW/0001-image20056.jpg")
    coords = np.array(lines[0][1:11], dtype=float)
    expected_xy = (np.stack([coords[:5], coords[5:]], axis=1) + 0.5) / 150
    assert np.abs(labels["landmarks"][first, :, :2] - expected_xy).max() * SIZE < 1e-3
    assert (labels["landmarks"][:, :, 2] == 1).all()
    landmarks = next(t for t in manifest["tasks"] if t["name"] == "landmarks")
    assert landmarks["output_shape"] == [5, 2] and landmarks["scale"] == 1.0


def write_tree(root: Path, names: dict[str, list[str]]) -> None:
    """A tiny MTFL tree: 150x150 JPEGs and annotation files with the real files' traps."""
    from PIL import Image

    rng = np.random.default_rng(0)
    lines_by_file = {}
    for file, images in names.items():
        lines = []
        for i, rel in enumerate(images):
            (root / Path(rel).parent).mkdir(parents=True, exist_ok=True)
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            Image.new("RGB", (150, 150), colour).save(root / rel)
            xs = " ".join(f"{v:.6f}" for v in rng.uniform(20, 130, 10))
            codes = f"{1 + i % 2} {2 - i % 2} {1 + (i % 3 == 0)} {1 + i % 5}"
            path = rel.replace("/", "\\") if i % 2 else rel  # both separators occur
            lines.append(f"{' ' if i else ''}{path} {xs} {codes}")
        lines_by_file[file] = lines
        (root / file).write_bytes(("\r\n".join(lines) + "\r\n").encode())


def test_traps_and_the_files_own_split(tmp_path):
    root = tmp_path / "mtfl"
    write_tree(root, {"training.txt": [f"net/{i:04d}.jpg" for i in range(7)],
                      "testing.txt": [f"AFLW/{i:04d}-image.jpg" for i in range(3)]})
    manifest = prepare(root, tmp_path / "out")

    assert manifest["splits"]["train"]["samples"] == 7
    assert manifest["splits"]["test"]["samples"] == 3
    assert manifest["warnings"] == []
    ids, labels, _ = read_all(tmp_path / "out")
    assert ids[0] == "training.txt:1:net/0000.jpg" and ids[1] == "training.txt:2:net/0001.jpg"
    assert labels["gender"].tolist()[:7] == [0, 1, 0, 1, 0, 1, 0]
    assert labels["pose"].tolist()[:7] == [0, 1, 2, 3, 4, 0, 1]


def test_label_fractions_come_from_the_toml(tmp_path, monkeypatch):
    root = tmp_path / "mtfl"
    write_tree(root, {"testing.txt": [f"AFLW/{i:04d}.jpg" for i in range(40)]})
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    text = (manifests_dir() / "mtfl.toml").read_text()
    text = text.replace("gender = 1.0", "gender = 0.5").replace("smile = 1.0", "smile = 0.25")
    (manifests / "mtfl.toml").write_text(text)
    monkeypatch.setenv("DST_MANIFESTS", str(manifests))
    manifest = prepare(root, tmp_path / "out", seed=2)

    train = manifest["splits"]["train"]["samples"]
    assert train == 28 and manifest["protocol"]["seed"] == 2
    assert any("only testing.txt" in w for w in manifest["warnings"])
    labelled = {t["name"]: t["labelled"] for t in manifest["tasks"]}
    assert labelled["gender"] == {"train": 14, "test": 12}
    assert labelled["smile"] == {"train": 7, "test": 12}
    assert labelled["spectacles"] == {"train": 28, "test": 12}

    (manifests / "mtfl.toml").write_text(text.replace("gender = 0.5", "gender = 1.5"))
    with pytest.raises(DstError, match=r"label_fractions\.gender must be a number in \[0, 1\]"):
        prepare(root, tmp_path / "other")


BAD_LINES = {
    "field count": (lambda line: line.rsplit(" ", 1)[0], r"testing\.txt:2: 14 fields"),
    "gender value": (lambda line: " ".join(line.split()[:-4] + ["3", "1", "1", "1"]),
                     r"testing\.txt:2: gender is '3'"),
    "not a number": (lambda line: line.replace(line.split()[1], "abc", 1),
                     r"testing\.txt:2: a landmark coordinate is not a number"),
}


@pytest.mark.parametrize("case", list(BAD_LINES))
def test_bad_lines_are_named(case, tmp_path):
    root = tmp_path / "mtfl"
    write_tree(root, {"testing.txt": [f"AFLW/{i:04d}.jpg" for i in range(3)]})
    lines = (root / "testing.txt").read_text().splitlines()
    edit, pattern = BAD_LINES[case]
    lines[1] = edit(lines[1])
    (root / "testing.txt").write_text("\n".join(lines))
    with pytest.raises(DataError, match=pattern):
        prepare(root, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_and_damaged_images_are_named(tmp_path):
    root = tmp_path / "mtfl"
    write_tree(root, {"testing.txt": [f"AFLW/{i:04d}.jpg" for i in range(3)]})
    (root / "AFLW" / "0002.jpg").unlink()
    with pytest.raises(DataError, match=r"testing\.txt:3: image .*0002\.jpg is missing"):
        prepare(root, tmp_path / "out")
    (root / "AFLW" / "0002.jpg").write_bytes(b"GIF89a and then nothing")
    with pytest.raises(DataError, match=r"testing\.txt:3: image .*0002\.jpg does not decode"):
        prepare(root, tmp_path / "out")
    shutil.rmtree(root / "AFLW")
    (root / "testing.txt").unlink()
    with pytest.raises(DataError, match="neither training.txt nor testing.txt"):
        prepare(root, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli(tmp_path):
    root = tmp_path / "mtfl"
    write_tree(root, {"testing.txt": [f"AFLW/{i:04d}.jpg" for i in range(10)]})
    runner = CliRunner()
    result = runner.invoke(cli, ["prepare", "mtfl", "--raw", str(root), "--out",
                                 str(tmp_path / "out"), "--preset", "cpu-tiny"])
    assert result.exit_code == 0, result.output
    assert "6 tasks, 7 train and 3 test samples" in result.output
    missing = runner.invoke(cli, ["prepare", "mtfl", "--raw", str(tmp_path / "nowhere"),
                                  "--out", str(tmp_path / "o2")])
    assert missing.exit_code == 1 and "no such folder" in missing.output
