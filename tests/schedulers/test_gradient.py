"""Tests for the gradient-based baselines (docs/schedulers/gradient.md).

The worked examples are computed by hand in the comments; none of the expected numbers comes
from the implementation.
"""

import csv
import math

import numpy as np
import pytest
import torch
from helpers import tiny_config

from dstcli.apps.base import TaskSpec
from dstcli.errors import ConfigError, DstError
from dstcli.models.multitask import SharedEncoderNet, SingleTaskNets, TaskRequest
from dstcli.schedulers import SCHEDULERS, resolve
from dstcli.schedulers.base import StepContext, TaskInfo
from dstcli.schedulers.graddrop import graddrop_combine, graddrop_masks
from dstcli.schedulers.gradient import (
    aligned_basis,
    aligned_weights,
    cagrad_weights,
    gram_matrix,
    imtl_weights,
    pcgrad_weights,
    project_simplex,
)
from dstcli.schedulers.mgda import min_norm_weights
from dstcli.schedulers.nash import nash_weights
from dstcli.tasks import per_sample_loss

METHODS = ("graddrop", "pcgrad", "cagrad", "mgda", "nash", "imtl", "aligned")
# Every name `--scheduler` takes for these methods, variants included.
NAMES = METHODS + ("imtl-g", "imtl-l")


def gram(*vectors):
    G = np.array(vectors, dtype=np.float64)
    return G, G @ G.T


# --- GradDrop ----------------------------------------------------------------------------------
#
# B = 2 samples, z has 3 elements.
#   z       = [[1, -2, 0.5], [2, 1, -1]]     sign(z) = [[1, -1, 1], [1, 1, -1]]
#   grad_A  = [[0.2, 0.1, -0.3], [0.1, 0.4, 0.2]]
#   grad_B  = [[-0.4, 0.3, 0.1], [0.0, -0.1, -0.1]]
# Batch-separated signal s_t = sum_b sign(z_b) * grad_t,b:
#   s_A = (0.2 + 0.1, -0.1 + 0.4, -0.3 - 0.2) = (0.3, 0.3, -0.5)
#   s_B = (-0.4 + 0, -0.3 - 0.1, 0.1 + 0.1)   = (-0.4, -0.4, 0.2)
# sum s = (-0.1, -0.1, -0.3), sum |s| = (0.7, 0.7, 0.7)
#   P = 1/2 (1 + sum s / sum |s|) = (3/7, 3/7, 2/7) ~ (0.429, 0.429, 0.286)
# U = (0.2, 0.5, 0.25):
#   element 0: P > U, keep the positive signals: A (0.3) kept, B (-0.4) dropped
#   element 1: P < U, keep the negative signals: A dropped, B (-0.4) kept
#   element 2: P > U, keep the positive signals: A (-0.5) dropped, B (0.2) kept
#   M_A = (1, 0, 0), M_B = (0, 1, 1)
# Pure GradDrop (leak 0) sends M_A * grad_A + M_B * grad_B:
#   sample 0: (0.2, 0.3, 0.1), sample 1: (0.1, -0.1, -0.1)

Z = torch.tensor([[1.0, -2.0, 0.5], [2.0, 1.0, -1.0]])
GRAD_A = torch.tensor([[0.2, 0.1, -0.3], [0.1, 0.4, 0.2]])
GRAD_B = torch.tensor([[-0.4, 0.3, 0.1], [0.0, -0.1, -0.1]])
U = torch.tensor([0.2, 0.5, 0.25])


def test_graddrop_masks_match_the_worked_example():
    grads = torch.stack([GRAD_A, GRAD_B])  # (K, B, D)
    masks = graddrop_masks(Z, grads, U)
    assert masks.tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]

    combined = graddrop_combine(grads, masks, torch.zeros(2))
    torch.testing.assert_close(combined, torch.tensor([[0.2, 0.3, 0.1], [0.1, -0.1, -0.1]]))


