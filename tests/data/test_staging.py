"""Folders written whole or not at all, and synthetic raw sets that never overwrite data."""

from __future__ import annotations

import pytest

from dstcli.data.staging import SYNTHETIC_MARKER, draw_synthetic_raw, synthetic_raw_dir
from dstcli.errors import DataError


def test_a_raw_set_is_redrawn_only_over_its_own(tmp_path):
    out = tmp_path / "data"
    raw = draw_synthetic_raw(out, lambda f: (f / "a.txt").write_text("1"), "set", "first")
    assert raw == synthetic_raw_dir(out) and (raw / SYNTHETIC_MARKER).exists()

    draw_synthetic_raw(out, lambda f: (f / "b.txt").write_text("2"), "set", "second")
    assert sorted(p.name for p in raw.iterdir()) == [SYNTHETIC_MARKER, "b.txt"]

    def fail(folder):
        (folder / "half.txt").write_text("x")
        raise RuntimeError("killed while drawing")

    with pytest.raises(RuntimeError):
        draw_synthetic_raw(out, fail, "set", "third")
    assert sorted(p.name for p in raw.iterdir()) == [SYNTHETIC_MARKER, "b.txt"]
    assert [p.name for p in tmp_path.iterdir()] == [raw.name]  # no staging left behind


def test_someone_elses_folder_is_refused(tmp_path):
    raw = synthetic_raw_dir(tmp_path / "data")
    raw.mkdir()
    (raw / "precious.txt").write_text("not ours")
    with pytest.raises(DataError, match="not a synthetic fingerprint set written by dst"):
        draw_synthetic_raw(tmp_path / "data", lambda f: None, "fingerprint set", "note")
    assert (raw / "precious.txt").exists()
