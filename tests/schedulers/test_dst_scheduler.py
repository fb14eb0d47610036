"""DST and random task drop as training methods: gates, the all-dropped rule, what a dropped
task costs, probe measurement, per-step gates, resume, replay and the options' checks.

The rule itself (P from the loss history) is tested in test_dst_rule.py; here it is only
compared with what the scheduler logged.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tiny_config
from rich.console import Console
from typer.testing import CliRunner

import dstcli.train as trainer
from dstcli.cli.main import app
from dstcli.errors import ConfigError, DstError
from dstcli.schedulers import SCHEDULERS, resolve
from dstcli.schedulers.base import TaskInfo
from dstcli.schedulers.dst import (
    DSTScheduler,
    RandomDrop,
    draw_gates,
    dst_components,
    dst_probabilities,
)
from dstcli.schedulers.specs.dst import carry_forward_missing
from dstcli.seeding import GATES, derived_seed

TASKS = [TaskInfo("a", "classification", 17, 50), TaskInfo("b", "classification", 17, 75),
         TaskInfo("c", "classification", 26, 100)]
V1 = {"a": 2.0, "b": 4.0, "c": 1.0}


def options(name: str, **given: str):
    return SCHEDULERS.get(name).options.parse(given)


def read_log(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "epochs.csv", newline="") as f:
        return list(csv.DictReader(f))


def column(rows, epoch: int, name: str) -> dict[str, str]:
    return {r["task"]: r[name] for r in rows if int(r["epoch"]) == epoch}


def train_recording(config) -> tuple[Path, list[list[list[int]]]]:
    """Train, and return the run folder and every epoch's batches as the trainer drew them."""
    drawn = []
    original = trainer.epoch_batches

    def record(*args, **kwargs):
        drawn.append(original(*args, **kwargs))
        return drawn[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trainer, "epoch_batches", record)
        run_dir = trainer.train(config, console=Console(quiet=True), progress=False)
    return run_dir, drawn


@pytest.fixture(scope="module")
def dst_run(omniglot_tiny, tmp_path_factory):
    config = tiny_config(omniglot_tiny, tmp_path_factory.mktemp("dst") / "run",
                         scheduler="dst", epochs=2)
    return train_recording(config)


@pytest.fixture(scope="module")
def mtl_run(omniglot_tiny, tmp_path_factory):
    config = tiny_config(omniglot_tiny, tmp_path_factory.mktemp("mtl") / "run", scheduler="mtl",
                         scheduler_options=options("mtl", loss_norm="initial"), epochs=2)
    return train_recording(config)


# -- gates -------------------------------------------------------------------------------------


def test_same_seed_gives_the_same_gates_without_touching_the_global_generators():
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    first, second = (RandomDrop(options("random", p="0.5"), TASKS, seed=3) for _ in range(2))
    other = RandomDrop(options("random", p="0.5"), TASKS, seed=4)
    for s in (first, second, other):
        s.end_epoch(1, V1)

    draws = [[s.step_gates(2, step) for step in range(3)] for s in (first, second)]

    assert draws[0] == draws[1]
    assert first.gates(2) == second.gates(2) == draws[0][0]
    # The draws are a function of (seed, epoch) alone: asking again repeats them.
    assert first.gates(2) == first.gates(2)
    assert [other.end_epoch(k, V1)["a"]["G"] for k in range(2, 12)] != [
        first.end_epoch(k, V1)["a"]["G"] for k in range(2, 12)]
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.random.get_state()[1].tolist() == numpy_state[1].tolist()


def test_a_dst_run_sees_the_data_order_of_an_mtl_run(dst_run, mtl_run):
    (_, dst_batches), (_, mtl_batches) = dst_run, mtl_run

    assert len(dst_batches) == 3
    assert dst_batches == mtl_batches


def test_gates_need_the_probabilities_of_the_epoch_before():
    scheduler = DSTScheduler(options("dst"), TASKS, seed=0)

    with pytest.raises(RuntimeError, match="end_epoch"):
        scheduler.gates(2)


