"""Every registered scheduler, and every named variant, trains a cpu-tiny epoch end to end,
on Omniglot (one image per sample) and on fingerprint pairs (two inputs, the bilateral net).

Parametrised over the registry: a method is tested the day it is registered.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from helpers import tiny_config

from dstcli.apps.base import TaskSpec
from dstcli.data.shards import open_prepared
from dstcli.errors import DstError
from dstcli.models.multitask import SharedEncoderNet, TaskRequest
from dstcli.schedulers import SCHEDULERS, all_names, resolve
from dstcli.schedulers.base import StepContext, TaskInfo
from dstcli.tasks import per_sample_loss
from dstcli.train import PREVIOUS_CHECKPOINT, load_checkpoint, train

# Methods that need one shared tensor read by every head, which the bilateral network lacks
# (GradDrop works on each encoder's output instead).
NEEDS_ONE_REPRESENTATION = {"mgda"}


def extra_options(name: str, tmp_path, data) -> dict:
    return stl_stand_in(name, tmp_path, [t.name for t in open_prepared(data).tasks])


def stl_stand_in(name: str, tmp_path, tasks: list[str]) -> dict:
    """The `--stl-results` of the methods that compare with single-task training."""
    entry, _ = resolve(name)
    if entry.name == "adaptive":
        stl = tmp_path / "stl-metrics-train.json"
        stl.write_text(json.dumps({"split": "train",
                                   "tasks": {t: {"error": 50.0} for t in tasks}}))
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


def train_keeping_the_model(config) -> tuple[Path, torch.nn.Module]:
    kept = []
    run_dir = train(config, on_finish=lambda run: kept.append(run.model))
    return run_dir, kept[0]


def check_run(run_dir, name: str, tasks: int, model: torch.nn.Module) -> None:
    with open(run_dir / "epochs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * tasks  # two epochs (measure + train) of every task
    trained = [r for r in rows if r["epoch"] == "2"]
    assert all(math.isfinite(float(r["V"])) for r in trained)
    state = load_checkpoint(run_dir)
    assert state["epoch"] == 2 and state["config"]["scheduler"] == name
    check_trained(run_dir, name, model)


def check_trained(run_dir: Path, name: str, model: torch.nn.Module) -> None:
    """The training epoch moved the shared trunk (stl: every task's own network). Epoch 1
    updates no weight, so the checkpoint it left (now checkpoint.prev.pt) holds the initial
    parameters."""
    initial = torch.load(run_dir / PREVIOUS_CHECKPOINT, map_location="cpu", weights_only=False)
    final = load_checkpoint(run_dir)["model"]
    assert initial["epoch"] == 1
    names = {id(p): n for n, p in model.named_parameters()}
    if resolve(name)[0].stl:
        groups = {t: model.task_parameters(t) for t in model.nets}
    else:
        groups = {"shared": model.shared_parameters()}

    for group, params in groups.items():
        assert params, f"{name}: no {group} parameters to check"
        changed = [names[id(p)] for p in params
                   if not torch.equal(initial["model"][names[id(p)]], final[names[id(p)]])]
        assert changed, f"{name}: no {group} parameter changed in the training epoch"


@pytest.mark.parametrize("name", all_names())
def test_scheduler_trains_an_epoch(name, omniglot_tiny, tmp_path):
    run_dir, model = train_keeping_the_model(config_for(name, omniglot_tiny, tmp_path))
    check_run(run_dir, name, tasks=3, model=model)


@pytest.mark.parametrize("name", all_names())
def test_scheduler_trains_an_epoch_on_pairs(name, pairs_tiny, tmp_path):
    config = config_for(name, pairs_tiny, tmp_path)
    if resolve(name)[0].name in NEEDS_ONE_REPRESENTATION:
        with pytest.raises(DstError, match=f"{resolve(name)[0].name} needs one shared tensor"):
            train(config)
        return
    run_dir, model = train_keeping_the_model(config)
    check_run(run_dir, name, tasks=5, model=model)


@pytest.mark.parametrize("name", [n for n in all_names() if not resolve(n)[0].stl])
def test_a_task_without_labels_in_the_batch_takes_no_part(name, tmp_path):
    """Label masks in every method: task b has no labelled row in the batch, so its head gets
    no gradient, and no weight, gradient or logged w turns NaN for the others."""
    torch.manual_seed(0)
    tasks = [TaskSpec(t, "classification", 17, 13, num_classes=3) for t in "abc"]
    model = SharedEncoderNet(tasks, 1, 1 / 16)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    entry, variant = resolve(name)
    given = {k: str(v) for k, v in variant.items()} | stl_stand_in(name, tmp_path, list("abc"))
    scheduler = entry.load()(entry.options.parse(given),
                             [TaskInfo(t.name, t.kind, t.depth, 10) for t in tasks], 0)
    scheduler.attach(model, optimizer)
    scores = {t: {"error": 60.0, "accuracy": 40.0} for t in "abc"}
    scheduler.end_epoch(1, {"a": 1.2, "b": 0.9, "c": 1.0}, scores)

    gates = scheduler.step_gates(2, 0)
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (8, 1, 32, 32), dtype=torch.uint8, generator=g)
    rows = {"a": torch.arange(0, 5), "c": torch.arange(3, 8)}
    requests = {t: TaskRequest(r, gates[t]) for t, r in rows.items()}
    targets = {t: torch.randint(0, 3, (len(r),), generator=g) for t, r in rows.items()}
    if scheduler.needs_representation:
        outputs, representations = model.forward_split(images, requests)
    else:
        outputs, representations = model(images, requests), None
    losses = {t: per_sample_loss(tasks[0], outputs[t], targets[t]).mean()
              for t in rows if gates[t]}

    optimizer.zero_grad(set_to_none=True)
    ctx = StepContext(2, 0, model, optimizer, {t: len(r) for t, r in rows.items()},
                      {t.name: t for t in tasks}, outputs, targets, representations,
                      reevaluate=lambda: {t: float(v.detach()) for t, v in losses.items()})
    scheduler.backward(losses, ctx)
    assert all(p.grad is None for p in model.task_parameters("b"))
    for t in losses:
        assert all(p.grad is not None for p in model.task_parameters(t)), t
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    optimizer.step()
    scheduler.after_step(ctx)
    assert all(torch.isfinite(p).all() for p in model.parameters())

    # The trained tasks' logged weights are numbers (the per-task-gradient methods log NaN
    # for a task that took part in no step of the epoch, as b here: docs/schedulers).
    logged = scheduler.end_epoch(2, {"a": 1.0, "b": 0.8, "c": 0.9}, scores)
    assert all(math.isfinite(float(logged[t]["w"])) for t in losses if "w" in logged[t])


def test_registry_entries_are_complete():
    for name in SCHEDULERS.names():
        entry = SCHEDULERS.get(name)
        assert entry.summary
        assert entry.load() is not None
        for f in entry.options.option_fields():
            assert f.metadata.get("help"), f"{name}: option {f.name} has no help text"
        for variant, values in entry.variants.items():
            assert set(values) <= {f.name for f in entry.options.option_fields()}, variant
