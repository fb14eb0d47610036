"""Tests for the loss-weighting baselines (docs/schedulers/weighting.md).

Most tests drive a scheduler directly, on a tiny two-layer network or on fabricated losses, with
expected numbers worked out by hand in the comments; a few train one cpu-tiny epoch end to end.
"""

import csv
import json
import math

import pytest
import torch
from helpers import tiny_config
from torch import nn

from dstcli.apps.base import TaskSpec
from dstcli.errors import ConfigError, DstError
from dstcli.schedulers import SCHEDULERS, resolve
from dstcli.schedulers.base import StepContext, TaskInfo

NAMES = ["a", "b", "c"]
METHODS = ["gradnorm", "lbtw", "dtp", "adaptive", "uw", "dwa", "rlw", "famo"]


def infos(names=NAMES, kind="classification"):
    return [TaskInfo(t, kind, 17, 100) for t in names]


def make(name, given=None, names=NAMES, seed=0, kind="classification"):
    entry = SCHEDULERS.get(name)
    return entry.load()(entry.options.parse(given or {}), infos(names, kind), seed)


class TinyNet(nn.Module):
    """A shared linear trunk and one linear head per task: the multi-task model's interface."""

    def __init__(self, names=NAMES):
        super().__init__()
        torch.manual_seed(0)
        self.trunk = nn.Linear(4, 8)
        self.heads = nn.ModuleDict({t: nn.Linear(8, 3) for t in names})

    def shared_parameters(self):
        return list(self.trunk.parameters())

    def last_shared_weights(self):
        return [self.trunk.weight]

    def forward(self, x):
        h = torch.relu(self.trunk(x))
        return {t: head(h) for t, head in self.heads.items()}


def batch(seed, n=6):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def losses_of(model, x, y, tasks):
    outputs = model(x)
    return {t: nn.functional.cross_entropy(outputs[t], y) for t in tasks}, outputs


def train_step(scheduler, model, optimizer, epoch, step, tasks=NAMES):
    """One trainer step: zero, the scheduler's backward, the optimizer step, after_step."""
    x, y = batch(100 * epoch + step)
    losses, outputs = losses_of(model, x, y, tasks)
    optimizer.zero_grad(set_to_none=True)

    def reevaluate():
        with torch.no_grad():
            return {t: float(v) for t, v in losses_of(model, x, y, tasks)[0].items()}

    ctx = StepContext(epoch, step, model, optimizer, dict.fromkeys(tasks, len(y)), {},
                      {t: outputs[t] for t in tasks}, dict.fromkeys(tasks, y), None, reevaluate)
    scheduler.backward(losses, ctx)
    optimizer.step()
    scheduler.after_step(ctx)
    return losses


def fabricated(values):
    """Leaf losses that carry a gradient, for schedulers that only read and weight them."""
    return {t: torch.tensor(float(v), requires_grad=True) for t, v in values.items()}


def ctx_for(epoch, step, **kw):
    values = {"model": None, "optimizer": None, "counts": {}, **kw}
    return StepContext(epoch, step, **values)


# --- GradNorm ---------------------------------------------------------------------------------


def test_gradnorm_weights_sum_to_k_and_stay_positive():
    scheduler = make("gradnorm", {"alpha": "1.5", "weight_lr": "0.5"})  # a large lr on purpose
    model = TinyNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    scheduler.attach(model, optimizer)
    scheduler.end_epoch(1, {"a": 1.2, "b": 0.9, "c": 1.5})

    seen = []
    for step in range(8):
        tasks = [NAMES, ["a", "c"], ["b"]][step % 3]  # tasks without labels in some batches
        train_step(scheduler, model, optimizer, 2, step, tasks)
        w = scheduler.state_dict()["weights"]
        assert sum(w.values()) == pytest.approx(3.0, abs=1e-5)
        assert min(w.values()) > 0
        seen.append(dict(w))
    assert any(abs(w["a"] - 1) > 1e-3 for w in seen)  # the weights do move