def test_graddrop_leak_one_passes_a_task_unchanged():
    grads = torch.stack([GRAD_A, GRAD_B])
    masks = graddrop_masks(Z, grads, U)

    # Task A leaks fully: its whole gradient passes, B's stays masked.
    combined = graddrop_combine(grads, masks, torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(combined, GRAD_A + masks[1] * GRAD_B)

    # A lone task with leak 1 gets exactly its own gradient, whatever the mask.
    alone = graddrop_combine(GRAD_A[None], torch.zeros(1, 3), torch.ones(1))
    torch.testing.assert_close(alone, GRAD_A)


def test_graddrop_masks_are_finite_where_every_signal_is_zero():
    grads = torch.zeros(2, 2, 3)
    masks = graddrop_masks(Z, grads, U)
    assert torch.isfinite(masks).all() and masks.sum() == 0


# --- PCGrad ------------------------------------------------------------------------------------


def test_pcgrad_projects_two_conflicting_gradients():
    # g1 = (1, 0), g2 = (-1, 1): g1 . g2 = -1 < 0.
    #   g1' = g1 - (g1.g2 / |g2|^2) g2 = (1, 0) + 1/2 (-1, 1) = (1/2, 1/2)
    #   g2' = g2 - (g2.g1 / |g1|^2) g1 = (-1, 1) + (1, 0)     = (0, 1)
    #   update = (1/2, 3/2) = 2 g1 + 3/2 g2
    G, M = gram((1, 0), (-1, 1))
    w = pcgrad_weights(M, [[0, 1], [1, 0]])
    np.testing.assert_allclose(w, [2.0, 1.5])
    np.testing.assert_allclose(w @ G, [0.5, 1.5])


def test_pcgrad_leaves_agreeing_gradients_alone():
    G, M = gram((1, 0), (1, 1))  # g1 . g2 = 1 >= 0
    w = pcgrad_weights(M, [[1], [0]])
    np.testing.assert_allclose(w, [1.0, 1.0])
    np.testing.assert_allclose(w @ G, [2.0, 1.0])


def test_pcgrad_follows_the_given_order():
    # g0 = (1, 0), g1 = (0, 1), g2 = (-1, -1); g0.g1 = 0, g0.g2 = g1.g2 = -1.
    # Orders t0: 1, 2; t1: 0, 2; t2: 0, 1
    #   g0' = g0 + 1/2 g2 = (1/2, -1/2)               (g0.g1 = 0: no projection)
    #   g1' = g1 + 1/2 g2 = (-1/2, 1/2)
    #   g2' = g2 + g0 = (0, -1); then g2'.g1 = -1: g2'' = (0, -1) + g1 = (0, 0)
    #   update = (0, 0)
    # Orders t0: 2, 1; t1: 2, 0; t2: 1, 0
    #   g0' = (1/2, -1/2); g0'.g1 = -1/2: g0'' = (1/2, -1/2) + 1/2 g1 = (1/2, 0)
    #   g1' = (-1/2, 1/2); g1'.g0 = -1/2: g1'' = (-1/2, 1/2) + 1/2 g0 = (0, 1/2)
    #   g2' = g2 + g1 = (-1, 0); g2'.g0 = -1: g2'' = (-1, 0) + g0 = (0, 0)
    #   update = (1/2, 1/2)
    G, M = gram((1, 0), (0, 1), (-1, -1))
    np.testing.assert_allclose(pcgrad_weights(M, [[1, 2], [0, 2], [0, 1]]) @ G, [0, 0],
                               atol=1e-12)
    np.testing.assert_allclose(pcgrad_weights(M, [[2, 1], [2, 0], [1, 0]]) @ G, [0.5, 0.5])


# --- MGDA-UB -----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_min_norm_matches_the_two_task_closed_form(seed):
    rng = np.random.default_rng(seed)
    g1 = rng.normal(size=5)
    g2 = rng.normal(size=5) + (3 * g1 if seed % 3 == 0 else 0)  # some pairs clip to a vertex
    _, M = gram(g1, g2)
    closed = min(max((g2 - g1) @ g2 / ((g1 - g2) @ (g1 - g2)), 0.0), 1.0)
    alpha = min_norm_weights(M)
    np.testing.assert_allclose(alpha, [closed, 1 - closed], atol=1e-6)


def test_min_norm_is_optimal_for_more_tasks():
    rng = np.random.default_rng(7)
    _, M = gram(*rng.normal(size=(4, 6)))
    alpha = min_norm_weights(M)
    # Optimality on the simplex: no vertex has a smaller inner product than the point itself
    # (up to the solver's tolerance, 1e-5 of the largest squared norm).
    value = alpha @ M @ alpha
    assert np.all(M @ alpha >= value - 1e-5 * M.diagonal().max())
    assert alpha.min() >= 0 and math.isclose(alpha.sum(), 1.0)


# --- CAGrad ------------------------------------------------------------------------------------


def test_cagrad_with_c_zero_is_the_mean_gradient():
    G, M = gram((1, 0, 2), (-1, 3, 0), (0, -2, 1))
    np.testing.assert_allclose(cagrad_weights(M, 0.0) @ G, G.mean(axis=0))


def test_cagrad_solves_its_sub_problem():
    G, M = gram((1, 0, 2), (-1, 3, 0), (0, -2, 1))
    c = 0.4
    coef = cagrad_weights(M, c)
    g0 = G.mean(axis=0)

    # coef = (1/K + lam w) / (1 + c^2) with w on the simplex: recover lam and w.
    scaled = coef * (1 + c**2) - 1 / 3
    lam = scaled.sum()
    w = scaled / lam
    assert w.min() > -1e-9

    def objective(v):
        gw = v @ G
        return gw @ g0 + c * np.linalg.norm(g0) * np.linalg.norm(gw)

    grid = [np.array([a, b, 1 - a - b]) / 1 for a in np.linspace(0, 1, 101)
            for b in np.linspace(0, 1, 101) if a + b <= 1 + 1e-12]
    assert objective(w) <= min(objective(v) for v in grid) + 1e-6
    np.testing.assert_allclose(lam, c * np.linalg.norm(g0) / np.linalg.norm(w @ G))


def test_simplex_projection():
    np.testing.assert_allclose(project_simplex(np.array([0.5, 0.5])), [0.5, 0.5])
    np.testing.assert_allclose(project_simplex(np.array([2.0, 0.0])), [1.0, 0.0])
    np.testing.assert_allclose(project_simplex(np.array([1.0, 1.0, -1.0])), [0.5, 0.5, 0.0])


# --- Nash-MTL, IMTL-G, Aligned-MTL -------------------------------------------------------------


def test_nash_alpha_solves_the_bargaining_system():
    _, M = gram((1, 0.2, 0), (0.1, 1, 0.3), (0, -0.2, 2))
    alpha, found = nash_weights(M)
    assert found and np.all(alpha > 0)
    np.testing.assert_allclose(M @ alpha, 1 / alpha, rtol=1e-7)

    # A warm start from a near solution lands on the same point.
    again, found = nash_weights(M, start=alpha * 1.3)
    assert found
    np.testing.assert_allclose(again, alpha, rtol=1e-7)


def test_nash_reports_a_system_without_solution():
    # g2 = -g1: alpha = t (1, 1) cancels for every t, so no alpha > 0 solves the system.
    _, M = gram((1, 2), (-1, -2))
    _, found = nash_weights(M)
    assert not found


def test_imtl_projects_equally_on_every_task():
    rng = np.random.default_rng(3)
    G, M = gram(*rng.normal(size=(3, 5)))
    alpha = imtl_weights(M)
    d = alpha @ G
    projections = [d @ g / np.linalg.norm(g) for g in G]
    np.testing.assert_allclose(projections, projections[0])
    assert math.isclose(alpha.sum(), 1.0)


def test_aligned_gradients_are_orthogonal_with_the_smallest_singular_value():
    rng = np.random.default_rng(4)
    G, M = gram(*rng.normal(size=(3, 6)))
    B = aligned_basis(M, "min")
    aligned = B.T @ G  # rows: the aligned task gradients
    np.testing.assert_allclose(aligned @ aligned.T, np.linalg.eigvalsh(M).min() * np.eye(3),
                               atol=1e-10)
    np.testing.assert_allclose(aligned_weights(M) @ G, aligned.sum(axis=0))


# --- Registration and options ------------------------------------------------------------------


@pytest.mark.parametrize("name", METHODS)
def test_registered_for_the_shared_network_only(name):
    assert not SCHEDULERS.get(name).stl


@pytest.mark.parametrize("name, values, flag", [
    ("cagrad", {"cagrad_c": "-0.1"}, "--cagrad-c"),
    ("cagrad", {"cagrad_c": "nan"}, "--cagrad-c"),
    ("cagrad", {"cagrad_c": "much"}, "--cagrad-c"),
    ("graddrop", {"leak": "1.5"}, "--leak"),
    ("graddrop", {"leak": "0,-1"}, "--leak"),
    ("graddrop", {"leak": ""}, "--leak"),
    ("mgda", {"mgda_norm": "l3"}, "--mgda-norm"),
    ("nash", {"nash_max_norm": "-1"}, "--nash-max-norm"),
    ("nash", {"nash_update_every": "0"}, "--nash-update-every"),
    ("nash", {"nash_update_every": "1.5"}, "--nash-update-every"),
    ("imtl", {"imtl_mode": "both"}, "--imtl-mode"),
    ("aligned", {"aligned_scale": "max"}, "--aligned-scale"),
])
def test_bad_options_are_rejected_naming_the_flag(name, values, flag):
    with pytest.raises(ConfigError) as caught:
        SCHEDULERS.get(name).options.parse(values)
    assert flag in str(caught.value)


def test_good_options_parse():
    assert SCHEDULERS.get("graddrop").options.parse({"leak": "0,1,0.5"}).leak == (0, 1, 0.5)
    assert SCHEDULERS.get("cagrad").options.parse({}).cagrad_c == 0.4
    assert SCHEDULERS.get("mgda").options.parse({}).mgda_norm == "loss+"
    nash = SCHEDULERS.get("nash").options.parse({})
    assert (nash.nash_max_norm, nash.nash_update_every) == (1.0, 1)
    entry, variant = resolve("imtl-g")
    assert entry.name == "imtl" and entry.options(**variant).imtl_mode == "gradient"


def make(name, tasks, **values):
    entry, variant = resolve(name)
    infos = [TaskInfo(t.name, t.kind, t.depth, 10) for t in tasks]
    return entry.load()(entry.options(**{**variant, **values}), infos, 0)


def test_graddrop_leak_needs_one_value_or_one_per_task():
    tasks = [TaskSpec(n, "classification", 17, 13, num_classes=3) for n in "abc"]
    with pytest.raises(DstError, match="--leak"):
        make("graddrop", tasks, leak=(0.0, 1.0))
    assert make("graddrop", tasks, leak=(0.0, 1.0, 0.5)).leak == {"a": 0.0, "b": 1.0, "c": 0.5}


@pytest.mark.parametrize("name", ["graddrop", "mgda"])
def test_representation_methods_refuse_models_without_one_shared_tensor(name):
    tasks = [TaskSpec("a", "classification", 9, 5, num_classes=3),
             TaskSpec("b", "classification", 17, 13, num_classes=3)]
    model = SharedEncoderNet(tasks, 1, 1 / 16)
    scheduler = make(name, tasks)
    with pytest.raises(DstError, match=f"{name}.*several depths"):
        scheduler.attach(model, torch.optim.Adam(model.parameters()))

    stl = SingleTaskNets(tasks, lambda some: SharedEncoderNet(some, 1, 1 / 16))
    with pytest.raises(DstError, match=name):
        make(name, tasks).attach(stl, torch.optim.Adam(stl.parameters()))


# --- On a network ------------------------------------------------------------------------------


def three_task_net():
    torch.manual_seed(0)
    tasks = [TaskSpec(n, "classification", 17, 13, num_classes=3) for n in ("a", "b", "c")]
    return tasks, SharedEncoderNet(tasks, 1, 1 / 16)


@pytest.mark.parametrize("present", [("a", "c"), ("b",)], ids=["two", "one"])
@pytest.mark.parametrize("name", NAMES)
def test_an_absent_task_takes_no_part(name, present):
    tasks, model = three_task_net()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = make(name, tasks)
    scheduler.attach(model, optimizer)

    # Task b labels rows 0-2, a and c rows 3-7; the tasks not in `present` have no labels.
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (8, 1, 32, 32), dtype=torch.uint8, generator=g)
    rows = {"a": torch.arange(3, 8), "b": torch.arange(0, 3), "c": torch.arange(3, 8)}
    requests = {t: TaskRequest(rows[t], True) for t in present}
    targets = {t: torch.randint(0, 3, (len(rows[t]),), generator=g) for t in present}
    if scheduler.needs_representation:
        outputs, rep = model.forward_split(images, requests)
    else:
        outputs, rep = model(images, requests), None
    losses = {t: per_sample_loss(tasks[0], outputs[t], targets[t]).mean() for t in present}

    optimizer.zero_grad(set_to_none=True)
    ctx = StepContext(2, 0, model, optimizer, {t: len(rows[t]) for t in present},
                      representations=rep)
    scheduler.backward(losses, ctx)

    for t in ("a", "b", "c"):
        grads = [p.grad for p in model.task_parameters(t)]
        if t in present:
            assert all(gr is not None and torch.isfinite(gr).all() for gr in grads), t
        else:
            assert all(gr is None for gr in grads), t
    for t, log_scale in getattr(scheduler, "log_scale", {}).items():  # IMTL-L's s_t
        assert (log_scale.grad is None) == (t not in present), t
    shared = [p.grad for p in model.shared_parameters()]
    assert all(gr is not None and torch.isfinite(gr).all() for gr in shared)
    assert any(gr.abs().sum() > 0 for gr in shared)
    optimizer.step()

    rows_out = scheduler.end_epoch(2, {t: 1.0 for t in "abc"})
    for t in present:
        assert math.isfinite(rows_out[t]["w"])


