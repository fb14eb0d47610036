"""Bad raw input for every app, with and without --skip-bad; bad configs; bad shards.

Without --skip-bad each kind of bad item fails the prepare with the item named and nothing
left at --out; with it, the item is left out and listed in skipped.csv beside the shards.
"""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dstcli.apps import APPS
from dstcli.apps.base import TaskSpec
from dstcli.cli.main import app as cli
from dstcli.data.bad_items import REPORT
from dstcli.data.shards import DatasetWriter, ShardDataset, open_prepared
from dstcli.errors import DataError

runner = CliRunner()


def flat(text: str) -> str:
    """CLI output with the console's line wrapping undone."""
    return " ".join(text.split())


def skipped(out: Path) -> list[dict[str, str]]:
    with open(out / REPORT, newline="") as f:
        return list(csv.DictReader(f))


def check_both_ways(prepare, out: Path, item: str, reason: str) -> None:
    """The bad item fails the prepare, naming it; with skip_bad it is listed and left out."""
    with pytest.raises(DataError, match=reason) as caught:
        prepare(out, skip_bad=False)
    assert item in str(caught.value) and "--skip-bad" in str(caught.value)
    assert not out.exists() and not list(out.parent.glob(f".{out.name}.*"))

    manifest = prepare(out, skip_bad=True)
    rows = skipped(out)
    assert [r["item"] for r in rows if item in r["item"]], rows
    assert any(REPORT in w for w in manifest["warnings"])
    open_prepared(out)


# ---------------------------------------------------------------------------------------------
# Omniglot


@pytest.fixture(scope="module")
def small_zip(tmp_path_factory) -> Path:
    from dstcli.data.omniglot import write_synthetic_omniglot

    path = tmp_path_factory.mktemp("omni") / "images_background.zip"
    return write_synthetic_omniglot(path, {"Alpha": 2, "Beta": 2}, drawers=5, size=40, seed=0)


def _omniglot_case(case: str, small_zip: Path, raw: Path) -> str:
    """Spoil a copy of the zip (in raw/) one way; returns the bad item's name."""
    raw.mkdir()
    copy = raw / "images_background.zip"
    shutil.copy(small_zip, copy)
    name = "images_background/Alpha/character01/0001_09.png"
    if case == "undecodable png":
        with zipfile.ZipFile(copy, "a") as z:
            z.writestr(name, b"\x89PNG\r\n\x1a\n and then the disk died")
        return name
    if case == "stray file":
        name = "images_background/Alpha/character01/notes.txt"
        with zipfile.ZipFile(copy, "a") as z:
            z.writestr(name, b"my notes")
        return name
    # One drawing stored twice in the zip (zip allows a repeated name).
    name = "images_background/Alpha/character01/0001_01.png"
    with zipfile.ZipFile(copy) as z:
        data = z.read(name)
    with warnings.catch_warnings(), zipfile.ZipFile(copy, "a") as z:
        warnings.simplefilter("ignore", UserWarning)  # zipfile's "Duplicate name"
        z.writestr(name, data)
    return name


@pytest.mark.parametrize("case", ["undecodable png", "stray file", "duplicate drawing"])
def test_omniglot_bad_items(case, small_zip, tmp_path):
    raw = tmp_path / "raw"
    item = _omniglot_case(case, small_zip, raw)
    reason = {"undecodable png": "not a readable PNG", "stray file": "not an Omniglot drawing",
              "duplicate drawing": "duplicate of"}[case]

    def prepare(out, skip_bad):
        return APPS.get("omniglot").prepare([raw], out, "cpu-tiny", skip_bad=skip_bad)

    check_both_ways(prepare, tmp_path / "out", item, reason)


