"""Every registered scheduler, and every named variant, trains a cpu-tiny epoch end to end,
on Omniglot (one image per sample) and on fingerprint pairs (two inputs, the bilateral net).

Parametrised over the registry: a method is tested the day it is registered.
"""

from __future__ import annotations

import csv
import json
import math

import pytest
from helpers import tiny_config

from dstcli.data.shards import open_prepared
from dstcli.errors import DstError
from dstcli.schedulers import SCHEDULERS, all_names, resolve
from dstcli.train import load_checkpoint, train

# Methods that need one shared tensor read by every head, which the bilateral network lacks
# (GradDrop works on each encoder's output instead).
NEEDS_ONE_REPRESENTATION = {"mgda"}


def extra_options(name: str, tmp_path, data) -> dict:
    entry, _ = resolve(name)
    tasks = [t.name for t in open_prepared(data).tasks]
    if entry.name == "adaptive":
        stl = tmp_path / "stl-metrics.json"
        stl.write_text(json.dumps({"tasks": {t: {"error": 50.0} for t in tasks}}))
        return {"stl_results": str(stl)}
    if entry.name == "early-stop":
        stl = tmp_path / "stl-run"
        stl.mkdir()
        rows = "".join(f"2,train,{t},0.5\n" for t in tasks)
        (stl / "epochs.csv").write_text("epoch,phase,task,V\n" + rows)
        return {"stl_results": str(stl)}
    return {}


def config_for(name: str, data, tmp_path):
    entry, variant = resolve(name)
    given = {k: str(v) for k, v in variant.items()}
    given.update(extra_options(name, tmp_path, data))
    app = open_prepared(data).app
    return tiny_config(data, tmp_path / "run", app=app, scheduler=name,
                       scheduler_options=entry.options.parse(given), epochs=1, batch_size=16)


def check_run(run_dir, name: str, tasks: int) -> None:
    with open(run_dir / "epochs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * tasks  # two epochs (measure + train) of every task
    trained = [r for r in rows if r["epoch"] == "2"]
    assert all(math.isfinite(float(r["V"])) for r in trained)
    state = load_checkpoint(run_dir)
    assert state["epoch"] == 2 and state["config"]["scheduler"] == name


@pytest.mark.parametrize("name", all_names())
def test_scheduler_trains_an_epoch(name, omniglot_tiny, tmp_path):
    run_dir = train(config_for(name, omniglot_tiny, tmp_path))
    check_run(run_dir, name, tasks=3)


@pytest.mark.parametrize("name", all_names())
def test_scheduler_trains_an_epoch_on_pairs(name, pairs_tiny, tmp_path):
    config = config_for(name, pairs_tiny, tmp_path)
    if resolve(name)[0].name in NEEDS_ONE_REPRESENTATION:
        with pytest.raises(DstError, match=f"{resolve(name)[0].name} needs one shared tensor"):
            train(config)
        return
    check_run(train(config), name, tasks=5)


def test_registry_entries_are_complete():
    for name in SCHEDULERS.names():
        entry = SCHEDULERS.get(name)
        assert entry.summary
        assert entry.load() is not None
        for f in entry.options.option_fields():
            assert f.metadata.get("help"), f"{name}: option {f.name} has no help text"
        for variant, values in entry.variants.items():
            assert set(values) <= {f.name for f in entry.options.option_fields()}, variant