# -- the all-dropped rule ----------------------------------------------------------------------


def test_all_dropped_switches_on_the_task_with_the_largest_probability():
    rng = np.random.default_rng(0)

    on, forced = draw_gates(np.array([1e-12, 3e-12, 2e-12]), rng)

    assert forced == 1
    assert on.tolist() == [False, True, False]
    on, forced = draw_gates(np.array([1.0, 1.0, 1.0]), rng)
    assert forced is None and on.all()


def test_the_log_records_which_task_was_forced_on():
    scheduler = RandomDrop(options("random", p="0"), TASKS, seed=0)

    rows = scheduler.end_epoch(1, V1)

    # All P equal: the first of equals is switched on, and only it.
    assert {t: r["G"] for t, r in rows.items()} == {"a": 1, "b": 0, "c": 0}
    assert {t: r["forced"] for t, r in rows.items()} == {"a": 1, "b": 0, "c": 0}
    assert scheduler.gates(2) == {"a": True, "b": False, "c": False}


def test_dst_forces_a_task_on_when_every_gate_is_0():
    # The rule keeps P >= l_b, so for an all-dropped epoch to be likely P must be set by hand.
    scheduler = DSTScheduler(options("dst", lambdas="0,0,0,0,1"), TASKS, seed=0)
    scheduler.probabilities = [np.array([1e-12, 1e-12, 2e-12])]

    assert scheduler.gates(2) == {"a": False, "b": False, "c": True}


# -- what a dropped task costs -----------------------------------------------------------------


