"""Single-task segmentation networks for Table 5: SegNet and U-Net.

The paper compares its multi-task segmentation against "standard SegNet and U-Net", each
trained on one segmentation task. Both are built at a preset's width like the VGG16 networks:

- SegNet (Badrinarayanan et al., 2017): VGG16's 13 convolutions with batch norm, max pooling
  that keeps its indices, and a mirrored decoder of 13 convolutions that unpools with those
  indices; depth 26, the same as the paper's segmentation decoders.
- U-Net (Ronneberger et al., 2015): four levels of two convolutions down, two at the bottom,
  four levels up through a 2x2 transposed convolution and two convolutions on the skip
  connection's concatenation, then a 1x1 convolution; depth 23.

Each task reads the image its TaskSpec names (`inputs`), so on fingerprint pairs one network
segments the fingerprints and another the latents.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dstcli.apps.base import TaskSpec
from dstcli.models.heads import DECODER_BLOCKS
from dstcli.models.multitask import TaskRequest
from dstcli.models.vgg import RGB_MEAN, RGB_STD, VGG16_BLOCKS


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


def _normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> the ImageNet-normalised floats the VGG networks use (grey: their mean)."""
    x = images.float() / 255.0
    c = x.shape[1]
    mean = torch.tensor(RGB_MEAN if c == 3 else [sum(RGB_MEAN) / 3] * c, device=x.device)
    std = torch.tensor(RGB_STD if c == 3 else [sum(RGB_STD) / 3] * c, device=x.device)
    return (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


class SegNet(nn.Module):
    def __init__(self, in_channels: int, width: float):
        super().__init__()
        self.down = nn.ModuleList()
        prev = in_channels
        for block in VGG16_BLOCKS:
            layers = []
            for base in block:
                layers.append(_conv(prev, max(2, round(base * width))))
                prev = max(2, round(base * width))
            self.down.append(nn.Sequential(*layers))
        # The decoder's blocks mirror the encoder's; the last of its 13 convolutions is `out`.
        self.up = nn.ModuleList()
        for block in DECODER_BLOCKS:
            layers = []
            for base in block[:-1] if block is DECODER_BLOCKS[-1] else block:
                layers.append(_conv(prev, max(2, round(base * width))))
                prev = max(2, round(base * width))
            self.up.append(nn.Sequential(*layers))
        self.out = nn.Conv2d(prev, 1, 3, padding=1)

    @property
    def depth(self) -> int:
        return sum(isinstance(m, nn.Conv2d) for m in self.modules())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = _normalise(images)
        indices, sizes = [], []
        for block in self.down:
            x = block(x)
            sizes.append(x.shape[-2:])
            x, where = F.max_pool2d(x, 2, 2, return_indices=True)
            indices.append(where)
        for block in self.up:
            x = F.max_unpool2d(x, indices.pop(), 2, 2, output_size=sizes.pop())
            x = block(x)
        return self.out(x).squeeze(1)  # (n, H, W) logits


class UNet(nn.Module):
    def __init__(self, in_channels: int, width: float):
        super().__init__()
        c = [max(2, round(v * width)) for v in (64, 128, 256, 512, 1024)]
        self.down = nn.ModuleList()
        prev = in_channels
        for channels in c[:-1]:
            self.down.append(nn.Sequential(_conv(prev, channels), _conv(channels, channels)))
            prev = channels
        self.bottom = nn.Sequential(_conv(prev, c[-1]), _conv(c[-1], c[-1]))
        self.lift = nn.ModuleList()
        self.up = nn.ModuleList()
        prev = c[-1]
        for channels in reversed(c[:-1]):
            self.lift.append(nn.ConvTranspose2d(prev, channels, 2, stride=2))
            self.up.append(nn.Sequential(_conv(2 * channels, channels),
                                         _conv(channels, channels)))
            prev = channels
        self.out = nn.Conv2d(prev, 1, 1)

    @property
    def depth(self) -> int:
        return sum(isinstance(m, nn.Conv2d | nn.ConvTranspose2d) for m in self.modules())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = _normalise(images)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottom(x)
        for lift, block in zip(self.lift, self.up, strict=True):
            skip = skips.pop()
            x = lift(x)
            # Sizes not divisible by 16 lose a row in the pools: match the skip's size.
            x = F.interpolate(x, size=skip.shape[-2:]) if x.shape[-2:] != skip.shape[-2:] else x
            x = block(torch.cat([skip, x], dim=1))
        return self.out(x).squeeze(1)  # (n, H, W) logits


class SegmentationNets(nn.Module):
    """One segmentation network per task, each on the image its task reads."""

    ARCHITECTURES = {"segnet": SegNet, "unet": UNet}

    def __init__(self, tasks: list[TaskSpec], in_channels: int, width: float,
                 architecture: str):
        super().__init__()
        self.tasks = {t.name: t for t in tasks}
        self.nets = nn.ModuleDict({t.name: self.ARCHITECTURES[architecture](in_channels, width)
                                   for t in tasks})

    def task_depth(self, task: str) -> int:
        return self.nets[task].depth

    def shared_parameters(self) -> list[nn.Parameter]:
        return []

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        return list(self.nets[task].parameters())

    def forward(self, images: torch.Tensor, requests: dict[str, TaskRequest]
                ) -> dict[str, torch.Tensor]:
        outputs = {}
        for task, request in requests.items():
            # (B, P, C, H, W) for pair apps: the task's own image of the pair.
            side = images[:, self.tasks[task].inputs[0]] if images.dim() == 5 else images
            with torch.set_grad_enabled(request.train and torch.is_grad_enabled()):
                outputs[task] = self.nets[task](side[request.rows])
        return outputs
