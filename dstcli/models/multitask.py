"""Multi-task networks: one shared encoder with a head per task, or one network per task (STL).

Both answer the same call, `model(images, requests)`, where `requests` maps a task to the rows
of the batch it is computed on (its labelled samples) and whether it trains. A task that does
not train is computed under `torch.no_grad()` on detached features, so it keeps no autograd
graph and its parameters get no gradient: this is how a dropped task costs no backward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dstcli.apps.base import TaskSpec
from dstcli.models.heads import build_head
from dstcli.models.vgg import VGG16Encoder


@dataclass(frozen=True)
class TaskRequest:
    rows: torch.Tensor  # (n,) indices into the batch
    train: bool  # False: measured only, under no_grad


@dataclass
class RepresentationSplit:
    """A shared representation z cut in two, for methods that edit its gradient.

    `z` keeps the graph to the encoder; the heads read `z_heads`, a leaf copy, so each task's
    gradient with respect to z can be taken through its head alone (a partial backward) and
    the combined gradient sent into the encoder with `z.backward(grad)`. A network may have
    several such tensors (the bilateral network: one per encoder); `readers` are the tasks
    whose outputs read this one.
    """

    z: torch.Tensor  # (B, C, H, W), attached to the encoder
    z_heads: torch.Tensor  # the same values, a leaf that requires grad
    readers: tuple[str, ...]


def cut(z: torch.Tensor, readers) -> RepresentationSplit:
    return RepresentationSplit(z, z.detach().requires_grad_(z.requires_grad), tuple(readers))


class SharedEncoderNet(nn.Module):
    """Hard parameter sharing: the VGG16 encoder, and each task's head at its branch point."""

    def __init__(self, tasks: list[TaskSpec], in_channels: int, width: float,
                 norm: str = "none"):
        super().__init__()
        self.tasks = list(tasks)
        self.encoder = VGG16Encoder(in_channels, width, norm)
        self.heads = nn.ModuleDict({
            t.name: build_head(t, self.encoder.channels[t.branch - 1], width) for t in tasks
        })
        self.branch = {t.name: t.branch for t in tasks}

    def task_depth(self, task: str) -> int:
        return self.branch[task] + self.heads[task].depth

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters())

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        return list(self.heads[task].parameters())

    def head_parameters(self, task: str) -> list[nn.Parameter]:
        """The parameters between the shared representation and the task's output."""
        return self.task_parameters(task)

    def representation_readers(self) -> list[tuple[str, ...]] | None:
        """The tasks reading each shared representation `forward_split` cuts: one tensor read
        by every task, or None when the heads branch at several depths."""
        return None if self.representation_depth() is None else [tuple(self.branch)]

    def representation_depth(self) -> int | None:
        """The convolution every head reads, or None when heads branch at several depths."""
        depths = set(self.branch.values())
        return depths.pop() if len(depths) == 1 else None

    def last_shared_weights(self) -> list[torch.Tensor]:
        """GradNorm's W: the weight of the last convolution every task reads, the one at the
        shallowest branch point, since the deeper ones serve only some tasks."""
        return [self.encoder.convs[min(self.branch.values()) - 1].weight]

    def forward(self, images: torch.Tensor, requests: dict[str, TaskRequest]
                ) -> dict[str, torch.Tensor]:
        return self._run(images, requests, split=False)[0]

    def forward_split(self, images: torch.Tensor, requests: dict[str, TaskRequest]
                      ) -> tuple[dict[str, torch.Tensor], list[RepresentationSplit]]:
        """Like forward, with the heads reading a leaf copy of the shared representation."""
        if self.representation_depth() is None:
            raise ValueError("the heads branch at several depths: there is no single shared "
                             "representation")
        outputs, split = self._run(images, requests, split=True)
        return outputs, [split] if split is not None else []

    def _run(self, images, requests, split: bool):
        if not requests:
            return {}, None
        taps = {self.branch[t] for t in requests}
        trained = [self.branch[t] for t, r in requests.items() if r.train]
        with torch.set_grad_enabled(bool(trained) and torch.is_grad_enabled()):
            features = self.encoder(images, taps, grad_upto=max(trained, default=0))
        rep = None
        if split:
            depth = self.representation_depth()
            z = features[depth]
            rep = cut(z, self.branch)
            features = {**features, depth: rep.z_heads}
        outputs = {}
        for task, request in requests.items():
            feats = features[self.branch[task]]
            if request.train:
                outputs[task] = self.heads[task](feats[request.rows])
            else:
                with torch.no_grad():
                    outputs[task] = self.heads[task](feats.detach()[request.rows])
        return outputs, rep


class SingleTaskNets(nn.Module):
    """Single-task learning: an independent network per task, each trained on its own labels.

    Every network sees only its task's labelled rows of a batch, so one epoch of the shared
    data order is one epoch for every task, as if each had been trained alone. `make_net`
    builds the multi-task network for a list of one task.
    """

    def __init__(self, tasks: list[TaskSpec], make_net):
        super().__init__()
        self.tasks = list(tasks)
        self.nets = nn.ModuleDict({t.name: make_net([t]) for t in tasks})

    def task_depth(self, task: str) -> int:
        return self.nets[task].task_depth(task)

    def shared_parameters(self) -> list[nn.Parameter]:
        return []

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        return list(self.nets[task].parameters())

    def regularization(self) -> torch.Tensor | None:
        terms = [r for net in self.nets.values()
                 if (r := getattr(net, "regularization", lambda: None)()) is not None]
        return sum(terms) if terms else None

    def forward(self, images: torch.Tensor, requests: dict[str, TaskRequest]
                ) -> dict[str, torch.Tensor]:
        outputs = {}
        for task, request in requests.items():
            if request.rows.numel() == 0:
                continue
            own = {task: TaskRequest(torch.arange(request.rows.numel(),
                                                  device=request.rows.device), request.train)}
            outputs[task] = self.nets[task](images[request.rows], own)[task]
        return outputs