def test_gradnorm_network_gets_only_the_weighted_loss_gradient():
    scheduler = make("gradnorm")
    model = TinyNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # keep the model where it is
    scheduler.attach(model, optimizer)
    with torch.no_grad():
        for t, v in zip(NAMES, (0.5, 1.0, 1.5), strict=True):
            scheduler.w[t].fill_(v)

    x, y = batch(1)
    losses, outputs = losses_of(model, x, y, NAMES)
    optimizer.zero_grad(set_to_none=True)
    scheduler.backward(losses, ctx_for(2, 0, model=model, optimizer=optimizer))
    got = model.trunk.weight.grad.clone()
    assert all(scheduler.w[t].grad is not None for t in NAMES)

    model.zero_grad(set_to_none=True)
    losses, _ = losses_of(model, x, y, NAMES)
    (0.5 * losses["a"] + 1.0 * losses["b"] + 1.5 * losses["c"]).backward()
    torch.testing.assert_close(got, model.trunk.weight.grad)


def test_gradnorm_reference_is_v1_and_an_absent_task_gets_no_gradient():
    scheduler = make("gradnorm")
    model = TinyNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler.attach(model, optimizer)
    scheduler.end_epoch(1, {"a": 2.0, "b": 4.0, "c": 8.0})

    losses = train_step(scheduler, model, optimizer, 2, 0, ["a", "c"])
    assert scheduler.reference_losses(["a"], losses) == {"a": 2.0}
    assert scheduler.w["b"].grad is None
    assert scheduler.w["a"].grad is not None


def test_gradnorm_refuses_a_network_without_shared_layers():
    class Separate(TinyNet):
        def shared_parameters(self):
            return []

    with pytest.raises(DstError, match="shares none"):
        make("gradnorm").attach(Separate(), torch.optim.Adam(TinyNet().parameters()))


# --- LBTW -------------------------------------------------------------------------------------


def test_lbtw_reference_resets_every_epoch():
    scheduler = make("lbtw", {"alpha": "1.0"}, names=["a", "b"])

    # Epoch 2: the first batch is the reference, so its weights are 1.
    scheduler.backward(fabricated({"a": 2.0, "b": 4.0}), ctx_for(2, 0))
    assert scheduler.weights == pytest.approx({"a": 1.0, "b": 1.0})
    # Ratios 1/2 and 4/4 = (1/2, 1), rescaled to sum 2: (2/3, 4/3).
    scheduler.backward(fabricated({"a": 1.0, "b": 4.0}), ctx_for(2, 1))
    assert scheduler.weights == pytest.approx({"a": 2 / 3, "b": 4 / 3})
    # Epoch 3: the same losses become the new reference.
    scheduler.backward(fabricated({"a": 1.0, "b": 4.0}), ctx_for(3, 0))
    assert scheduler.reference == {"a": 1.0, "b": 4.0}
    assert scheduler.weights == pytest.approx({"a": 1.0, "b": 1.0})


def test_lbtw_takes_the_reference_from_the_first_batch_with_a_label():
    scheduler = make("lbtw", {"alpha": "0.5"}, names=["a", "b"])
    scheduler.backward(fabricated({"a": 2.0}), ctx_for(2, 0))  # b has no label here
    assert scheduler.reference == {"a": 2.0}
    assert scheduler.weights["a"] == pytest.approx(1.0)  # one task: its weight alone sums to 1

    # a: (1/2)^0.5, b: its own reference, 1; rescaled to sum 2.
    scheduler.backward(fabricated({"a": 1.0, "b": 3.0}), ctx_for(2, 1))
    assert scheduler.reference == {"a": 2.0, "b": 3.0}
    r = math.sqrt(0.5)
    assert scheduler.weights == pytest.approx({"a": 2 * r / (r + 1), "b": 2 / (r + 1)})


