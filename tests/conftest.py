"""Shared fixtures: tiny Omniglot-layout data the tests generate, prepared at cpu-tiny size."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import GLYPH_ALPHABETS


@pytest.fixture(scope="session")
def glyph_zip(tmp_path_factory) -> Path:
    from dstcli.data.omniglot import write_synthetic_omniglot

    path = tmp_path_factory.mktemp("raw") / "images_background.zip"
    return write_synthetic_omniglot(path, GLYPH_ALPHABETS, drawers=20, size=105, seed=0)


@pytest.fixture(scope="session")
def omniglot_tiny(tmp_path_factory, glyph_zip) -> Path:
    """The glyph zip prepared at the cpu-tiny preset (read-only for tests: copy to modify)."""
    from dstcli.apps import APPS

    out = tmp_path_factory.mktemp("prepared") / "omniglot"
    APPS.get("omniglot").prepare([glyph_zip], out, "cpu-tiny")
    return out


@pytest.fixture(scope="session")
def pairs_tiny(tmp_path_factory) -> Path:
    """A few dozen synthetic fingerprint pairs at cpu-tiny size: the two-input fixture."""
    from dstcli.apps import APPS

    out = tmp_path_factory.mktemp("prepared") / "pairs"
    APPS.get("fingerprint").prepare_synthetic(48, out, "cpu-tiny", seed=0)
    return out


@pytest.fixture(scope="session")
def faces_tiny(tmp_path_factory) -> Path:
    """A few dozen synthetic AFLW faces at cpu-tiny size: five tasks of four kinds."""
    from dstcli.apps import APPS

    out = tmp_path_factory.mktemp("prepared") / "faces"
    APPS.get("aflw").prepare_synthetic(64, out, "cpu-tiny", seed=0)
    return out
