"""Every registered scheduler, and every named variant, trains a cpu-tiny epoch end to end.

Parametrised over the registry: a method is tested the day it is registered.
"""

from __future__ import annotations

import csv
import math

import pytest
from helpers import tiny_config

from dstcli.schedulers import SCHEDULERS, all_names, resolve
from dstcli.train import load_checkpoint, train


def extra_options(name: str, tmp_path, omniglot_tiny) -> dict:
    entry, _ = resolve(name)
    if entry.name == "adaptive":
        import json

        stl = tmp_path / "stl-metrics.json"
        tasks = {t: {"error": 50.0} for t in ("Alpha", "Beta", "Gamma")}
        stl.write_text(json.dumps({"tasks": tasks}))
        return {"stl_results": str(stl)}
    return {}


@pytest.mark.parametrize("name", all_names())
def test_scheduler_trains_an_epoch(name, omniglot_tiny, tmp_path):
    entry, variant = resolve(name)
    given = {k: str(v) for k, v in variant.items()}
    given.update(extra_options(name, tmp_path, omniglot_tiny))
    options = entry.options.parse(given)
    config = tiny_config(omniglot_tiny, tmp_path / "run", scheduler=name,
                         scheduler_options=options, epochs=1, batch_size=16)
    run_dir = train(config)

    with open(run_dir / "epochs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 3  # two epochs (measure + train) of three tasks
    trained = [r for r in rows if r["epoch"] == "2"]
    assert all(math.isfinite(float(r["V"])) for r in trained)
    state = load_checkpoint(run_dir)
    assert state["epoch"] == 2 and state["config"]["scheduler"] == name


def test_registry_entries_are_complete():
    for name in SCHEDULERS.names():
        entry = SCHEDULERS.get(name)
        assert entry.summary
        assert entry.load() is not None
        for f in entry.options.option_fields():
            assert f.metadata.get("help"), f"{name}: option {f.name} has no help text"
        for variant, values in entry.variants.items():
            assert set(values) <= {f.name for f in entry.options.option_fields()}, variant