@pytest.mark.parametrize("name, options", [(n, {}) for n in NAMES]
                         + [("nash", {"nash_update_every": 2})],
                         ids=list(NAMES) + ["nash-update-every-2"])
def test_trains_one_tiny_epoch(omniglot_tiny, tmp_path, name, options):
    from dstcli.train import train

    entry, variant = resolve(name)
    config = tiny_config(omniglot_tiny, tmp_path / "run", scheduler=name,
                         scheduler_options=entry.options(**{**variant, **options}))
    run_dir = train(config, progress=False)

    with open(run_dir / "epochs.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["phase"] == "train"]
    assert rows
    for row in rows:
        assert math.isfinite(float(row["V"])), row
        assert math.isfinite(float(row["w"])), row


def test_nash_state_survives_a_checkpoint():
    tasks, _ = three_task_net()
    scheduler = make("nash", tasks)
    scheduler.alpha, scheduler.steps = {"a": 0.5, "b": 2.0}, 7
    restored = make("nash", tasks)
    restored.load_state_dict(scheduler.state_dict())
    assert (restored.alpha, restored.steps) == ({"a": 0.5, "b": 2.0}, 7)


def batch_losses(tasks, model, split):
    g = torch.Generator().manual_seed(2)
    images = torch.randint(0, 256, (6, 1, 32, 32), dtype=torch.uint8, generator=g)
    requests = {t.name: TaskRequest(torch.arange(6), True) for t in tasks}
    if split:
        outputs, rep = model.forward_split(images, requests)
    else:
        outputs, rep = model(images, requests), None
    losses = {t.name: per_sample_loss(t, outputs[t.name],
                                      torch.randint(0, 3, (6,), generator=g)).mean()
              for t in tasks}
    return losses, rep


@pytest.mark.parametrize("name, values, scale", [
    ("cagrad", {"cagrad_c": 0.0}, 1 / 3),  # c = 0: the mean gradient
    ("graddrop", {"leak": (1.0,)}, 1.0),  # every task leaks: the plain sum
])
def test_gradients_reach_the_right_parameters(name, values, scale):
    """The written gradients equal those of `scale * sum_t L_t`, computed directly, on the
    shared parameters; every head gets its own task's plain gradient."""
    tasks, model = three_task_net()
    losses, _ = batch_losses(tasks, model, split=False)
    expected_shared = torch.autograd.grad(scale * sum(losses.values()),
                                          model.shared_parameters(), retain_graph=True)
    expected_heads = {t: torch.autograd.grad(losses[t], model.task_parameters(t),
                                             retain_graph=True) for t in losses}

    scheduler = make(name, tasks, **values)
    optimizer = torch.optim.Adam(model.parameters())
    scheduler.attach(model, optimizer)
    losses, rep = batch_losses(tasks, model, split=scheduler.needs_representation)
    scheduler.backward(losses, StepContext(2, 0, model, optimizer, {}, representations=rep))

    for p, expected in zip(model.shared_parameters(), expected_shared, strict=True):
        torch.testing.assert_close(p.grad, expected, rtol=1e-4, atol=1e-7)
    for t, grads in expected_heads.items():
        for p, expected in zip(model.task_parameters(t), grads, strict=True):
            torch.testing.assert_close(p.grad, expected, rtol=1e-4, atol=1e-7)


def pair_batch_losses(data, model, split):
    """The mean loss of every task on the first 16 training pairs (labelled rows only)."""
    from dstcli.data.shards import ShardDataset

    batch = ShardDataset(data, "train").__getitems__(list(range(16)))
    requests, targets = {}, {}
    for t in data.tasks:
        rows = torch.nonzero(batch["Z"][t.name]).squeeze(1)
        if rows.numel():
            requests[t.name] = TaskRequest(rows, True)
            targets[t.name] = batch["labels"][t.name][rows]
    if split:
        outputs, cuts = model.forward_split(batch["images"], requests)
    else:
        outputs, cuts = model(batch["images"], requests), None
    specs = {t.name: t for t in data.tasks}
    return {t: per_sample_loss(specs[t], outputs[t], targets[t]).mean() for t in outputs}, cuts


@pytest.mark.parametrize("leak", [1.0, 0.0])
def test_graddrop_on_the_bilateral_network_works_on_each_encoder(pairs_tiny, leak):
    """Each encoder's output is cut and read by the tasks of its input (matching by both).
    With every task leaking, every parameter gets the plain sum's gradient; without, the
    heads and the shared decoder still do, and only the encoders' gradients are masked."""
    from dstcli.data.shards import open_prepared
    from dstcli.models.bilateral import BilateralNet

    data = open_prepared(pairs_tiny)
    torch.manual_seed(0)
    model = BilateralNet(list(data.tasks), data.channels, 1 / 16, tie=0.0,
                         input_size=data.input_size, norm="none")
    assert model.representation_readers() == [
        tuple(t.name for t in data.tasks if side in t.inputs) for side in (0, 1)]
    losses, _ = pair_batch_losses(data, model, split=False)
    params = [p for p in model.parameters()]
    expected = torch.autograd.grad(sum(losses.values()), params, allow_unused=True)

    scheduler = make("graddrop", list(data.tasks), leak=(leak,))
    optimizer = torch.optim.Adam(model.parameters())
    scheduler.attach(model, optimizer)
    losses, cuts = pair_batch_losses(data, model, split=True)
    assert [set(c.readers) for c in cuts] == [set(r) for r in model.representation_readers()]
    scheduler.backward(losses, StepContext(2, 0, model, optimizer, {}, representations=cuts))

    encoders = {id(p) for p in model.encoders.parameters()}
    masked = 0
    for p, want in zip(params, expected, strict=True):
        if want is None:
            assert p.grad is None
        elif leak == 1.0 or id(p) not in encoders:
            torch.testing.assert_close(p.grad, want, rtol=1e-4, atol=1e-7)
        else:
            masked += not torch.allclose(p.grad, want, rtol=1e-4, atol=1e-7)
    assert masked == (0 if leak == 1.0 else masked) and (leak == 1.0 or masked > 0)
    keep = scheduler.end_epoch(2, {t: 1.0 for t in scheduler.names})
    assert all(0.0 <= keep[t]["keep"] <= 1.0 for t in losses)


def test_a_mid_epoch_state_keeps_the_epochs_log():
    import json

    tasks = [TaskSpec(n, "classification", 17, 13, num_classes=3) for n in "abc"]
    first = make("pcgrad", tasks)
    first.end_epoch(1, {"a": 1.0, "b": 1.0, "c": 1.0})
    first.record({"w": {"a": 1.0, "b": 3.0}})
    state = json.loads(json.dumps(first.state_dict()))  # as a checkpoint keeps it

    resumed = make("pcgrad", tasks)
    resumed.load_state_dict(state)
    resumed.record({"w": {"a": 2.0}})
    rows = resumed.end_epoch(2, {"a": 1.0, "b": 1.0, "c": 1.0})
    assert (rows["a"]["w"], rows["b"]["w"]) == (1.5, 3.0) and math.isnan(rows["c"]["w"])


def test_random_draws_depend_on_the_step_not_on_what_ran_before():
    """A run resumed mid-epoch draws, at each step, what the uninterrupted run drew."""
    tasks = [TaskSpec(n, "classification", 17, 13, num_classes=3) for n in "abc"]
    _, M = gram([1.0, 0.0], [-0.6, 0.8], [-0.5, -0.6])
    names = ["a", "b", "c"]
    ctx = StepContext(2, 2, None, None, {})
    continued = make("pcgrad", tasks)
    for step in (0, 1):
        continued.solve(M, names, StepContext(2, step, None, None, {}))
    assert np.array_equal(continued.solve(M, names, ctx), make("pcgrad", tasks).solve(M, names,
                                                                                      ctx))

    def encoder_grads(scheduler, steps):
        tasks_, model = three_task_net()
        optimizer = torch.optim.Adam(model.parameters())
        scheduler.attach(model, optimizer)
        for step in steps:
            optimizer.zero_grad(set_to_none=True)
            losses, cuts = batch_losses(tasks_, model, split=True)
            scheduler.backward(losses, StepContext(2, step, model, optimizer, {},
                                                   representations=cuts))
        return [p.grad.clone() for p in model.shared_parameters()]

    fresh = encoder_grads(make("graddrop", tasks), [2])
    after = encoder_grads(make("graddrop", tasks), [0, 1, 2])
    assert all(torch.equal(a, b) for a, b in zip(fresh, after, strict=True))


def test_nash_recovers_from_a_warm_start_far_from_the_solution():
    rng = np.random.default_rng(0)
    _, M = gram(*rng.normal(size=(4, 20)))
    alpha, found = nash_weights(M)
    assert found
    tasks = [TaskSpec(n, "classification", 17, 13, num_classes=3) for n in "abcd"]
    scheduler = make("nash", tasks)
    # As if task a's gradient had shrunk a hundredfold since the last solve.
    scheduler.alpha = dict(zip("abcd", (alpha * [100, 1, 1, 1]).tolist(), strict=True))
    again = scheduler.solve(M, list("abcd"), StepContext(2, 0, None, None, {}))
    assert scheduler.failures == 0
    np.testing.assert_allclose(again, alpha, rtol=1e-6)


def test_nash_between_solves_with_tasks_that_own_no_parameters():
    """The bilateral network's segmentation and matching tasks have no head of their own."""
    class Trunk(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.layer = torch.nn.Linear(4, 3)

        def shared_parameters(self):
            return list(self.layer.parameters())

        def task_parameters(self, task):
            return []

        def forward(self, x):
            return self.layer(x)

    tasks = [TaskSpec(n, "classification", 17, 13, num_classes=3) for n in "ab"]
    scheduler = make("nash", tasks, nash_update_every=2)
    model = Trunk()
    optimizer = torch.optim.Adam(model.parameters())
    scheduler.attach(model, optimizer)
    for step in (0, 1):  # a solve, then a step between solves
        optimizer.zero_grad(set_to_none=True)
        out = model(torch.randn(5, 4, generator=torch.Generator().manual_seed(step)))
        losses = {"a": out[:, 0].pow(2).mean(), "b": (out[:, 1] - 1).pow(2).mean()}
        scheduler.backward(losses, StepContext(2, step, model, optimizer, {}))
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_the_gram_matrix_is_summed_in_double_precision():
    # Two nearly parallel bf16 gradients: a bf16 product would round their difference away.
    g = torch.linspace(-1, 1, 4096)
    G = torch.stack([g, g + 1e-2 * torch.sin(40 * g)]).to(torch.bfloat16)  # (2, D)
    exact = (G.double() @ G.double().T).numpy()
    np.testing.assert_array_equal(gram_matrix(G), exact)


@pytest.mark.parametrize("name, values", [
    ("pcgrad", {}), ("cagrad", {"cagrad_c": 0.5}), ("aligned", {}), ("imtl-g", {}),
    ("nash", {"nash_max_norm": 0.0}),
])
def test_the_shared_parameters_get_the_weighted_sum_of_the_task_gradients(name, values):
    """Away from the settings where a method changes nothing: the shared gradient is
    `sum_t w_t g_t`, with w the method's solution on the same Gram matrix."""
    from dstcli.schedulers.gradient import task_gradients

    tasks, model = three_task_net()
    losses, _ = batch_losses(tasks, model, split=False)
    shared = model.shared_parameters()
    G = task_gradients(list(losses.values()), shared, [[] for _ in losses])  # (K, D)
    ctx = StepContext(2, 0, model, None, {})
    weights = make(name, tasks, **values).combine(gram_matrix(G), list(losses), ctx)
    expected = torch.as_tensor(weights, dtype=G.dtype) @ G

    scheduler = make(name, tasks, **values)
    optimizer = torch.optim.Adam(model.parameters())
    scheduler.attach(model, optimizer)
    model.zero_grad(set_to_none=True)
    losses, _ = batch_losses(tasks, model, split=False)
    scheduler.backward(losses, StepContext(2, 0, model, optimizer, {}))
    written = torch.cat([p.grad.reshape(-1) for p in shared])
    torch.testing.assert_close(written, expected, rtol=1e-4, atol=1e-7)
    assert not np.allclose(weights, weights[0])  # a case where the method does something