def test_a_dropped_head_gets_no_backward_and_no_update(omniglot_tiny, tmp_path):
    # p = 0 drops every task, so the all-dropped rule trains the first task (Alpha) alone.
    config = tiny_config(omniglot_tiny, tmp_path / "run", scheduler="random",
                         scheduler_options=options("random", p="0"))
    run = trainer.build(config)
    dataset = trainer.ShardDataset(run.data, "train")
    console = Console(quiet=True)
    first = trainer.run_epoch(run, dataset, 1, console, progress=False)
    run.scheduler.end_epoch(1, first.losses)
    heads = run.model.heads
    before = {t: [p.detach().clone() for p in heads[t].parameters()] for t in heads}
    encoder_before = [p.detach().clone() for p in run.model.encoder.parameters()]
    backward_calls = {t: 0 for t in heads}

    def count(task):
        def hook(grad):
            backward_calls[task] += 1
        return hook

    for t in heads:
        for p in heads[t].parameters():
            p.register_hook(count(t))

    result = trainer.run_epoch(run, dataset, 2, console, progress=False)

    assert run.scheduler.gates(2) == {"Alpha": True, "Beta": False, "Gamma": False}
    for t in ("Beta", "Gamma"):
        assert backward_calls[t] == 0
        assert all(p.grad is None for p in heads[t].parameters())
        assert all(torch.equal(a, b) for a, b in zip(before[t], heads[t].parameters(),
                                                     strict=True))
        assert math.isfinite(result.losses[t])  # still measured, in the same pass
    assert backward_calls["Alpha"] > 0
    assert not all(torch.equal(a, b) for a, b in zip(before["Alpha"],
                                                     heads["Alpha"].parameters(), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(encoder_before,
                                                     run.model.encoder.parameters(), strict=True))
    assert result.probed == ()


def test_random_with_p_1_is_mtl_with_the_same_normaliser(omniglot_tiny, tmp_path, mtl_run):
    config = tiny_config(omniglot_tiny, tmp_path / "run", scheduler="random",
                         scheduler_options=options("random", p="1"), epochs=2)

    run_dir = trainer.train(config, console=Console(quiet=True), progress=False)

    ours = trainer.load_checkpoint(run_dir)["model"]
    theirs = trainer.load_checkpoint(mtl_run[0])["model"]
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert column(read_log(run_dir), 3, "V") == column(read_log(mtl_run[0]), 3, "V")


def test_probe_measures_the_dropped_tasks_on_the_probe_subset(omniglot_tiny, tmp_path):
    config = tiny_config(omniglot_tiny, tmp_path / "run", scheduler="random",
                         scheduler_options=options("random", p="0", dropped_loss="probe"))

    rows = read_log(trainer.train(config, console=Console(quiet=True), progress=False))

    assert column(rows, 1, "measured_on") == dict.fromkeys(("Alpha", "Beta", "Gamma"), "epoch")
    assert column(rows, 2, "measured_on") == {"Alpha": "epoch", "Beta": "probe",
                                              "Gamma": "probe"}
    assert all(math.isfinite(float(v)) for v in column(rows, 2, "V").values())
    assert column(rows, 2, "trained_steps")["Beta"] == "0"
    assert int(column(rows, 2, "trained_steps")["Alpha"]) > 0
    assert column(rows, 1, "forced") == {"Alpha": "1", "Beta": "0", "Gamma": "0"}


# -- gates every step --------------------------------------------------------------------------


def test_step_gates_are_fresh_draws_with_the_epochs_probabilities():
    scheduler = DSTScheduler(options("dst", lambdas="0,1,0,0,0", gate_every="step"), TASKS, 5)
    scheduler.end_epoch(1, V1)  # P = P_c = (0.5, 0.75, 1)

    draws = np.array([[g for g in scheduler.step_gates(2, s).values()] for s in range(2000)])

    np.testing.assert_allclose(draws.mean(axis=0), [0.5, 0.75, 1.0], atol=0.04)
    assert len({tuple(row) for row in draws}) > 1
    assert scheduler.step_gates(2, 7) == scheduler.step_gates(2, 7)
    assert scheduler.gates(2) == scheduler.step_gates(2, 0)
    rows = scheduler.end_epoch(2, V1)
    # trained_steps counts the steps each task trained in the epoch just ended.
    assert [rows[t]["trained_steps"] for t in "abc"] == draws.sum(axis=0).tolist()


@pytest.mark.parametrize("gate_every", ["step", "epoch"])
def test_the_log_counts_the_steps_the_all_dropped_rule_fired_in(gate_every):
    # p = 0.2 for three tasks: about half of the draws drop every task.
    scheduler = RandomDrop(options("random", p="0.2", gate_every=gate_every), TASKS, seed=0)
    scheduler.end_epoch(1, V1)
    expected = np.zeros(3, dtype=int)

    for step in range(40):
        scheduler.step_gates(2, step)
        parts = (GATES, 2, step) if gate_every == "step" else (GATES, 2)
        _, forced = draw_gates(np.full(3, 0.2), np.random.default_rng(derived_seed(0, *parts)))
        if forced is not None:
            expected[forced] += 1
    rows = scheduler.end_epoch(2, V1)

    # Per step: fired in several steps, not only the first. Per epoch: in all steps or none.
    assert expected.sum() > 1 if gate_every == "step" else expected.sum() in (0, 40)
    assert [rows[t]["forced_steps"] for t in "abc"] == expected.tolist()
    assert "forced_steps" in RandomDrop.log_columns and "forced_steps" in DSTScheduler.log_columns


def test_a_step_gated_run_logs_the_steps_each_task_trained(omniglot_tiny, tmp_path):
    config = tiny_config(omniglot_tiny, tmp_path / "run", scheduler="random",
                         scheduler_options=options("random", gate_every="step"))

    run_dir, batches = train_recording(config)

    expected, forced = np.zeros(3, dtype=int), np.zeros(3, dtype=int)
    for step in range(len(batches[1])):
        rng = np.random.default_rng(derived_seed(config.seed, GATES, 2, step))
        on, switched_on = draw_gates(np.full(3, 0.5), rng)
        expected += on
        if switched_on is not None:
            forced[switched_on] += 1
    rows = read_log(run_dir)
    logged = column(rows, 2, "trained_steps")
    assert [int(logged[t]) for t in ("Alpha", "Beta", "Gamma")] == expected.tolist()
    logged = column(rows, 2, "forced_steps")
    assert [int(logged[t]) for t in ("Alpha", "Beta", "Gamma")] == forced.tolist()


# -- missing losses ----------------------------------------------------------------------------


def test_a_missing_loss_carries_the_previous_one_forward():
    scheduler = DSTScheduler(options("dst"), TASKS, seed=0)
    scheduler.end_epoch(1, V1)

    rows = scheduler.end_epoch(2, {"a": 1.0, "b": math.nan, "c": 0.75})

    expected = dst_probabilities([[2, 4, 1], [1, 4, 0.75]], [17, 17, 26], [50, 75, 100])
    assert [rows[t]["P"] for t in "abc"] == expected[-1].tolist()
    assert math.isnan(scheduler.losses[-1][1])  # the history keeps what was measured
    with pytest.raises(ValueError, match="task b has no loss in epoch 1"):
        carry_forward_missing([[1.0, math.nan]], ["a", "b"])
    with pytest.raises(DstError, match="no V\\[1\\]"):
        DSTScheduler(options("dst"), TASKS, seed=0).end_epoch(1, {**V1, "b": math.nan})


@pytest.mark.parametrize("name", ["dst", "random"])
def test_an_infinite_loss_is_refused_not_taken_for_a_missing_one(name):
    scheduler = SCHEDULERS.get(name).load()(options(name), TASKS, seed=0)
    scheduler.end_epoch(1, V1)

    with pytest.raises(DstError, match="task b .*inf.* after epoch 2"):
        scheduler.end_epoch(2, {"a": 1.0, "b": math.inf, "c": 0.75})


# -- resume and replay -------------------------------------------------------------------------


def test_the_log_holds_every_component_and_replays(dst_run):
    run_dir = dst_run[0]
    rows = read_log(run_dir)
    assert {"P_d", "P_c", "P_u", "P_r", "P", "G", "w", "forced"} <= set(rows[0])
    assert {int(r["epoch"]) for r in rows} == {1, 2, 3}

    result = CliRunner().invoke(app, ["replay", str(run_dir)])

    assert result.exit_code == 0, result.output
    assert "match" in result.output
    assert "= 0" in result.output  # the same floats, the same rule: no difference at all


def test_replay_reports_an_edited_log(dst_run, tmp_path):
    run_dir = shutil.copytree(dst_run[0], tmp_path / "edited")
    rows = read_log(run_dir)
    rows[4]["P"] = str(float(rows[4]["P"]) - 1e-6)
    with open(run_dir / "epochs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    result = CliRunner().invoke(app, ["replay", str(run_dir), "--no-table"])

    assert result.exit_code == 1
    assert "differs from the rule by 1e-06" in result.output


def test_replay_refuses_other_runs_and_incomplete_folders(mtl_run, dst_run, tmp_path):
    runner = CliRunner()

    result = runner.invoke(app, ["replay", str(mtl_run[0])])
    assert result.exit_code == 1
    assert "'mtl' run" in result.output and "not a dst run" in result.output

    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "tasks.json"):
        shutil.copy(dst_run[0] / name, bare / name)
    result = runner.invoke(app, ["replay", str(bare)])
    assert result.exit_code == 1
    assert "epochs.csv not found" in result.output


def test_a_resumed_run_draws_the_gates_of_the_uninterrupted_one(omniglot_tiny, tmp_path,
                                                                dst_run):
    out = tmp_path / "run"
    trainer.train(tiny_config(omniglot_tiny, out, scheduler="dst", epochs=1),
                  console=Console(quiet=True), progress=False)

    trainer.train(tiny_config(omniglot_tiny, out, scheduler="dst", epochs=2), resume=True,
                  console=Console(quiet=True), progress=False)

    resumed, whole = read_log(out), read_log(dst_run[0])
    drop = ("seconds",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in resumed] == [
        {k: v for k, v in r.items() if k not in drop} for r in whole]


def test_a_mid_epoch_resume_of_step_gates_logs_what_the_uninterrupted_run_logs(
        omniglot_tiny, tmp_path):
    # 12 steps an epoch, a checkpoint every 4: the run stops after the one at step 4 of epoch 2,
    # so the steps counted before it (trained_steps, forced_steps) come from the checkpoint.
    def config(out: Path):
        return tiny_config(omniglot_tiny, out, scheduler="dst", batch_size=16, epochs=1,
                           scheduler_options=options("dst", gate_every="step"),
                           checkpoint_every=4)

    class Stop(Exception):
        pass

    real_save = trainer.save_checkpoint

    def save_then_stop(run, run_dir, epoch, in_epoch=None):
        real_save(run, run_dir, epoch, in_epoch)
        if in_epoch is not None and in_epoch.epoch == 2:
            raise Stop

    quiet = Console(quiet=True)
    whole = trainer.train(config(tmp_path / "whole"), console=quiet, progress=False)
    out = tmp_path / "resumed"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trainer, "save_checkpoint", save_then_stop)
        with pytest.raises(Stop):
            trainer.train(config(out), console=quiet, progress=False)
    assert trainer.load_checkpoint(out)["in_epoch"]["step"] == 4

    trainer.train(config(out), resume=True, console=quiet, progress=False)

    resumed, expected = read_log(out), read_log(whole)
    assert int(column(expected, 2, "trained_steps")["Gamma"]) > 8  # more than after the stop
    drop = ("seconds",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in resumed] == [
        {k: v for k, v in r.items() if k not in drop} for r in expected]