# --- DTP --------------------------------------------------------------------------------------


def test_dtp_focal_weight_worked_numbers():
    from dstcli.schedulers.dtp import focal_weight

    assert focal_weight(0.5, 1.0) == pytest.approx(0.5 * math.log(2))  # -(1/2) log(1/2)
    assert focal_weight(0.8, 2.0) == pytest.approx(0.04 * -math.log(0.8))  # -(0.2)^2 log 0.8
    assert focal_weight(0.3, 0.0) == pytest.approx(-math.log(0.3))
    # Clipped to [0.01, 0.99]: a perfect KPI keeps a small weight, a zero KPI a finite one.
    assert focal_weight(1.0, 1.0) == pytest.approx(-0.01 * math.log(0.99))
    assert focal_weight(0.0, 1.0) == pytest.approx(-0.99 * math.log(0.01))


def test_dtp_kpi_average_starts_at_the_first_kpi():
    scheduler = make("dtp", {"gamma": "1", "kpi_ema": "0.5"}, names=["a"])
    right = torch.tensor([[5.0, 0.0], [0.0, 5.0]])
    target = torch.tensor([0, 1])
    tasks = {"a": TaskSpec("a", "classification", 17, 13, num_classes=2)}

    # Batch accuracy 1: the average starts there (clipped to 0.99 for the weight).
    scheduler.backward(fabricated({"a": 1.0}),
                       ctx_for(2, 0, outputs={"a": right}, targets={"a": target}, tasks=tasks))
    assert scheduler.kpi["a"] == 1.0
    assert scheduler.weights["a"] == pytest.approx(-0.01 * math.log(0.99))
    # Accuracy 0 next: 0.5 * 0 + 0.5 * 1 = 1/2, weight -(1/2) log(1/2).
    scheduler.backward(fabricated({"a": 1.0}),
                       ctx_for(2, 1, outputs={"a": right}, targets={"a": 1 - target},
                               tasks=tasks))
    assert scheduler.kpi["a"] == pytest.approx(0.5)
    assert scheduler.weights["a"] == pytest.approx(0.5 * math.log(2))


def test_dtp_skips_a_batch_without_a_visible_landmark():
    """No visible landmark: no KPI evidence, so neither a KPI of 0 (the largest weight) nor a
    change of the average."""
    scheduler = make("dtp", {"gamma": "1", "kpi_ema": "0.5"}, names=["a"], kind="landmarks")
    tasks = {"a": TaskSpec("a", "landmarks", 17, 13, scale=10.0)}
    output = torch.zeros(2, 5, 2)
    hidden = torch.zeros(2, 5, 3)  # visibility column 0 everywhere
    shown = hidden.clone()
    shown[..., 2] = 1.0  # every landmark visible and exactly predicted: PCK 1

    scheduler.backward(fabricated({"a": 1.0}),
                       ctx_for(2, 0, outputs={"a": output}, targets={"a": hidden}, tasks=tasks))
    assert "a" not in scheduler.kpi and scheduler.weights["a"] == 1.0
    scheduler.backward(fabricated({"a": 1.0}),
                       ctx_for(2, 1, outputs={"a": output}, targets={"a": shown}, tasks=tasks))
    scheduler.backward(fabricated({"a": 1.0}),
                       ctx_for(2, 2, outputs={"a": output}, targets={"a": hidden}, tasks=tasks))
    assert scheduler.kpi["a"] == 1.0


def test_dtp_names_a_task_kind_without_a_kpi():
    entry = SCHEDULERS.get("dtp")
    with pytest.raises(DstError, match="no KPI for task kind 'keypoints3d'"):
        entry.load()(entry.options(), infos(["mesh"], kind="keypoints3d"), 0)


# --- Adaptive Scheduling ----------------------------------------------------------------------


