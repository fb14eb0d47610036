"""Omniglot preparation: the real small zips, the official layout's traps, and bad input."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import GLYPH_ALPHABETS, shared_data

from dstcli.apps import APPS
from dstcli.data.shards import ShardDataset, open_prepared
from dstcli.errors import DataError


def prepare(raw: list[Path], out: Path, **kw) -> dict:
    return APPS.get("omniglot").prepare(raw, out, "cpu-tiny", **kw)


def test_small1_has_the_published_counts(tmp_path):
    zip1 = shared_data("omniglot", "images_background_small1.zip")
    manifest = prepare([zip1], tmp_path / "out")

    assert len(manifest["tasks"]) == 5
    assert sum(t["num_classes"] for t in manifest["tasks"]) == 136
    train, test = manifest["splits"]["train"]["samples"], manifest["splits"]["test"]["samples"]
    assert train + test == 2720
    assert test == 544
    for task in manifest["tasks"]:
        total = task["labelled"]["train"] + task["labelled"]["test"]
        assert task["labelled"]["test"] == pytest.approx(0.2 * total)


def test_both_small_zips_take_greek_and_latin_once(tmp_path):
    zip1 = shared_data("omniglot", "images_background_small1.zip")
    zip2 = shared_data("omniglot", "images_background_small2.zip")
    manifest = prepare([zip1, zip2], tmp_path / "out")

    assert len(manifest["tasks"]) == 8
    splits = manifest["splits"]
    assert splits["train"]["samples"] + splits["test"]["samples"] == 4840
    assert sorted(w.split()[1] for w in manifest["warnings"]) == ["Greek", "Latin"]
    assert len(manifest["sources"]) == 2 and all(len(s["sha256"]) == 64
                                                 for s in manifest["sources"])


def test_a_folder_holding_both_zips_equals_the_two_zips(tmp_path):
    folder = tmp_path / "omniglot"
    folder.mkdir()
    for name in ("images_background_small1.zip", "images_background_small2.zip"):
        (folder / name).symlink_to(shared_data("omniglot", name))
    manifest = prepare([folder], tmp_path / "out")

    assert len(manifest["tasks"]) == 8
    splits = manifest["splits"]
    assert splits["train"]["samples"] + splits["test"]["samples"] == 4840
    assert sorted(w.split()[1] for w in manifest["warnings"]) == ["Greek", "Latin"]
    assert not (tmp_path / "out" / "skipped.csv").exists()


def test_each_sample_is_labelled_for_its_own_alphabet_only(omniglot_tiny):
    data = open_prepared(omniglot_tiny)
    dataset = ShardDataset(data, "train")
    batch = dataset.read(np.arange(len(dataset)))
    masks = np.stack([batch["Z"][t.name] for t in data.tasks], axis=1)  # (N, K)

    assert (masks.sum(axis=1) == 1).all()
    for task in data.tasks:
        labels = batch["labels"][task.name]
        labelled = batch["Z"][task.name] == 1
        assert (labels[~labelled] == -1).all()
        assert set(labels[labelled]) == set(range(task.num_classes))
        assert labelled.sum() == data.labelled_count(task.name)


def test_split_is_20_percent_of_every_character_and_seeded(glyph_zip, tmp_path):
    first = prepare([glyph_zip], tmp_path / "a")
    prepare([glyph_zip], tmp_path / "b")
    other = prepare([glyph_zip], tmp_path / "c", seed=7)

    for task in first["tasks"]:
        assert task["labelled"]["test"] == 4 * task["num_classes"]  # 4 of 20 drawings
    ids = {}
    for name in ("a", "b", "c"):
        dataset = ShardDataset(open_prepared(tmp_path / name), "test")
        ids[name] = sorted(dataset.read_all("sample_id").astype(str))
    assert ids["a"] == ids["b"]
    assert ids["a"] != ids["c"]
    assert other["protocol"]["seed"] == 7


def test_folder_layout_equals_zip_layout(glyph_zip, tmp_path):
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(glyph_zip) as archive:
        archive.extractall(unpacked)
    (unpacked / "README.txt").write_text("notes above the alphabets are not Omniglot's business")
    from_zip = prepare([glyph_zip], tmp_path / "z")
    from_folder = prepare([unpacked], tmp_path / "f")

    assert [t["name"] for t in from_zip["tasks"]] == sorted(GLYPH_ALPHABETS)
    assert from_zip["tasks"] == from_folder["tasks"]
    a = ShardDataset(open_prepared(tmp_path / "z"), "train").read_all("images")
    b = ShardDataset(open_prepared(tmp_path / "f"), "train").read_all("images")
    assert np.array_equal(a, b)


def _copy_zip(source: Path, target: Path, edit) -> Path:
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for info in src.infolist():
            data = edit(info.filename, src.read(info))
            if data is not None:
                dst.writestr(info.filename, data)
    return target


def test_truncated_png_is_named_and_leaves_no_manifest(glyph_zip, tmp_path):
    victim = "images_background/Beta/character02/0006_03.png"
    bad = _copy_zip(glyph_zip, tmp_path / "bad.zip",
                    lambda name, data: data[:40] if name == victim else data)
    with pytest.raises(DataError, match=r"bad\.zip:images_background/Beta/character02/0006_03"):
        prepare([bad], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.partial-*"))


def test_stray_file_is_named(glyph_zip, tmp_path):
    def add_stray(name, data):
        return data

    bad = _copy_zip(glyph_zip, tmp_path / "stray.zip", add_stray)
    with zipfile.ZipFile(bad, "a") as archive:
        archive.writestr("images_background/Alpha/character01/notes.txt", b"hello")
    with pytest.raises(DataError, match="character01/notes.txt"):
        prepare([bad], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_folder_without_alphabets(tmp_path):
    empty = tmp_path / "empty"
    (empty / "something").mkdir(parents=True)
    (empty / "something" / "image.png").write_bytes(b"")
    with pytest.raises(DataError, match="no Omniglot alphabets found"):
        prepare([empty], tmp_path / "out")
    with pytest.raises(DataError, match="no such file"):
        prepare([tmp_path / "missing.zip"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_not_a_zip(tmp_path):
    fake = tmp_path / "images_background.zip"
    fake.write_bytes(b"this is not a zip")
    with pytest.raises(DataError, match="cannot open as a zip"):
        prepare([fake], tmp_path / "out")


def test_existing_output_needs_force(glyph_zip, tmp_path):
    prepare([glyph_zip], tmp_path / "out")
    with pytest.raises(DataError, match="--force"):
        prepare([glyph_zip], tmp_path / "out")
    manifest = prepare([glyph_zip], tmp_path / "out", force=True)
    assert json.loads((tmp_path / "out" / "manifest.json").read_text()) == manifest


def test_drawings_are_ink_bright_and_resized(omniglot_tiny):
    data = open_prepared(omniglot_tiny)
    images = ShardDataset(data, "train").read_all("images")
    assert images.shape[1:] == (1, 32, 32)
    assert images.dtype == np.uint8
    # Glyphs are thin strokes: most of the picture is background, dark after inversion.
    assert np.median(images) < 30 and images.max() > 200


def test_png_bytes_decode_like_pil(glyph_zip):
    from PIL import Image

    from dstcli.data.omniglot import Drawing, decode

    with zipfile.ZipFile(glyph_zip) as archive:
        name = archive.namelist()[0]
        raw = archive.read(name)
    drawing = Drawing("character01", 1, name, lambda: raw)
    expected = 255 - np.asarray(Image.open(io.BytesIO(raw)).convert("L"))
    assert np.array_equal(decode(drawing, (105, 105)), expected)