def test_scheduler_state_round_trips():
    scheduler = DSTScheduler(options("dst"), TASKS, seed=0)
    scheduler.end_epoch(1, V1)
    scheduler.end_epoch(2, {"a": 1.0, "b": 2.0, "c": 0.75})
    copy = DSTScheduler(options("dst"), TASKS, seed=0)

    copy.load_state_dict(scheduler.state_dict())

    assert copy.gates(3) == scheduler.gates(3)
    nxt = {"a": 0.5, "b": 3.0, "c": 0.5}
    assert copy.end_epoch(3, nxt) == scheduler.end_epoch(3, nxt)


def test_replay_and_the_scheduler_import_the_same_rule():
    from dstcli.schedulers import dst_rule

    assert dst_components is dst_rule.dst_components
    assert dst_probabilities is dst_rule.dst_probabilities


# -- options -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "given", "flag", "words"), [
    ("dst", {"lambdas": "0.5,0.5,0.5,0.5,0.5"}, "--lambdas", "sum to 1"),
    ("dst", {"lambdas": "0.25,0.25,0.25,0.25"}, "--lambdas", "give 5 weights"),
    ("dst", {"lambdas": "1.5,-0.5,0,0,0"}, "--lambdas", "in [0, 1]"),
    ("dst", {"lambdas": "a,b,c,d,e"}, "--lambdas", "expected a number"),
    ("dst", {"beta": "1.5"}, "--beta", "in [0, 1]"),
    ("dst", {"beta": "nan"}, "--beta", "in [0, 1]"),
    ("dst", {"count_metric": "log"}, "--count-metric", "ratio, inverse"),
    ("dst", {"gate_every": "batch"}, "--gate-every", "epoch, step"),
    ("dst", {"gate_every": "step", "dropped_loss": "probe"}, "--gate-every",
     "use --dropped-loss forward"),
    ("random", {"p": "-0.1"}, "--p", "in [0, 1]"),
    ("random", {"p": "2"}, "--p", "in [0, 1]"),
    ("random", {"dropped_loss": "skip"}, "--dropped-loss", "forward, probe"),
])
def test_bad_options_are_rejected_naming_the_flag(method, given, flag, words):
    with pytest.raises(ConfigError) as caught:
        options(method, **given)

    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith(flag + " ")
    assert words in caught.value.problems[0]


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as caught:
        options("dst", lambdas="0.5", beta="2")

    assert [p.split()[0] for p in caught.value.problems] == ["--lambdas", "--beta"]