def write_metrics(path, errors, split="train"):
    path.write_text(json.dumps({"split": split,
                                "tasks": {t: {"error": e} for t, e in errors.items()}}))
    return path


def write_epochs(run_dir, rows):
    """An stl run's epochs.csv from (epoch, phase, task, train_error) rows."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lines = "".join(f"{e},{p},{t},1.0,{err}\n" for e, p, t, err in rows)
    (run_dir / "epochs.csv").write_text("epoch,phase,task,V,train_error\n" + lines)
    return run_dir


def test_adaptive_requires_stl_results():
    with pytest.raises(ConfigError, match="--stl-results"):
        SCHEDULERS.get("adaptive").options.parse({})


def test_adaptive_rejects_a_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="--stl-results.*does not exist"):
        SCHEDULERS.get("adaptive").options.parse({"stl_results": str(tmp_path / "nope.json")})


def test_adaptive_names_a_task_missing_from_the_stl_results(tmp_path):
    path = write_metrics(tmp_path / "metrics.json", {"a": 10.0, "b": 20.0})
    with pytest.raises(DstError, match=r"task\(s\) c"):
        make("adaptive", {"stl_results": str(path)})


def test_adaptive_weights_follow_the_formula(tmp_path):
    path = write_metrics(tmp_path / "metrics.json", {"a": 10.0, "b": 20.0, "c": 40.0})
    with pytest.warns(UserWarning, match="reconstruction"):
        scheduler = make("adaptive", {"stl_results": str(path)})
    metrics = {t: {"error": 20.0, "accuracy": 80.0} for t in NAMES}

    # Epoch 1 (no update yet) keeps the weights uniform.
    scheduler.end_epoch(1, dict.fromkeys(NAMES, 1.0), metrics)
    assert scheduler.weights == dict.fromkeys(NAMES, 1.0)
    # rho = b / s = (1/2, 1, 2); rho^-1 = (2, 1, 1/2), sum 7/2; w = 3 (4/7, 2/7, 1/7).
    log = scheduler.end_epoch(2, dict.fromkeys(NAMES, 1.0), metrics)
    assert scheduler.weights == pytest.approx({"a": 12 / 7, "b": 6 / 7, "c": 3 / 7})
    assert log["a"]["rho"] == pytest.approx(0.5)
    assert log["c"]["w"] == pytest.approx(3 / 7)


def test_stl_results_in_every_accepted_layout(tmp_path):
    from dstcli.schedulers.specs.weighting import read_stl_errors

    # A run folder: each task's lowest training error over the training epochs; epoch 1 (the
    # measuring pass of an untrained network) and empty cells do not count.
    write_epochs(tmp_path / "runs" / "s0", [(1, "measure", "a", 1.0), (1, "measure", "b", 1.0),
                                            (2, "train", "a", 12.0), (2, "train", "b", 30.0),
                                            (3, "train", "a", 10.0), (3, "train", "b", "")])
    write_epochs(tmp_path / "runs" / "s1", [(2, "train", "a", 20.0), (2, "train", "b", 10.0)])
    assert read_stl_errors(tmp_path / "runs" / "s0") == {"a": 10.0, "b": 30.0}
    assert read_stl_errors(tmp_path / "runs") == {"a": 15.0, "b": 20.0}  # averaged over runs

    # A run logged before train_error existed falls back to its metrics-train.json.
    old = tmp_path / "old"
    old.mkdir()
    (old / "epochs.csv").write_text("epoch,phase,task,V\n2,train,a,1.0\n")
    with pytest.raises(DstError, match="--split train"):
        read_stl_errors(old)
    write_metrics(old / "metrics-train.json", {"a": 7.0})
    assert read_stl_errors(old) == {"a": 7.0}

    wide = tmp_path / "metrics.csv"  # dst eval's layout
    with open(wide, "w", newline="") as f:
        csv.writer(f).writerows([["run", "a.accuracy", "a.error", "b.error"],
                                 ["x", "90", "10", "30"]])
    assert read_stl_errors(wide) == {"a": 10.0, "b": 30.0}
    long = tmp_path / "long.csv"
    long.write_text("task,error\na,10\nb,30\nb,20\n")
    assert read_stl_errors(long) == {"a": 10.0, "b": 25.0}

    (tmp_path / "bad.json").write_text(json.dumps({"tasks": {"a": {"error": 120}}}))
    with pytest.raises(DstError, match="percentage"):
        read_stl_errors(tmp_path / "bad.json")


def test_stl_results_refuse_test_scores(tmp_path):
    """Test-set scores as b_t would leak the test set into training; a run folder holding only
    its test metrics.json is not a source either."""
    from dstcli.schedulers.specs.weighting import read_stl_errors

    with pytest.raises(DstError, match="test-set scores.*training set"):
        read_stl_errors(write_metrics(tmp_path / "metrics.json", {"a": 10.0}, split="test"))

    run = tmp_path / "run"
    run.mkdir()
    write_metrics(run / "metrics.json", {"a": 10.0}, split="test")
    with pytest.raises(DstError, match="neither an stl run folder"):
        read_stl_errors(run)


# --- UW, DWA, RLW, FAMO -----------------------------------------------------------------------


def test_uw_log_variances_train_with_the_optimizer_without_decay():
    scheduler = make("uw")
    model = TinyNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    scheduler.attach(model, optimizer)

    group = optimizer.param_groups[-1]
    assert {id(p) for p in group["params"]} == {id(p) for p in scheduler.s.values()}
    assert group["weight_decay"] == 0.0
    # With s = 0: d/ds 1/2 (e^-s L + s) = 1/2 (1 - L).
    losses = train_step(scheduler, model, optimizer, 2, 0)
    assert scheduler.s["a"].grad == pytest.approx(0.5 * (1 - losses["a"].item()))
    assert scheduler.state_dict()["log_variance"]["a"] != 0.0


def test_dwa_worked_example():
    from dstcli.schedulers.dwa import dwa_weights

    # r = (1/2, 1/1) = (0.5, 1); T = 2: w = 2 softmax(0.25, 0.5).
    e1, e2 = math.exp(0.25), math.exp(0.5)
    assert dwa_weights({"a": 2.0, "b": 1.0}, {"a": 1.0, "b": 1.0}, 2.0) == pytest.approx(
        {"a": 2 * e1 / (e1 + e2), "b": 2 * e2 / (e1 + e2)})


def test_dwa_keeps_weight_one_for_the_first_two_training_epochs():
    scheduler = make("dwa", {"temperature": "2"}, names=["a", "b"])
    scheduler.end_epoch(1, {"a": 9.0, "b": 1.0})  # the pass without update is not used
    scheduler.end_epoch(2, {"a": 2.0, "b": 1.0})
    assert scheduler.weights == {"a": 1.0, "b": 1.0}  # epoch 3 trains with these
    scheduler.end_epoch(3, {"a": 1.0, "b": 1.0})
    e1, e2 = math.exp(0.25), math.exp(0.5)
    assert scheduler.weights == pytest.approx({"a": 2 * e1 / (e1 + e2), "b": 2 * e2 / (e1 + e2)})


def test_rlw_weights_sum_to_one_and_repeat_per_seed():
    from dstcli.schedulers.rlw import rlw_weights

    first = rlw_weights(7, 2, 0, NAMES, NAMES)
    assert sum(first.values()) == pytest.approx(1.0)
    assert rlw_weights(7, 2, 0, NAMES, NAMES) == first
    assert rlw_weights(8, 2, 0, NAMES, NAMES) != first
    assert rlw_weights(7, 2, 1, NAMES, NAMES) != first
    partial = rlw_weights(7, 2, 0, NAMES, ["a", "c"])  # b has no label in this batch
    assert sum(partial.values()) == pytest.approx(1.0)
    assert partial["a"] / partial["c"] == pytest.approx(first["a"] / first["c"])


def test_famo_logits_move_toward_the_task_that_improved_least():
    scheduler = make("famo", names=["a", "b"])
    model = TinyNet(["a", "b"])
    scheduler.attach(model, torch.optim.Adam(model.parameters()))

    losses = fabricated({"a": 1.0, "b": 1.0})
    after = {"a": 0.5, "b": 0.9}  # a's loss fell more than b's
    scheduler.backward(losses, ctx_for(2, 0))
    # Equal logits, equal losses: each loss gets half the gradient, divided by c L = 2 * 1.
    assert float(losses["a"].grad) == pytest.approx(0.5)
    scheduler.after_step(ctx_for(2, 0, reevaluate=lambda: after))
    logits = scheduler.state_dict()["logits"]
    assert logits["b"] > 0 > logits["a"]


# --- Options, variants ------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "given", "flag"), [
    ("gradnorm", {"alpha": "-1"}, "--alpha"),
    ("gradnorm", {"alpha": "much"}, "--alpha"),
    ("gradnorm", {"weight_lr": "0"}, "--weight-lr"),
    ("lbtw", {"alpha": "nan"}, "--alpha"),
    ("dtp", {"gamma": "-0.5"}, "--gamma"),
    ("dtp", {"kpi_ema": "0"}, "--kpi-ema"),
    ("dtp", {"kpi_ema": "1.5"}, "--kpi-ema"),
    ("dwa", {"temperature": "0"}, "--temperature"),
    ("famo", {"famo_lr": "-0.1"}, "--famo-lr"),
    ("famo", {"famo_weight_decay": "-1"}, "--famo-weight-decay"),
    ("adaptive", {"stl_results": "x.json", "adaptive_beta": "-1"}, "--adaptive-beta"),
])
def test_bad_option_values_name_their_flag(method, given, flag):
    with pytest.raises(ConfigError, match=flag):
        SCHEDULERS.get(method).options.parse(given)


def test_named_variants_set_alpha():
    assert resolve("gradnorm-0.5")[1] == {"alpha": 0.5}
    assert resolve("lbtw-1.0")[1] == {"alpha": 1.0}
    assert SCHEDULERS.get("gradnorm").options.parse({"alpha": "1.0"}).alpha == 1.0


CHOICE_FIELDS = {name: sorted(SCHEDULERS.get(name).options.choices())
                 for name in SCHEDULERS.names()}


def test_the_choice_fields_are_found_however_declared():
    found = {(name, f) for name, fields in CHOICE_FIELDS.items() for f in fields}
    assert {("mtl", "loss_norm"), ("mgda", "mgda_norm"), ("imtl", "imtl_mode"),
            ("aligned", "aligned_scale"), ("dst", "count_metric"),
            ("early-stop", "gate_every"), ("random", "dropped_loss")} <= found


@pytest.mark.parametrize("method", [n for n, fields in CHOICE_FIELDS.items() if fields])
def test_a_hand_edited_bad_choice_is_refused(method, tmp_path):
    from dstcli.config import TrainConfig
    from dstcli.schedulers.options import flag_name

    entry = SCHEDULERS.get(method)
    saved = {**entry.options().to_json(), **{f: "bogus" for f in CHOICE_FIELDS[method]}}
    (tmp_path / "config.json").write_text(json.dumps({
        "app": "omniglot", "data": str(tmp_path / "data"), "out": str(tmp_path),
        "scheduler": method, "scheduler_options": saved}))

    with pytest.raises(ConfigError) as caught:
        TrainConfig.load(tmp_path / "config.json").validate()

    # Every bad field at once, each naming its flag and the choices.
    for f in CHOICE_FIELDS[method]:
        allowed = ", ".join(map(str, entry.options.choices()[f]))
        assert f"{flag_name(f)} 'bogus': choose one of {allowed}" in caught.value.problems


# --- End to end -------------------------------------------------------------------------------


def options_for(method, tmp_path):
    given = {}
    if method == "adaptive":
        errors = {t: 25.0 for t in ("Alpha", "Beta", "Gamma")}
        given["stl_results"] = str(write_metrics(tmp_path / "stl.json", errors))
    return SCHEDULERS.get(method).options.parse(given)


@pytest.mark.filterwarnings("ignore:adaptive")
@pytest.mark.parametrize("method", METHODS)
def test_trains_one_epoch(method, omniglot_tiny, tmp_path):
    from dstcli.train import train

    config = tiny_config(omniglot_tiny, tmp_path / "run", scheduler=method,
                         scheduler_options=options_for(method, tmp_path))
    run = train(config, progress=False)
    with open(run / "epochs.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["phase"] == "train"]
    assert len(rows) == 3
    assert all(math.isfinite(float(r["w"])) and float(r["w"]) > 0 for r in rows)


@pytest.mark.parametrize("method", ["gradnorm", "famo"])
def test_resume_continues_the_learned_weights(method, omniglot_tiny, tmp_path):
    from dstcli.train import train

    def weights(run):
        with open(run / "epochs.csv", newline="") as f:
            return [(r["epoch"], r["task"], float(r["w"])) for r in csv.DictReader(f)]

    options = options_for(method, tmp_path)
    whole = train(tiny_config(omniglot_tiny, tmp_path / "whole", scheduler=method,
                              scheduler_options=options, epochs=2), progress=False)
    train(tiny_config(omniglot_tiny, tmp_path / "parts", scheduler=method,
                      scheduler_options=options, epochs=1), progress=False)
    parts = train(tiny_config(omniglot_tiny, tmp_path / "parts", scheduler=method,
                              scheduler_options=options, epochs=2), resume=True,
                  progress=False)
    assert weights(parts) == weights(whole)


@pytest.mark.parametrize("method", ["lbtw", "rlw"])
def test_a_mid_epoch_checkpoint_keeps_the_epochs_logged_weights(method):
    """Weights that change every step are logged as the epoch's mean; a run stopped after
    step 1 and resumed from its state logs the mean over all three steps."""
    def start():
        scheduler, model = make(method), TinyNet()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        scheduler.attach(model, optimizer)
        scheduler.end_epoch(1, {"a": 1.2, "b": 0.9, "c": 1.5})
        return scheduler, model, optimizer

    whole, model, optimizer = start()
    for step in range(3):
        train_step(whole, model, optimizer, 2, step)
    expected = whole.end_epoch(2, {"a": 1.0, "b": 0.8, "c": 1.4})

    first, model, optimizer = start()
    for step in range(2):
        train_step(first, model, optimizer, 2, step)
    state = json.loads(json.dumps(first.state_dict()))  # as a checkpoint keeps it
    resumed = make(method)
    resumed.attach(model, optimizer)
    resumed.load_state_dict(state)
    train_step(resumed, model, optimizer, 2, 2)
    got = resumed.end_epoch(2, {"a": 1.0, "b": 0.8, "c": 1.4})
    assert {t: got[t]["w"] for t in NAMES} == pytest.approx({t: expected[t]["w"] for t in NAMES})


def test_famo_reevaluation_leaves_the_batch_norm_statistics_alone(omniglot_tiny, tmp_path):
    from dstcli.train import load_checkpoint, train

    def tracked(scheduler):
        run = train(tiny_config(omniglot_tiny, tmp_path / scheduler, scheduler=scheduler),
                    progress=False)
        state = load_checkpoint(run)["model"]
        return {k: int(v) for k, v in state.items() if k.endswith("num_batches_tracked")}

    # The second forward of each FAMO step must not count as a batch of its own.
    assert tracked("famo") == tracked("mtl")
