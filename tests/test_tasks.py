"""Losses and metrics of every task kind, on numbers worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from dstcli.apps.base import TASK_KINDS, TaskSpec
from dstcli.tasks import MetricAccumulator, equal_error_rate, per_sample_loss, roc_curve


def spec(kind: str, **kw) -> TaskSpec:
    return TaskSpec("t", kind, 17, 13, **kw)


def test_eer_of_a_fixed_score_list():
    # Genuine distances 0.1, 0.3, 0.6; impostors 0.2, 0.5, 0.8, 0.9. Accepting D <= t:
    #   t = 0.3: FAR 1/4, FRR 1/3;  t = 0.5: FAR 1/2, FRR 1/3 -> the rates cross between.
    # FAR - FRR goes from -1/12 to 1/6, zero at 1/3 of the way: EER = 1/4 + (1/3)(1/4) = 1/3.
    distances = [0.1, 0.3, 0.6, 0.2, 0.5, 0.8, 0.9]
    genuine = [1, 1, 1, 0, 0, 0, 0]
    assert equal_error_rate(distances, genuine) == pytest.approx(100 / 3)

    thresholds, far, frr = roc_curve(distances, genuine)
    assert far[0] == 0 and frr[0] == 1 and far[-1] == 1 and frr[-1] == 0
    assert equal_error_rate([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == 0.0


def test_contrastive_loss_is_eq_20():
    task = spec("contrastive", scale=1.0)
    distance = torch.tensor([0.5, 0.5, 1.5])
    genuine = torch.tensor([1.0, 0.0, 0.0])
    # genuine: D^2/2 = 0.125; impostor inside the margin: (1 - 0.5)^2 / 2; outside: 0.
    assert per_sample_loss(task, distance, genuine).tolist() == [0.125, 0.125, 0.0]


def test_landmark_loss_and_error_count_visible_points_only():
    task = spec("landmarks", output_shape=(2, 2), scale=0.5)
    target = torch.tensor([[[0.2, 0.2, 1.0], [0.9, 0.9, 0.0]]])  # second point not visible
    output = torch.tensor([[[0.5, 0.6], [0.0, 0.0]]])
    # Eq. 14: (0.3^2 + 0.4^2) over the 2 visible coordinates.
    assert per_sample_loss(task, output, target).item() == pytest.approx(0.25 / 2)
    metric = MetricAccumulator(task)
    metric.update(output, target)
    # Distance 0.5 over a face-box width of 0.5: 100%.
    assert metric.result()["error"] == pytest.approx(100.0)


def test_pose_and_denoise_errors():
    pose = MetricAccumulator(spec("pose", output_shape=(3,), scale=math.pi))
    pose.update(torch.tensor([[0.1, 0.2, 0.3]]), torch.tensor([[0.0, 0.0, 0.0]]))
    assert pose.result()["error"] == pytest.approx(100 * 0.2 / math.pi)

    task = spec("denoise", output_shape=(1, 2, 2))
    clean = torch.full((1, 1, 2, 2), 255, dtype=torch.uint8)
    output = torch.full((1, 1, 2, 2), 0.9)
    assert per_sample_loss(task, output, clean).item() == pytest.approx(0.01)
    denoise = MetricAccumulator(task)
    denoise.update(output, clean)
    assert denoise.result()["error"] == pytest.approx(10.0)


def test_segmentation_iou():
    task = spec("segmentation")
    metric = MetricAccumulator(task)
    truth = torch.tensor([[[1, 1], [0, 0]]], dtype=torch.uint8)
    logits = torch.tensor([[[5.0, -5.0], [5.0, -5.0]]])
    metric.update(logits, truth)  # intersection 1, union 3
    assert metric.result()["iou"] == pytest.approx(100 / 3)
    loss = per_sample_loss(task, logits, truth)
    assert loss.shape == (1,) and loss.item() > 0


@pytest.mark.parametrize("kind", TASK_KINDS)
def test_every_kind_has_a_loss_and_a_metric(kind):
    shapes = {"classification": ((2, 3), torch.tensor([0, 2])),
              "landmarks": ((2, 3, 2), torch.rand(2, 3, 3).round()),
              "pose": ((2, 3), torch.zeros(2, 3)),
              "denoise": ((2, 1, 4, 4), torch.zeros(2, 1, 4, 4, dtype=torch.uint8)),
              "segmentation": ((2, 4, 4), torch.ones(2, 4, 4, dtype=torch.uint8)),
              "contrastive": ((2,), torch.tensor([1.0, 0.0]))}
    shape, target = shapes[kind]
    task = spec(kind, num_classes=3)
    output = torch.rand(shape)
    assert per_sample_loss(task, output, target).shape == (2,)
    metric = MetricAccumulator(task)
    metric.update(output, target)
    again = MetricAccumulator(task)
    again.load_state_dict(metric.state_dict())
    assert again.result() == metric.result() and math.isfinite(metric.result()["error"])


def test_metrics_pool_over_batches_of_uneven_size():
    """A split's figure pools every sample, not the mean of its batches' figures."""
    seg = MetricAccumulator(spec("segmentation"))
    # Batch 1: intersection 1, union 1. Batch 2: intersection 0, union 3.
    seg.update(torch.tensor([[[5.0, -5.0]]]), torch.tensor([[[1, 0]]], dtype=torch.uint8))
    seg.update(torch.tensor([[[5.0, 5.0]], [[-5.0, -5.0]]]),
               torch.tensor([[[0, 0]], [[1, 0]]], dtype=torch.uint8))
    assert seg.result()["iou"] == pytest.approx(25.0)  # 1 / 4, not (100 + 0) / 2

    pose = MetricAccumulator(spec("pose", output_shape=(3,), scale=math.pi))
    pose.update(torch.full((1, 3), 0.3), torch.zeros(1, 3))
    pose.update(torch.zeros(3, 3), torch.zeros(3, 3))
    assert pose.result()["error"] == pytest.approx(100 * 0.3 / 4 / math.pi)


def test_iou_of_an_empty_prediction_and_truth_is_100():
    seg = MetricAccumulator(spec("segmentation"))
    seg.update(torch.full((1, 2, 2), -5.0), torch.zeros((1, 2, 2), dtype=torch.uint8))
    assert seg.result()["iou"] == pytest.approx(100.0)


def test_eer_direction_ties_and_unbalanced_counts():
    # A small distance means genuine: the reversed list is the worst case.
    assert equal_error_rate([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == pytest.approx(100.0)
    # Every distance tied: one threshold accepts all or none, so FAR and FRR meet at 50%.
    assert equal_error_rate([0.5] * 5, [1, 0, 0, 0, 0]) == pytest.approx(50.0)
    # One genuine among four impostors, the genuine pair ranked second nearest: at t = 0.2,
    # FAR 1/4 and FRR 0; at t = 0.1, FAR 1/4 and FRR 1. FAR - FRR crosses 0 on the way.
    assert equal_error_rate([0.1, 0.2, 0.3, 0.4, 0.5], [0, 1, 0, 0, 0]) == pytest.approx(25.0)