def test_defaults_and_variants():
    dst = options("dst")
    assert (dst.lambdas, dst.beta, dst.loss_norm, dst.dropped_loss, dst.gate_every,
            dst.count_metric) == ((0.2,) * 5, 0.1, "initial", "forward", "epoch", "ratio")
    assert options("dst", lambdas="0.15,0.15,0.3,0.3,0.1").lambdas == (0.15, 0.15, 0.3, 0.3, 0.1)
    for name, p in (("random-0.5", 0.5), ("random-0.75", 0.75)):
        entry, preset = resolve(name)
        assert entry.name == "random" and entry.options(**preset).p == p
    random = options("random")
    assert (random.p, random.loss_norm) == (0.5, "initial")
    assert json.loads(json.dumps(dst.to_json()))["lambdas"] == [0.2] * 5


def test_replay_imports_no_torch(dst_run):
    import subprocess
    import sys

    script = ("import sys; from typer.testing import CliRunner; from dstcli.cli.main import app; "
              f"r = CliRunner().invoke(app, ['replay', {str(dst_run[0])!r}, '--no-table']); "
              "assert r.exit_code == 0, r.output; assert 'torch' not in sys.modules, 'torch'")

    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)

    assert done.returncode == 0, done.stderr


def test_early_stop_switches_a_task_off_at_its_stl_loss(tmp_path):
    stl = tmp_path / "stl"
    stl.mkdir()
    (stl / "epochs.csv").write_text("epoch,phase,task,V\n1,measure,a,2.0\n1,measure,b,2.0\n"
                                    "2,train,a,0.5\n2,train,b,0.8\n3,train,a,0.4\n"
                                    "3,train,b,0.9\n")
    entry = SCHEDULERS.get("early-stop")
    options = entry.options.parse({"stl_results": str(stl)})
    infos = [TaskInfo("a", "classification", 17, 10), TaskInfo("b", "classification", 17, 10)]
    scheduler = entry.load()(options, infos, seed=0)
    assert scheduler.targets == {"a": 0.4, "b": 0.8}  # the lowest STL training loss

    scheduler.end_epoch(1, {"a": 2.0, "b": 2.0})
    assert scheduler.gates(2) == {"a": True, "b": True}
    scheduler.end_epoch(2, {"a": 0.6, "b": 0.7})  # b reached its STL loss
    assert scheduler.gates(3) == {"a": True, "b": False}
    rows = scheduler.end_epoch(3, {"a": 0.3, "b": 1.5})  # b stays off though it rose
    # Both stopped: the all-dropped rule keeps the first task on, and says so.
    assert scheduler.gates(4) == {"a": True, "b": False} and rows["a"]["forced"] == 1

    missing = entry.options.parse({"stl_results": str(stl)})
    with pytest.raises(DstError, match="no STL loss for task"):
        entry.load()(missing, infos + [TaskInfo("c", "classification", 17, 10)], seed=0)
    with pytest.raises(ConfigError, match="--stl-results is required by early-stop"):
        entry.options.parse({})


