"""The bilateral network of the paper's Figure 4: a fingerprint and a latent, two encoders.

Each input has its own VGG16 encoder; soft parameter sharing ties them with a penalty
`tie * sum ||theta_P - theta_L||^2` (`regularization()`, added to every training step's loss).
Orientation heads read each encoder's convolution 13 (depth 17); the two segmentation decoders
are one decoder with shared weights (depth 26), as the paper says; matching compares the two
encoders' outputs at depth 13 with the contrastive loss of Eq. 20 and has no layer of its own.

Tasks say which image they read through `TaskSpec.inputs`: (0,) the fingerprint, (1,) the
latent, (0, 1) both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dstcli.apps.base import TaskSpec
from dstcli.models.heads import ConvDecoder, FullyConnectedHead
from dstcli.models.multitask import RepresentationSplit, TaskRequest, cut
from dstcli.models.vgg import CONV_COUNT, VGG16Encoder


class BilateralNet(nn.Module):
    def __init__(self, tasks: list[TaskSpec], in_channels: int, width: float, tie: float,
                 input_size: tuple[int, int], norm: str = "none"):
        super().__init__()
        self.tasks = {t.name: t for t in tasks}
        self.tie = tie
        self.encoders = nn.ModuleList([VGG16Encoder(in_channels, width, norm)
                                       for _ in range(2)])
        # Both start from the same weights, as both start from ImageNet's in the paper: the
        # penalty then only keeps them close, it does not first pull two inits together.
        self.encoders[1].load_state_dict(self.encoders[0].state_dict())
        channels = self.encoders[0].channels
        hidden = max(16, round(256 * width))
        self.heads = nn.ModuleDict()
        self.decoder: ConvDecoder | None = None
        for t in tasks:
            if len(t.inputs) == 1 and t.inputs[0] not in (0, 1):
                raise ValueError(f"task {t.name}: inputs {t.inputs} name no image of a pair")
            if t.kind == "classification":
                self.heads[t.name] = FullyConnectedHead(channels[t.branch - 1], t.num_classes,
                                                        hidden)
            elif t.kind == "segmentation" and self.decoder is None:
                self.decoder = ConvDecoder(channels[t.branch - 1], (1, *input_size), width)
            elif t.kind not in ("segmentation", "contrastive"):
                raise ValueError(f"the bilateral network has no head for task kind {t.kind!r} "
                                 f"(task {t.name})")

    def task_depth(self, task: str) -> int:
        spec = self.tasks[task]
        if spec.kind == "classification":
            return spec.branch + self.heads[task].depth
        if spec.kind == "segmentation":
            return spec.branch + self.decoder.depth
        return CONV_COUNT  # matching reads the encoders' outputs

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters more than one task trains: both encoders and the shared decoder."""
        shared = list(self.encoders.parameters())
        return shared + (list(self.decoder.parameters()) if self.decoder is not None else [])

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        """Parameters only this task trains (none for segmentation and matching)."""
        return list(self.heads[task].parameters()) if task in self.heads else []

    def head_parameters(self, task: str) -> list[nn.Parameter]:
        """The parameters between an encoder's output and the task's output: its head, the
        decoder (shared by the two segmentation tasks, which each send it their gradient),
        or none (matching compares the encoders' outputs directly)."""
        if self.tasks[task].kind == "segmentation" and self.decoder is not None:
            return list(self.decoder.parameters())
        return self.task_parameters(task)

    def representation_readers(self) -> list[tuple[str, ...]] | None:
        """One shared representation per encoder, its last convolution, read by the tasks of
        that input (matching reads both); None when a task branches elsewhere (--branch)."""
        if any(t.branch != CONV_COUNT for t in self.tasks.values()):
            return None
        return [tuple(t for t, spec in self.tasks.items() if side in spec.inputs)
                for side in (0, 1)]

    def last_shared_weights(self) -> list[torch.Tensor]:
        """GradNorm's W: no single layer serves every task, so the last convolution of each
        encoder together; every task reaches at least one of them."""
        return [encoder.convs[-1].weight for encoder in self.encoders]

    def regularization(self) -> torch.Tensor | None:
        """The soft-sharing penalty tying the two encoders' weights; none when the tasks read
        one image only (a single-task network of an orientation or segmentation task), whose
        other encoder then stays idle instead of pulling on the one in use."""
        if self.tie == 0 or len({s for t in self.tasks.values() for s in t.inputs}) < 2:
            return None
        pairs = zip(self.encoders[0].parameters(), self.encoders[1].parameters(), strict=True)
        return self.tie * sum(((a - b) ** 2).sum() for a, b in pairs)

    def forward(self, images: torch.Tensor, requests: dict[str, TaskRequest]
                ) -> dict[str, torch.Tensor]:
        """images: (B, 2, C, H, W), the fingerprint and the latent of each pair."""
        return self._run(images, requests, split=False)[0]

    def forward_split(self, images: torch.Tensor, requests: dict[str, TaskRequest]
                      ) -> tuple[dict[str, torch.Tensor], list[RepresentationSplit]]:
        """Like forward, with each encoder's output cut (see RepresentationSplit): the heads,
        the decoder and matching read leaf copies."""
        if self.representation_readers() is None:
            raise ValueError("a task branches before the last convolution: the encoders' "
                             "outputs are not the only representations the tasks read")
        return self._run(images, requests, split=True)

    def _run(self, images: torch.Tensor, requests: dict[str, TaskRequest], split: bool
             ) -> tuple[dict[str, torch.Tensor], list[RepresentationSplit]]:
        features: dict[int, dict[int, torch.Tensor]] = {}
        for side in (0, 1):
            readers = {t: r for t, r in requests.items() if side in self.tasks[t].inputs}
            if not readers:
                continue
            taps = {self.tasks[t].branch for t in readers} | {CONV_COUNT}
            trained = [self.tasks[t].branch if self.tasks[t].kind != "contrastive"
                       else CONV_COUNT for t, r in readers.items() if r.train]
            with torch.set_grad_enabled(bool(trained) and torch.is_grad_enabled()):
                features[side] = self.encoders[side](images[:, side], taps,
                                                     grad_upto=max(trained, default=0))
        cuts = []
        for side in features if split else ():
            cuts.append(cut(features[side][CONV_COUNT],
                            (t for t in requests if side in self.tasks[t].inputs)))
            features[side] = {**features[side], CONV_COUNT: cuts[-1].z_heads}

        outputs = {}
        for task, request in requests.items():
            with torch.set_grad_enabled(request.train and torch.is_grad_enabled()):
                outputs[task] = self._task_output(self.tasks[task], features, request.rows,
                                                  request.train)
        return outputs, cuts

    def _task_output(self, spec: TaskSpec, features, rows: torch.Tensor, train: bool
                     ) -> torch.Tensor:
        def tap(side: int, depth: int) -> torch.Tensor:
            x = features[side][depth][rows]
            return x if train else x.detach()

        if spec.kind == "classification":
            return self.heads[spec.name](tap(spec.inputs[0], spec.branch))
        if spec.kind == "segmentation":
            return self.decoder(tap(spec.inputs[0], spec.branch)).squeeze(1)  # (n, H, W)
        embeddings = [F.normalize(tap(side, CONV_COUNT).mean(dim=(2, 3)), dim=1)
                      for side in (0, 1)]  # 2 x (n, C)
        return torch.linalg.vector_norm(embeddings[0] - embeddings[1], dim=1)  # (n,) D_i