def test_a_finished_prepare_is_not_redone_unless_force(small_zip, tmp_path):
    out = tmp_path / "out"
    args = ["prepare", "omniglot", "--raw", str(small_zip), "--out", str(out), "--preset",
            "cpu-tiny"]
    assert runner.invoke(cli, args).exit_code == 0
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    again = runner.invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert "already prepared" in flat(again.output) and str(small_zip) in flat(again.output)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before

    # Another preset or seed is not "the same prepare": refused, naming both, nothing touched.
    for other in (["--preset", "cpu"], ["--seed", "7"]):
        refused = runner.invoke(cli, args[:-2] + (other if other[0] == "--preset" else
                                                  args[-2:] + other))
        assert refused.exit_code == 1, refused.output
        assert "preset cpu-tiny with seed 0" in flat(refused.output)
        assert "--force" in flat(refused.output)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before

    forced = runner.invoke(cli, args + ["--force"])
    assert forced.exit_code == 0 and "wrote" in forced.output
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} != before


def test_cli_skip_bad_lists_the_report(small_zip, tmp_path):
    raw = tmp_path / "raw"
    _omniglot_case("undecodable png", small_zip, raw)
    args = ["prepare", "omniglot", "--raw", str(raw), "--out", str(tmp_path / "out"),
            "--preset", "cpu-tiny"]
    failed = runner.invoke(cli, args)
    assert failed.exit_code == 1 and "Traceback" not in failed.output
    assert "0001_09.png" in flat(failed.output) and "--skip-bad" in flat(failed.output)

    kept = runner.invoke(cli, args + ["--skip-bad"])
    assert kept.exit_code == 0, kept.output
    assert REPORT in flat(kept.output)


# ---------------------------------------------------------------------------------------------
# AFLW (synthetic, then corrupted)


@pytest.fixture(scope="module")
def aflw_raw(tmp_path_factory):
    from dstcli.data.synthetic_aflw import write_synthetic_aflw

    return write_synthetic_aflw(tmp_path_factory.mktemp("aflw") / "raw", 6, seed=1)


def _sql(raw: Path, sql: str) -> None:
    con = sqlite3.connect(raw / "data" / "aflw.sqlite")
    con.execute(sql)
    con.commit()
    con.close()


AFLW_CASES = {
    "missing image": (lambda raw, face: (raw / "data" / "flickr" / face.filepath).unlink(),
                      "is missing"),
    "undecodable image": (lambda raw, face: (raw / "data" / "flickr" / face.filepath)
                          .write_bytes(b"\xff\xd8 half a jpeg"), "does not decode"),
    "face naming no image row": (lambda raw, face: _sql(
        raw, f"UPDATE Faces SET file_id = 987654 WHERE face_id = {face.face_id}"),
        "no row in table FaceImages"),
}


@pytest.mark.parametrize("case", list(AFLW_CASES))
def test_aflw_bad_items(case, aflw_raw, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(aflw_raw.root, raw)
    # A face alone on its image: spoiling a shared image would spoil its neighbours too.
    face = next(f for f in aflw_raw.faces
                if sum(g.filepath == f.filepath for g in aflw_raw.faces) == 1)
    spoil, reason = AFLW_CASES[case]
    spoil(raw, face)

    def prepare(out, skip_bad):
        return APPS.get("aflw").prepare(raw, out, "cpu-tiny", skip_bad=skip_bad)

    check_both_ways(prepare, tmp_path / "out", f"face {face.face_id}", reason)
    data = open_prepared(tmp_path / "out")
    ids = [i for s in ("train", "test") for i in ShardDataset(data, s).read_all("sample_id")]
    faces = {int(i.decode().split(":")[0]) if isinstance(i, bytes) else int(i.split(":")[0])
             for i in ids}
    assert face.face_id not in faces and faces


# ---------------------------------------------------------------------------------------------
# MTFL (a small tree in its layout, then corrupted)


def _mtfl_tree(root: Path, n: int = 6) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    lines = []
    for i in range(n):
        rel = f"AFLW/{i:04d}.jpg"
        (root / "AFLW").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (60, 60), tuple(int(v) for v in rng.integers(0, 256, 3))).save(
            root / rel)
        xs = " ".join(f"{v:.3f}" for v in rng.uniform(10, 50, 10))
        lines.append(f"{rel} {xs} {1 + i % 2} {1 + i % 2} 2 {1 + i % 5}")
    (root / "testing.txt").write_text("\n".join(lines) + "\n")