# -- the pieces of Eq. 17 ----------------------------------------------------------------------


def test_the_normaliser_equalises_the_first_losses():
    scheduler = DSTScheduler(options("dst"), TASKS, seed=0)
    scheduler.end_epoch(1, V1)  # mean V[1] = 7/3
    expected = {"a": (7 / 3) / 2.0, "b": (7 / 3) / 4.0, "c": (7 / 3) / 1.0}
    assert scheduler.weights == pytest.approx(expected)
    assert DSTScheduler(options("dst", loss_norm="none"), TASKS, seed=0).weights == {
        "a": 1.0, "b": 1.0, "c": 1.0}


def test_a_step_loss_is_the_normalised_sum_of_the_tasks_present():
    from dstcli.schedulers.base import StepContext

    scheduler = DSTScheduler(options("dst"), TASKS, seed=0)
    scheduler.end_epoch(1, V1)
    # The trainer leaves gated-off tasks and tasks without labelled rows out of `losses`.
    losses = {t: torch.tensor(v, requires_grad=True) for t, v in (("a", 0.5), ("c", 2.0))}
    scheduler.backward(losses, StepContext(2, 0, None, None, {}))
    assert {t: float(x.grad) for t, x in losses.items()} == pytest.approx(
        {"a": scheduler.weights["a"], "c": scheduler.weights["c"]})


