"""Fingerprint pairs: the synthetic set, the SD27 and FVC adapters, the pair manifest, prepare."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from helpers import shared_data
from PIL import Image
from typer.testing import CliRunner

from dstcli.apps import APPS
from dstcli.apps.fingerprint import split_pairs
from dstcli.cli.main import app as cli
from dstcli.data.pair_manifest import PairRow, read_pair_manifest, write_pair_manifest
from dstcli.data.protocols import load_protocol
from dstcli.data.sd27 import read_eft_image, write_eft_image, write_sd27_manifest
from dstcli.data.shards import ShardDataset, open_prepared
from dstcli.data.staging import synthetic_raw_dir
from dstcli.data.synthetic_fingerprint import CLASSES, write_synthetic_fingerprints
from dstcli.errors import DataError

ALL_LABELS = {t: 1.0 for t in ("fp_orientation", "fp_segmentation", "lfp_orientation",
                               "lfp_segmentation", "matching")}


def rows_of(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def grey(path: Path, size=(40, 48), value=None, seed=0) -> Path:
    """A small grey image (size is W, H) at path."""
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 256, size=(size[1], size[0]), dtype=np.uint8)
    if value is not None:
        array[:] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    """60 pairs with every label kept, so the tests see every class and mask."""
    root = tmp_path_factory.mktemp("synthetic") / "set"
    return write_synthetic_fingerprints(root, 60, seed=3, label_fractions=ALL_LABELS)


# ---------------------------------------------------------------------------------------------
# The synthetic set


def test_classes_are_balanced_on_both_sides(synthetic):
    rows = rows_of(synthetic)
    for column in ("fingerprint_orientation", "latent_orientation"):
        counts = Counter(r[column] for r in rows)
        assert set(counts) == set(CLASSES)
        assert max(counts.values()) - min(counts.values()) <= 2
    assert Counter(r["match"] for r in rows) == {"1": 30, "0": 30}


def test_only_the_classes_asked_for_are_drawn(tmp_path):
    asked = ("arch", "whorl")
    rows = rows_of(write_synthetic_fingerprints(tmp_path / "s", 16, seed=1, classes=asked,
                                                label_fractions=ALL_LABELS))
    counts = Counter(r["fingerprint_orientation"] for r in rows)
    assert counts == {"arch": 8, "whorl": 8}


def orientation_signature(image: np.ndarray, block: int = 8) -> np.ndarray:
    """A fixed matching feature: the doubled-angle ridge orientation per block, weighted by
    ridge strength, after a band-pass around the ridge frequency."""
    a = image.astype(np.float64)
    spectrum = np.fft.fft2(a - a.mean())
    v = np.fft.fftfreq(a.shape[0])[:, None]
    u = np.fft.fftfreq(a.shape[1])[None, :]
    radius = np.hypot(u, v)
    ridges = np.real(np.fft.ifft2(spectrum * ((radius > 1 / 10) & (radius < 1 / 5))))
    gy, gx = np.gradient(ridges)
    doubled = gx**2 - gy**2 + 2j * gx * gy
    h, w = (s // block * block for s in doubled.shape)
    return doubled[:h, :w].reshape(h // block, block, w // block, block).mean(axis=(1, 3))


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    fa, fb = orientation_signature(a), orientation_signature(b)
    return float(np.real(np.vdot(fb, fa)) / np.sqrt(np.vdot(fa, fa).real * np.vdot(fb, fb).real))


def test_genuine_pairs_share_a_master_and_beat_impostors(synthetic):
    root = synthetic.parent
    scores: dict[str, list[float]] = {"1": [], "0": []}
    for r in rows_of(synthetic):
        same = (r["subject"], r["finger"]) == (r["fingerprint_subject"], r["fingerprint_finger"])
        assert same == (r["match"] == "1")
        if r["match"] == "1":
            assert r["fingerprint_orientation"] == r["latent_orientation"]
        fp = np.asarray(Image.open(root / r["fingerprint"]))
        latent = np.asarray(Image.open(root / r["latent"]))
        scores[r["match"]].append(similarity(fp, latent))
    genuine, impostor = np.array(scores["1"]), np.array(scores["0"])
    auc = (genuine[:, None] > impostor[None, :]).mean()
    assert genuine.mean() > impostor.mean() + 0.1
    assert auc > 0.75


def test_masks_cover_the_drawn_ridges(synthetic):
    root = synthetic.parent
    ratios = []
    for r in rows_of(synthetic):
        fp = np.asarray(Image.open(root / r["fingerprint"])).astype(np.float64)
        mask = np.asarray(Image.open(root / r["fingerprint_mask"])) > 0
        assert fp.shape == mask.shape and 0.2 < mask.mean() < 0.95
        # Ink is far darker than the paper outside the mask; all of it lies inside.
        paper = np.median(fp[~mask])
        ink = fp < paper - 60
        assert ink[~mask].sum() <= 0.01 * ink.sum()
        # And the mask is ridged throughout: ink within a few pixels of nearly every point.
        near = np.lib.stride_tricks.sliding_window_view(np.pad(ink, 3), (7, 7)).any(axis=(2, 3))
        assert near[mask].mean() > 0.9

        # A latent's ridges are faint on a textured surface: the ridge band carries more
        # energy inside its mask than outside.
        latent = np.asarray(Image.open(root / r["latent"])).astype(np.float64)
        latent_mask = np.asarray(Image.open(root / r["latent_mask"])) > 0
        assert latent_mask.any() and not latent_mask.all()
        band = np.abs(np.fft.ifft2(np.fft.fft2(latent - latent.mean()) * _ridge_band(latent)))
        ratios.append(band[latent_mask].mean() / band[~latent_mask].mean())
    assert np.median(ratios) > 1.6 and min(ratios) > 1.05


def _ridge_band(image: np.ndarray) -> np.ndarray:
    v = np.fft.fftfreq(image.shape[0])[:, None]
    u = np.fft.fftfreq(image.shape[1])[None, :]
    radius = np.hypot(u, v)
    return (radius > 1 / 10) & (radius < 1 / 5)


def test_subjects_never_cross_the_split(synthetic):
    sides: dict[str, set[str]] = {}
    for r in rows_of(synthetic):
        for subject in (r["subject"], r["fingerprint_subject"]):
            sides.setdefault(subject, set()).add(r["split"])
    assert all(len(s) == 1 for s in sides.values())
    assert {s for v in sides.values() for s in v} == {"train", "test"}


def test_label_availability_follows_table2(tmp_path):
    rows = rows_of(write_synthetic_fingerprints(tmp_path / "s", 120, seed=2))
    train = [r for r in rows if r["split"] == "train"]
    fractions = load_protocol("fingerprint")["synthetic"]["label_fractions"]
    for column, task in (("fingerprint_orientation", "fp_orientation"),
                         ("fingerprint_mask", "fp_segmentation"),
                         ("latent_orientation", "lfp_orientation"),
                         ("latent_mask", "lfp_segmentation"), ("match", "matching")):
        share = sum(bool(r[column]) for r in train) / len(train)
        assert share == pytest.approx(fractions[task], abs=0.05), column
        assert all(r[column] for r in rows if r["split"] == "test")


def test_same_seed_same_files(tmp_path):
    def tree(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes()
                for p in sorted(root.rglob("*")) if p.is_file()}

    a = write_synthetic_fingerprints(tmp_path / "a", 6, seed=5).parent
    b = write_synthetic_fingerprints(tmp_path / "b", 6, seed=5).parent
    c = write_synthetic_fingerprints(tmp_path / "c", 6, seed=6).parent
    assert tree(a) == tree(b)
    assert tree(a) != tree(c)


# ---------------------------------------------------------------------------------------------
# Adapters: NIST SD27 and FVC


def test_sd27_samples_become_genuine_and_impostor_pairs(tmp_path):
    raw = shared_data("sd27_samples")
    layout, n, _ = write_sd27_manifest(raw, tmp_path / "sd27.csv", seed=0)
    rows = read_pair_manifest(tmp_path / "sd27.csv")

    assert (layout, n, len(rows)) == ("samples", 6, 6)
    genuine = [r for r in rows if r.match == 1]
    impostor = [r for r in rows if r.match == 0]
    assert len(genuine) == len(impostor) == 3
    for r in genuine:
        assert r.latent.name == f"{r.subject}_latent.bmp"
        assert r.fingerprint.name == f"{r.subject}_rolled.bmp"
    assert sorted(r.fingerprint.name for r in impostor) == sorted(
        f"{q}_rolled.bmp" for q in ("bad", "good", "ugly"))
    for r in impostor:
        assert r.fingerprint.name == f"{r.fingerprint_subject}_rolled.bmp" != (
            f"{r.subject}_rolled.bmp")
    assert all(r.source == "sd27" and r.latent_mask is None for r in rows)


def test_sd27_legacy_eft_layout(tmp_path):
    raw = tmp_path / "sd27cd"
    images = {}
    for quality, case, finger in (("GOOD", "G001", 2), ("BAD", "B101", 7), ("UGLY", "U201", 1)):
        folder = raw / "DATA" / quality / case
        folder.mkdir(parents=True)
        rng = np.random.default_rng(len(images))
        latent = rng.integers(0, 256, size=(30, 26), dtype=np.uint8)
        write_eft_image(folder / f"{case}L{finger}U.EFT", latent, 13, finger)
        write_eft_image(folder / f"{case}T{finger}U.EFT", 255 - latent, 14, finger)
        images[case] = latent
    layout, n, _ = write_sd27_manifest(raw, tmp_path / "sd27.csv", seed=1)
    rows = read_pair_manifest(tmp_path / "sd27.csv")

    assert (layout, n) == ("legacy", 6)
    for r in rows:
        assert np.array_equal(read_eft_image(r.latent), images[r.subject])
        mate_case = r.fingerprint.name[:4]
        assert (mate_case == r.subject) == (r.match == 1)
        assert r.finger == r.latent.name[5]
    prepared = APPS.get("fingerprint").prepare([tmp_path / "sd27.csv"], tmp_path / "out",
                                               "cpu-tiny")
    assert prepared["splits"]["train"]["samples"] == 6

    # A compressed image record is refused with what to do.
    data = (raw / "DATA/GOOD/G001/G001L2U.EFT").read_bytes().replace(b"13.011:0", b"13.011:W")
    (tmp_path / "wsq.eft").write_bytes(data)
    with pytest.raises(DataError, match="compressed"):
        read_eft_image(tmp_path / "wsq.eft")


def test_sd27_converted_layout_with_masks(tmp_path):
    raw = tmp_path / "NISTSD27"
    for n in (1, 2, 3):
        grey(raw / "image" / f"{n:03d}.bmp", seed=n)
        grey(raw / "maskNIST27" / f"roi{n:03d}.bmp", value=255)
    with pytest.raises(DataError, match="--mates"):
        write_sd27_manifest(raw, tmp_path / "sd27.csv")
    for n in (1, 2, 3):
        grey(tmp_path / "mates" / f"{n:03d}.bmp", seed=10 + n)
    _, count, _ = write_sd27_manifest(raw, tmp_path / "sd27.csv", mates=tmp_path / "mates")
    rows = read_pair_manifest(tmp_path / "sd27.csv")

    assert count == 6
    assert all(r.latent_mask.name == f"roi{r.latent.stem}.bmp" for r in rows)
    assert all((r.fingerprint.stem == r.latent.stem) == (r.match == 1) for r in rows)


def test_fvc_folders_become_pairs_within_sets_and_splits(tmp_path):
    raw = shared_data("fvc2002")
    result = CliRunner().invoke(cli, ["prepare", "fingerprint-manifest", "fvc", "--raw",
                                      str(raw), "--out", str(tmp_path / "fvc.csv")])
    assert result.exit_code == 0, result.output
    rows = read_pair_manifest(tmp_path / "fvc.csv")

    # 2 sets x 10 fingers x C(8, 2) impression pairs, each with an impostor twin.
    assert len(rows) == 2 * 10 * 28 * 2
    assert sum(r.match for r in rows) == len(rows) // 2
    side: dict[str, str] = {}
    for r in rows:
        latent_set, print_set = r.latent.parent.name, r.fingerprint.parent.name
        latent_finger = r.latent.name.split("_")[0]
        print_finger = r.fingerprint.name.split("_")[0]
        assert latent_set == print_set
        assert (latent_finger == print_finger) == (r.match == 1)
        if r.match == 1:
            assert int(r.fingerprint.stem.split("_")[1]) < int(r.latent.stem.split("_")[1])
        for subject in (r.subject, r.fingerprint_subject):
            assert side.setdefault(subject, r.split) == r.split
    test_fingers = Counter(s.rsplit("_", 1)[0] for s, split in side.items() if split == "test")
    assert test_fingers == {"DB1_B": 2, "DB3_B": 2}


# ---------------------------------------------------------------------------------------------
# The manifest reader: bad rows are named


def small_manifest(tmp_path: Path, **bad: str) -> Path:
    """Three good rows (sd27 source) and, where asked, one cell of row 2 replaced."""
    rows = []
    for i in range(3):
        fp, latent = grey(tmp_path / f"fp{i}.png", seed=i), grey(tmp_path / f"l{i}.png",
                                                                 seed=9 + i)
        grey(tmp_path / f"m{i}.png", value=255)
        rows.append({"fingerprint": fp, "latent": latent, "fingerprint_orientation": "whorl",
                     "latent_orientation": "Left Loop", "latent_mask": tmp_path / f"m{i}.png",
                     "match": 1, "subject": f"c{i}", "finger": "2", "source": "sd27"})
    rows[1].update(bad)
    return write_pair_manifest(tmp_path / "pairs.csv", rows)


@pytest.mark.parametrize("bad, message", [
    ({"latent": "gone.png"}, "latent file .*gone.png does not exist"),
    ({"fingerprint_orientation": "spiral"}, "'spiral' is not a pattern class"),
    ({"latent_mask": "small.png"}, "latent_mask .* is 20x20 .* its image .* is 40x48"),
    ({"match": "yes"}, "match 'yes' must be 1"),
])
def test_a_bad_row_is_named_and_nothing_is_written(tmp_path, bad, message):
    grey(tmp_path / "small.png", size=(20, 20))
    manifest = small_manifest(tmp_path, **bad)
    out = tmp_path / "prepared"
    with pytest.raises(DataError, match=message) as caught:
        APPS.get("fingerprint").prepare([manifest], out, "cpu-tiny")
    assert f"{manifest} row 2 (line 3)" in str(caught.value)
    assert "row 1 " not in str(caught.value) and "row 3 " not in str(caught.value)
    assert not out.exists()
    assert not list(tmp_path.glob(".prepared*"))


def test_every_problem_is_reported_at_once(tmp_path):
    manifest = small_manifest(tmp_path, latent="gone.png", latent_orientation="loopy")
    with pytest.raises(DataError) as caught:
        read_pair_manifest(manifest)
    assert "2 problem(s)" in str(caught.value)


def test_header_problems_are_named(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("fingerprint,latent,mtach,subject,source\n")
    with pytest.raises(DataError, match=r"unknown column\(s\) mtach.*required column\(s\) "
                       r"match are missing"):
        read_pair_manifest(path)


def test_a_genuine_pair_must_be_one_finger(tmp_path):
    manifest = small_manifest(tmp_path, fingerprint_subject="someone_else")
    with pytest.raises(DataError, match="row 2 .*a genuine pair is one finger"):
        read_pair_manifest(manifest)


# ---------------------------------------------------------------------------------------------
# The protocol: splits and Z


def pair(subject: str, source: str, split: str | None = None, other: str | None = None,
         row: int = 1) -> PairRow:
    return PairRow(csv=Path("m.csv"), row=row, line=row + 1, fingerprint=Path("f"),
                   latent=Path("l"), fingerprint_orientation=None, latent_orientation=None,
                   fingerprint_mask=None, latent_mask=None, match=0 if other else 1,
                   subject=subject, finger="1", fingerprint_subject=other or subject,
                   fingerprint_finger="1", source=source, split=split)


def test_split_rules_of_the_protocol():
    sources = load_protocol("fingerprint")["sources"]
    rows = [pair("a", "sd27"), pair("b", "must", "test"), pair("c", "must", "train"),
            pair("d", "fvc")]
    placed, _ = split_pairs(rows, sources, 0.5, 0)
    assert [s for _, s in placed[:3]] == ["train", "test", "train"]

    for bad, message in (([pair("a", "sd27", "test")], "all training"),
                         ([pair("b", "must")], "split is empty"),
                         ([pair("b", "must", "test"), pair("c", "must", "train", other="b",
                                                           row=2)],
                          "subject 'b' of source must is in train here but in test")):
        with pytest.raises(DataError, match=message):
            split_pairs(bad, sources, 0.5, 0)


def test_subject_split_drops_pairs_across_it_and_says_so():
    sources = load_protocol("fingerprint")["sources"]
    subjects = [f"s{i}" for i in range(20)]
    rows = [pair(s, "lab") for s in subjects] + [
        pair(s, "lab", other=subjects[(i + 1) % 20], row=i + 21) for i, s in enumerate(subjects)]
    placed, warnings = split_pairs(rows, sources, 0.25, 0)
    side = {r.subject: s for r, s in placed if r.match == 1}
    assert Counter(side.values()) == {"train": 15, "test": 5}
    for r, s in placed:
        assert side[r.subject] == side[r.fingerprint_subject] == s
    assert len(placed) < len(rows)
    assert any("left out" in w for w in warnings)
    assert any("lab" in w and "not in data_manifests" in w for w in warnings)


def test_prepare_keeps_only_the_labels_the_source_protocol_counts(tmp_path):
    manifest = small_manifest(tmp_path)
    rows = rows_of(manifest)
    for r in rows:
        r["fingerprint_mask"] = r["latent_mask"]  # SD27's protocol has no print masks
    rows[2]["latent_orientation"] = ""
    write_pair_manifest(manifest, rows)
    prepared = APPS.get("fingerprint").prepare([manifest], tmp_path / "out", "cpu-tiny")

    labelled = {t["name"]: t["labelled"]["train"] for t in prepared["tasks"]}
    assert labelled == {"fp_orientation": 3, "fp_segmentation": 0, "lfp_orientation": 2,
                        "lfp_segmentation": 3, "matching": 3}
    batch = ShardDataset(open_prepared(tmp_path / "out"), "train").read(np.arange(3))
    assert batch["images"].shape == (3, 2, 1, 48, 40)
    assert batch["labels"]["lfp_orientation"].tolist() == [2, 2, -1]
    assert batch["labels"]["lfp_segmentation"].dtype == np.uint8
    assert batch["labels"]["lfp_segmentation"].all()
    assert batch["labels"]["matching"].dtype == np.float32


# ---------------------------------------------------------------------------------------------
# The command line


def test_prepare_synthetic_through_the_cli(tmp_path):
    out = tmp_path / "fp"
    result = CliRunner().invoke(cli, ["prepare", "fingerprint", "--synthetic", "24", "--out",
                                      str(out), "--preset", "cpu-tiny", "--seed", "4"])
    assert result.exit_code == 0, result.output
    data = open_prepared(out)
    manifest = json.loads((out / "manifest.json").read_text())

    assert data.inputs == 2 and data.image_shape == (2, 1, 48, 40)
    assert [t.name for t in data.tasks] == ["fp_orientation", "fp_segmentation",
                                            "lfp_orientation", "lfp_segmentation", "matching"]
    by_name = {t.name: t for t in data.tasks}
    assert by_name["matching"].inputs == (0, 1) and by_name["lfp_segmentation"].inputs == (1,)
    assert by_name["fp_orientation"].class_names == CLASSES
    assert manifest["protocol"]["synthetic"] == {"pairs": 24, "seed": 4,
                                                 "raw": str(synthetic_raw_dir(out))}

    # The split is subject-disjoint: trace each sample back to its manifest row.
    rows = rows_of(synthetic_raw_dir(out) / "pairs.csv")
    subjects = {}
    for split in ("train", "test"):
        ids = ShardDataset(data, split).read_all("sample_id").astype(str)
        picked = [rows[int(i.rsplit("row ", 1)[1]) - 1] for i in ids]
        subjects[split] = {s for r in picked for s in (r["subject"], r["fingerprint_subject"])}
    assert subjects["train"] and subjects["test"]
    assert not subjects["train"] & subjects["test"]

    again = CliRunner().invoke(cli, ["prepare", "fingerprint", "--synthetic", "24", "--out",
                                     str(out), "--preset", "cpu-tiny"])
    assert again.exit_code == 1 and "--force" in again.output


def test_cli_wants_manifests_or_synthetic_not_both(tmp_path):
    result = CliRunner().invoke(cli, ["prepare", "fingerprint", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "--synthetic" in result.output


def test_cli_sd27_manifest_then_prepare(tmp_path):
    raw = shared_data("sd27_samples")
    runner = CliRunner()
    csv_path = tmp_path / "sd27.csv"
    made = runner.invoke(cli, ["prepare", "fingerprint-manifest", "sd27", "--raw", str(raw),
                               "--out", str(csv_path)])
    assert made.exit_code == 0, made.output
    result = runner.invoke(cli, ["prepare", "fingerprint", "--manifest", str(csv_path),
                                 "--out", str(tmp_path / "out"), "--preset", "cpu-tiny"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["splits"]["train"]["samples"] == 6
    assert manifest["splits"]["test"]["samples"] == 0
    assert any("no pair is in the test split" in w for w in manifest["warnings"])