MTFL_CASES = {
    "bad line": (lambda root: (root / "testing.txt").write_text(
        (root / "testing.txt").read_text().replace(" 2 3\n", " 7 3\n", 1)),
        "testing.txt:3", "glasses is '7'"),
    "missing image": (lambda root: (root / "AFLW" / "0002.jpg").unlink(),
                      "testing.txt:3", "is missing"),
    "undecodable image": (lambda root: (root / "AFLW" / "0002.jpg").write_bytes(b"GIF89a"),
                          "testing.txt:3", "does not decode"),
    "duplicate face": (lambda root: (root / "testing.txt").write_text(
        (root / "testing.txt").read_text()
        + (root / "testing.txt").read_text().splitlines()[1] + "\n"),
        "testing.txt:7", "already listed at"),
}


@pytest.mark.parametrize("case", list(MTFL_CASES))
def test_mtfl_bad_items(case, tmp_path):
    root = tmp_path / "mtfl"
    _mtfl_tree(root)
    spoil, item, reason = MTFL_CASES[case]
    spoil(root)

    def prepare(out, skip_bad):
        return APPS.get("mtfl").prepare(root, out, "cpu-tiny", skip_bad=skip_bad)

    check_both_ways(prepare, tmp_path / "out", item, reason)


# ---------------------------------------------------------------------------------------------
# Fingerprint pair manifests


@pytest.fixture(scope="module")
def pairs_raw(tmp_path_factory) -> Path:
    from dstcli.data.synthetic_fingerprint import write_synthetic_fingerprints

    root = tmp_path_factory.mktemp("fp") / "raw"
    return write_synthetic_fingerprints(root, 12, seed=0)


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames), list(reader)


