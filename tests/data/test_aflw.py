"""AFLW preparation: a synthetic AFLW round-trips, the protocol holds, bad databases are named."""

from __future__ import annotations

import hashlib
import math
import shutil
import sqlite3
import tomllib
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dstcli.apps import APPS
from dstcli.cli.main import app as cli
from dstcli.data.protocols import manifests_dir
from dstcli.data.shards import ShardDataset, open_prepared
from dstcli.data.synthetic_aflw import write_synthetic_aflw
from dstcli.errors import DataError

SIZE = 32  # cpu-tiny's input


def protocol() -> dict:
    return tomllib.loads((manifests_dir() / "aflw.toml").read_text())["protocol"]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """48 synthetic faces in the AFLW layout, and what the generator drew."""
    return write_synthetic_aflw(tmp_path_factory.mktemp("aflw") / "raw", 48, seed=3)


@pytest.fixture(scope="module")
def prepared(synthetic, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prepared") / "aflw"
    APPS.get("aflw").prepare(synthetic.root, out, "cpu-tiny")
    return out


def read_split(out: Path, split: str) -> tuple[list[int], dict]:
    dataset = ShardDataset(open_prepared(out), split)
    ids = [int(s.split(":")[0]) for s in dataset.read_all("sample_id").astype(str)]
    return ids, dataset.read(np.arange(len(dataset)))


def test_landmarks_land_where_they_were_drawn(synthetic, prepared):
    margin = protocol()["crop_margin"]
    drawn = {f.face_id: f for f in synthetic.faces}
    checked = 0
    for split in ("train", "test"):
        ids, batch = read_split(prepared, split)
        labels, z = batch["labels"]["landmarks"], batch["Z"]["landmarks"]
        for row, face_id in enumerate(ids):
            if not z[row]:
                continue
            face = drawn[face_id]
            x, y, w, h = face.rect
            side = (1 + 2 * margin) * max(w, h)
            corner = np.array([x + w / 2 - side / 2, y + h / 2 - side / 2])
            expected = (face.landmarks + 0.5 - corner) / side  # pixel centres, input units
            inside = ((expected >= 0) & (expected <= 1)).all(axis=1)
            seen = labels[row, :, 2] == 1
            assert np.array_equal(seen, face.visible & inside), face_id
            error = np.abs(labels[row, seen, :2] - expected[seen]) * SIZE
            assert error.max() < 1.0, face_id  # within a pixel of the input
            checked += 1
    assert checked >= 30


def _resampled(img, box: list[float]) -> np.ndarray:
    """An independent resampling of a box: shrink by area 4x, then sample it bilinearly."""
    from PIL import Image

    small = img.resize((img.width // 4, img.height // 4), Image.Resampling.BOX)
    ref = small.transform((SIZE, SIZE), Image.Transform.EXTENT, [v / 4 for v in box],
                          Image.Resampling.BILINEAR)
    return np.asarray(ref, dtype=float).transpose(2, 0, 1)


def test_clean_crop_is_the_face_box_with_its_margin(synthetic, prepared):
    from PIL import Image

    margin = protocol()["crop_margin"]
    drawn = {f.face_id: f for f in synthetic.faces}
    ids, batch = read_split(prepared, "test")
    for row, face_id in enumerate(ids):
        face = drawn[face_id]
        x, y, w, h = face.rect
        side = (1 + 2 * margin) * max(w, h)
        x0, y0 = x + w / 2 - side / 2, y + h / 2 - side / 2
        img = Image.open(synthetic.root / "data" / "flickr" / face.filepath).convert("RGB")
        clean = batch["labels"]["denoising"][row]
        shift = 3 * side / SIZE  # three input pixels
        differences = [
            np.abs(_resampled(img, [x0 + dx, y0 + dy, x0 + dx + side, y0 + dy + side])
                   - clean).mean()
            for dx, dy in [(0, 0), (shift, 0), (0, -shift)]
        ]
        assert differences[0] < 12, face_id
        assert differences[0] < min(differences[1:]), face_id


def test_test_split_keeps_every_label_and_the_values_match(synthetic, prepared):
    drawn = {f.face_id: f for f in synthetic.faces}
    ids, batch = read_split(prepared, "test")
    labels, z = batch["labels"], batch["Z"]
    for row, face_id in enumerate(ids):
        face = drawn[face_id]
        assert z["gender"][row] == (face.sex in ("m", "f"))
        if face.sex:
            assert labels["gender"][row] == {"m": 0, "f": 1}[face.sex]
        else:
            assert labels["gender"][row] == -1
        assert z["spectacles"][row] == 1 and labels["spectacles"][row] == face.glasses
        defined = not np.isclose(face.pose, -2 * math.pi).any()
        assert z["pose"][row] == defined
        if defined:
            assert np.allclose(labels["pose"][row], face.pose, atol=1e-6)
        assert z["denoising"][row] == 1


def test_label_fractions_of_table_1_hold_in_training(synthetic, prepared):
    fractions = protocol()["label_fractions"]
    manifest = open_prepared(prepared).manifest
    drawn = {f.face_id: f for f in synthetic.faces}
    ids, batch = read_split(prepared, "train")
    faces = [drawn[i] for i in ids]
    available = {
        "gender": sum(f.sex in ("m", "f") for f in faces),
        "spectacles": len(faces),
        "landmarks": sum(bool(f.visible.any()) for f in faces),
        "pose": sum(not np.isclose(f.pose, -2 * math.pi).any() for f in faces),
        "denoising": len(faces),
    }
    total = len(synthetic.faces)
    assert len(faces) == round(total * 17000 / 24384)
    for task in manifest["tasks"]:
        name = task["name"]
        labelled = int(batch["Z"][name].sum())
        assert labelled == task["labelled"]["train"]
        assert abs(labelled - fractions[name] * available[name]) <= 1, name
        unlabelled = batch["Z"][name] == 0
        if task["kind"] == "classification":
            assert (batch["labels"][name][unlabelled] == -1).all()
        else:
            assert not batch["labels"][name][unlabelled].any()  # nothing leaks


def test_input_is_the_clean_crop_with_speckle_on_15_percent(prepared):
    _, batch = read_split(prepared, "train")
    images, clean = batch["images"], batch["labels"]["denoising"]
    assert images.shape[1:] == clean.shape[1:] == (3, SIZE, SIZE)
    changed = (images != clean).any(axis=1).reshape(len(images), -1).sum(axis=1)
    limit = round(0.15 * SIZE * SIZE)
    assert (changed <= limit).all()
    assert changed.mean() > 0.6 * limit  # speckle leaves dark or lucky pixels as they were


def test_same_seed_same_files(tmp_path):
    a = write_synthetic_aflw(tmp_path / "a", 10, seed=5)
    b = write_synthetic_aflw(tmp_path / "b", 10, seed=5)
    c = write_synthetic_aflw(tmp_path / "c", 10, seed=6)

    def digest(root: Path, rel: str) -> str:
        return hashlib.sha256((root / rel).read_bytes()).hexdigest()

    assert digest(a.root, "data/aflw.sqlite") == digest(b.root, "data/aflw.sqlite")
    assert digest(a.root, "data/aflw.sqlite") != digest(c.root, "data/aflw.sqlite")
    for face in a.faces[:4]:
        rel = f"data/flickr/{face.filepath}"
        assert digest(a.root, rel) == digest(b.root, rel)


def test_synthetic_has_the_real_layout(synthetic):
    con = sqlite3.connect(synthetic.sqlite)
    tables = {n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"Faces", "FaceImages", "FaceMetaData", "FacePose", "FaceRect", "FaceEllipse",
            "FeatureCoords", "FeatureCoordTypes", "CamPose", "Databases", "AnnotationType",
            "NearDuplicates", "sqlite_sequence", "sqlite_stat1"} <= tables
    codes = [c for (c,) in con.execute("SELECT code FROM FeatureCoordTypes ORDER BY feature_id")]
    assert codes[:3] == ["LBLC", "LBC", "LBRC"] and codes[20] == "CC" and len(codes) == 21
    paths = [p for (p,) in con.execute("SELECT filepath FROM FaceImages")]
    assert all(p.split("/")[0] in ("0", "2", "3") for p in paths)
    # Two faces share an image somewhere, and landmarks hidden by the pose are left out.
    assert len(paths) < len(synthetic.faces)
    assert any(not f.visible.all() for f in synthetic.faces)
    con.close()


# ---------------------------------------------------------------------------------------------
# A database with a problem: the error names it, and no output folder is left.


@pytest.fixture(scope="module")
def small_raw(tmp_path_factory):
    return write_synthetic_aflw(tmp_path_factory.mktemp("small") / "raw", 6, seed=1)


def _break(raw: Path, sql: str) -> None:
    con = sqlite3.connect(raw / "data" / "aflw.sqlite")
    con.execute(sql)
    con.commit()
    con.close()


def _image(raw: Path, face) -> Path:
    return raw / "data" / "flickr" / face.filepath


CASES = {
    "missing table": (lambda raw, face: _break(raw, "DROP TABLE FacePose"),
                      r"table FacePose is missing"),
    "missing column": (lambda raw, face: _break(raw, "ALTER TABLE FaceRect DROP COLUMN w"),
                       r"column FaceRect\.w is missing"),
    "missing image": (lambda raw, face: _image(raw, face).unlink(),
                      r"face {face_id}: image .*{file} is missing"),
    "undecodable image": (lambda raw, face: _image(raw, face).write_bytes(b"\xff\xd8 not a jpeg"),
                          r"face \d+: image .*{file} does not decode"),
    "missing database": (lambda raw, face: (raw / "data" / "aflw.sqlite").unlink(),
                         r"aflw\.sqlite: no such file"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_database_problems_are_named(case, small_raw, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(small_raw.root, raw)
    face = small_raw.faces[2]
    spoil, pattern = CASES[case]
    spoil(raw, face)
    pattern = pattern.format(face_id=face.face_id, filepath=face.filepath,
                             file=face.filepath.split("/")[-1])
    with pytest.raises(DataError, match=pattern):
        APPS.get("aflw").prepare(raw, tmp_path / "out", "cpu-tiny")
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.*"))


# ---------------------------------------------------------------------------------------------
# The command line

runner = CliRunner()


def test_cli_prepares_a_synthetic_and_a_raw_aflw(small_raw, tmp_path):
    out = tmp_path / "synth"
    args = ["prepare", "aflw", "--synthetic", "8", "--out", str(out), "--preset", "cpu-tiny"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "5 tasks" in result.output and (tmp_path / "synth.raw" / "data" / "aflw.sqlite").exists()
    manifest = open_prepared(out).manifest
    assert manifest["protocol"]["synthetic"]["faces"] == 8
    assert manifest["splits"]["train"]["samples"] + manifest["splits"]["test"]["samples"] == 8

    again = runner.invoke(cli, args)
    assert again.exit_code == 1 and "--force" in again.output
    assert runner.invoke(cli, args + ["--force"]).exit_code == 0

    real = runner.invoke(cli, ["prepare", "aflw", "--raw", str(small_raw.root), "--out",
                               str(tmp_path / "real"), "--preset", "cpu-tiny", "--seed", "4"])
    assert real.exit_code == 0, real.output
    assert open_prepared(tmp_path / "real").manifest["protocol"]["seed"] == 4


def test_cli_wants_exactly_one_source(small_raw, tmp_path):
    both = runner.invoke(cli, ["prepare", "aflw", "--raw", str(small_raw.root), "--synthetic",
                               "5", "--out", str(tmp_path / "o")])
    neither = runner.invoke(cli, ["prepare", "aflw", "--out", str(tmp_path / "o")])
    for result in (both, neither):
        assert result.exit_code == 2
        assert "exactly one of --raw" in result.output
    assert not (tmp_path / "o").exists()


def test_synthetic_refuses_a_raw_folder_it_did_not_write(tmp_path):
    (tmp_path / "out.raw").mkdir()
    (tmp_path / "out.raw" / "precious.txt").write_text("not ours")
    with pytest.raises(DataError, match="not a synthetic AFLW"):
        APPS.get("aflw").prepare_synthetic(4, tmp_path / "out", "cpu-tiny")
    assert (tmp_path / "out.raw" / "precious.txt").exists()


def test_flags_of_several_faces_on_one_image_without_sex_are_unchecked(small_raw, tmp_path):
    """AFLW's importer wrote sex '' and 0 for the flags on images of several faces: that 0 is
    a default, not a "no spectacles" label. A lone face with sex '' keeps its flag."""
    from dstcli.data.aflw import scan

    raw = tmp_path / "raw"
    shutil.copytree(small_raw.root, raw)
    con = sqlite3.connect(raw / "data" / "aflw.sqlite")
    lone = [f for f, in con.execute("SELECT face_id FROM Faces GROUP BY file_id "
                                     "HAVING COUNT(*) = 1 ORDER BY face_id")]
    first, second, alone = lone[:3]
    (shared,), = con.execute("SELECT file_id FROM Faces WHERE face_id = ?", (first,))
    con.execute("UPDATE Faces SET file_id = ? WHERE face_id = ?", (shared, second))
    con.execute("UPDATE FaceMetaData SET sex = '', glasses = 0 WHERE face_id IN (?, ?, ?)",
                (first, second, alone))
    con.commit()
    con.close()

    records, _ = scan(raw, margin=0.1)
    has = {int(r.sample_id.split(":")[0]): r.has for r in records}
    assert "spectacles" not in has[first] and "spectacles" not in has[second]
    assert "spectacles" in has[alone]
    assert not {"gender"} & (has[first] | has[second] | has[alone])


def test_near_duplicates_are_never_tested_on(small_raw, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(small_raw.root, raw)
    con = sqlite3.connect(raw / "data" / "aflw.sqlite")
    con.execute("DELETE FROM NearDuplicates")
    flagged = [f.face_id for f in small_raw.faces[:4]]
    con.executemany("INSERT INTO NearDuplicates VALUES (?)", [(f,) for f in flagged])
    con.commit()
    con.close()
    out = tmp_path / "out"
    APPS.get("aflw").prepare(raw, out, "cpu-tiny")

    test_ids, _ = read_split(out, "test")
    train_ids, _ = read_split(out, "train")
    assert not set(flagged) & set(test_ids) and set(flagged) <= set(train_ids)
    assert len(train_ids) == max(4, round(6 * protocol()["train_faces"]
                                          / protocol()["of_faces"]))