def test_epoch_gates_come_from_the_seed_and_epoch_stream():
    scheduler = DSTScheduler(options("dst"), TASKS, seed=7)
    scheduler.end_epoch(1, V1)
    rows = scheduler.end_epoch(2, {"a": 1.5, "b": 3.0, "c": 0.9})
    for epoch in (2, 3):
        rng = np.random.default_rng(derived_seed(7, GATES, epoch))
        on, _ = draw_gates(scheduler.probabilities[epoch - 2], rng)
        assert [scheduler.gates(epoch)[t] for t in "abc"] == on.astype(bool).tolist()
    assert [rows[t]["G"] for t in "abc"] == [int(scheduler.gates(3)[t]) for t in "abc"]


def test_v_is_the_mean_over_labelled_samples_not_of_batch_means(faces_tiny, tmp_path):
    # No batch norm, so a sample's loss does not depend on the rest of its batch; faces, whose
    # regression losses differ from sample to sample even at initialisation; batches of 12,
    # so that the last one is short and a mean of batch means would weigh it up.
    config = tiny_config(faces_tiny, tmp_path / "run", app="aflw", scheduler="dst",
                         batch_size=12, encoder_norm="none")
    run = trainer.build(config)
    from dstcli.data.shards import ShardDataset
    from dstcli.models.multitask import TaskRequest
    from dstcli.tasks import per_sample_loss

    data = ShardDataset(run.data, "train")
    specs = {t.name: t for t in run.tasks}
    per_task: dict[str, list[float]] = {t: [] for t in specs}
    batch_means: dict[str, list[float]] = {t: [] for t in specs}
    with torch.no_grad():
        for batch_rows in trainer.epoch_batches(len(data), 12, config.seed, 1):
            batch = data.__getitems__(batch_rows)
            for t, spec in specs.items():
                rows = torch.nonzero(batch["Z"][t]).squeeze(1)
                if rows.numel():
                    out = run.model(batch["images"], {t: TaskRequest(rows, False)})[t]
                    losses = per_sample_loss(spec, out, batch["labels"][t][rows])
                    per_task[t] += losses.tolist()
                    batch_means[t].append(float(losses.mean()))

    run_dir = trainer.train(config, console=Console(quiet=True), progress=False)
    logged = {t: float(v) for t, v in column(read_log(run_dir), 1, "V").items()}
    for t in specs:
        assert logged[t] == pytest.approx(sum(per_task[t]) / len(per_task[t]), rel=1e-5)
    assert any(logged[t] != pytest.approx(float(np.mean(batch_means[t])), rel=1e-5)
               for t in specs)


def test_the_dropped_loss_mode_is_saved_with_the_run(omniglot_tiny, tmp_path):
    config = tiny_config(omniglot_tiny, tmp_path / "run", scheduler="dst",
                         scheduler_options=options("dst", dropped_loss="probe"))
    run_dir = trainer.train(config, console=Console(quiet=True), progress=False)
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["scheduler_options"]["dropped_loss"] == "probe"