def _write_rows(path: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


FP_CASES = {
    "missing file": (lambda row, root: row.update(latent="nowhere/latent.png"),
                     "does not exist"),
    "bad match value": (lambda row, root: row.update(match="maybe"), "match 'maybe'"),
    "undecodable image": (lambda row, root: (root / row["fingerprint"]).write_bytes(b"junk"),
                          "not a readable image"),
}


@pytest.mark.parametrize("case", list(FP_CASES))
def test_fingerprint_bad_rows(case, pairs_raw, tmp_path):
    root = tmp_path / "raw"
    shutil.copytree(pairs_raw.parent, root)
    header, rows = _rows(root / "pairs.csv")
    spoil, reason = FP_CASES[case]
    spoil(rows[2], root)
    _write_rows(root / "pairs.csv", header, rows)

    def prepare(out, skip_bad):
        return APPS.get("fingerprint").prepare([root / "pairs.csv"], out, "cpu-tiny",
                                               skip_bad=skip_bad)

    check_both_ways(prepare, tmp_path / "out", "row 3", reason)


def test_fingerprint_duplicate_pair(pairs_raw, tmp_path):
    root = tmp_path / "raw"
    shutil.copytree(pairs_raw.parent, root)
    header, rows = _rows(root / "pairs.csv")
    _write_rows(root / "pairs.csv", header, rows + [dict(rows[2])])

    def prepare(out, skip_bad):
        return APPS.get("fingerprint").prepare([root / "pairs.csv"], out, "cpu-tiny",
                                               skip_bad=skip_bad)

    check_both_ways(prepare, tmp_path / "out", f"row {len(rows) + 1}", "repeats row 3")


# ---------------------------------------------------------------------------------------------
# Truncated shards: named by verify and by train


def test_verify_and_train_name_a_truncated_shard(omniglot_tiny, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(omniglot_tiny, data)
    whole = runner.invoke(cli, ["prepare", "verify", str(data)])
    assert whole.exit_code == 0 and "whole" in whole.output

    shard = data / "train-00000.h5"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    for args in (["prepare", "verify", str(data)], ["prepare", "--verify", str(data)],
                 ["train", "--data", str(data), "--out", str(tmp_path / "run")]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 1, (args, result.output)
        assert str(shard) in flat(result.output) and "truncated" in flat(result.output)
        assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_verify_finds_rows_the_manifest_does_not_promise(omniglot_tiny, tmp_path):
    import h5py

    data = tmp_path / "data"
    shutil.copytree(omniglot_tiny, data)
    shard = data / "test-00000.h5"
    with h5py.File(shard, "a") as f:
        f["Z/Alpha"].resize(f["Z/Alpha"].shape[0] - 1, axis=0)
        f.attrs["schema_version"] = 99
    manifest = json.loads((data / "manifest.json").read_text())
    for s in manifest["splits"]["test"]["shards"]:
        s["bytes"] = (data / s["file"]).stat().st_size  # sizes agree: only rows betray it
    (data / "manifest.json").write_text(json.dumps(manifest))

    result = runner.invoke(cli, ["prepare", "verify", str(data)])
    text = flat(result.output)
    assert result.exit_code == 1
    assert f"{shard}: dataset Z/Alpha has" in text and "schema version 99" in text


# ---------------------------------------------------------------------------------------------
# Configuration


def _one_task_unlabelled(out: Path) -> Path:
    """A prepared omniglot-shaped folder (cpu-tiny) whose task b has no training label."""
    tasks = [TaskSpec("a", "classification", 17, 13, num_classes=2, class_names=("x", "y")),
             TaskSpec("b", "classification", 17, 13, num_classes=2, class_names=("x", "y"))]
    rng = np.random.default_rng(0)
    with DatasetWriter(out, "omniglot", tasks, (1, 32, 32), {"seed": 0}, [], "cpu-tiny"
                       ) as writer:
        for split, b_labelled in (("train", 0), ("test", 1)):
            n = 8
            images = rng.integers(0, 256, size=(n, 1, 32, 32), dtype=np.uint8)
            labels = {"a": np.arange(n) % 2, "b": np.arange(n) % 2}
            masks = {"a": np.ones(n, np.uint8), "b": np.full(n, b_labelled, np.uint8)}
            writer.split(split).append(images, labels, masks, [f"s{i}" for i in range(n)])
        writer.commit()
    return out


def test_every_bad_dst_flag_is_named_at_once(tmp_path):
    data = _one_task_unlabelled(tmp_path / "data")
    result = runner.invoke(cli, ["train", "--data", str(data), "--out", str(tmp_path / "r"),
                                 "--scheduler", "dst", "--preset", "cpu",
                                 "--lambdas", "0.5,0.5,0.5,0,0", "--beta", "1.5"])
    text = flat(result.output)
    assert result.exit_code == 1, text
    assert "--lambdas" in text and "sum to 1" in text
    assert "--beta" in text and "[0, 1]" in text
    # The data's problems in the same report: one round fixes everything.
    assert "task b has no labelled training sample" in text
    assert "--preset cpu trains at 64x64" in text
    assert not (tmp_path / "r").exists()

    outside = runner.invoke(cli, ["train", "--data", str(data), "--out", str(tmp_path / "r"),
                                  "--scheduler", "dst", "--lambdas", "1.5,-0.5,0,0,0"])
    assert outside.exit_code == 1 and "[0, 1]" in flat(outside.output)


@pytest.mark.parametrize("flag", ["--app", "--scheduler"])
def test_unknown_app_or_scheduler_lists_the_choices(flag, omniglot_tiny, tmp_path):
    result = runner.invoke(cli, ["train", "--data", str(omniglot_tiny), "--out",
                                 str(tmp_path / "r"), flag, "nope"])
    text = flat(result.output)
    assert result.exit_code == 2 and "nope" in text
    assert ("omniglot" in text) if flag == "--app" else ("dst" in text and "mtl" in text)


def test_a_resumed_run_refuses_a_changed_config(omniglot_tiny, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    from helpers import tiny_config

    tiny_config(omniglot_tiny, run).save(run / "config.json")
    result = runner.invoke(cli, ["train", "--resume", str(run), "--batch-size", "4"])
    assert result.exit_code == 1 and "--batch-size 4 differs" in flat(result.output)
