"""Helpers the tests import (`from helpers import ...`; pytest puts tests/ on the path)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if "DST_SHARED_DATA" in os.environ:
    SHARED_DATA = Path(os.environ["DST_SHARED_DATA"])

# Three alphabets of a few characters: enough for every code path, seconds to train.
GLYPH_ALPHABETS = {"Alpha": 4, "Beta": 3, "Gamma": 5}


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test when it is not there."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not present (the real data sets lie in ../shared/data)")
    return path


def tiny_config(data: Path, out: Path, **overrides):
    """A fast training configuration on prepared cpu-tiny data."""
    from dstcli.config import TrainConfig

    values = dict(app="omniglot", data=str(data), out=str(out), preset="cpu-tiny", epochs=1,
                  batch_size=32, lr=1e-3, device="cpu", seed=0)
    values.update(overrides)
    return TrainConfig(**values).resolved().validate()
