"""Task heads: fully connected heads at depth branch + 4, and the denoising decoder.

A head's depth is its number of weight layers, so that a task's depth (the paper's d_t, Tables
1 and 2) is the branch point's convolution plus the head's layers: 13 + 4 = 17 for the
classification and regression heads, 13 + 13 = 26 for the decoder.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dstcli.apps.base import TaskSpec

FC_LAYERS = 4
# The decoder mirrors VGG16's 13 convolutions: output channels per block (at width 1), each
# block but the last followed by a 2x upsampling, ending at the input resolution.
DECODER_BLOCKS = ((512, 512, 512), (512, 512, 256), (256, 256, 128), (128, 64), (64, 64))


class FullyConnectedHead(nn.Module):
    """Global average pooling, then four fully connected layers (three hidden)."""

    def __init__(self, in_channels: int, outputs: int, hidden: int,
                 output_shape: tuple[int, ...] = ()):
        super().__init__()
        self.output_shape = output_shape
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.layers = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_channels, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, outputs),
        )
        linears = [m for m in self.layers if isinstance(m, nn.Linear)]
        for layer in linears:
            # He initialisation keeps the signal's scale through the ReLU layers, so the
            # encoder gets a usable gradient from the first step even without pretraining.
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)
        nn.init.normal_(linears[-1].weight, std=0.01)  # start from near-constant predictions

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out = self.layers(self.pool(features))  # (n, outputs)
        return out.view(-1, *self.output_shape) if self.output_shape else out

    @property
    def depth(self) -> int:
        return sum(isinstance(m, nn.Linear) for m in self.layers)


class ConvDecoder(nn.Module):
    """Thirteen 3x3 convolutions mirroring the encoder, upsampling back to the input size.

    The last convolution gives the output's channels: through a sigmoid for denoising (a clean
    image in [0, 1], the target of Eq. 16), as logits for segmentation (Eq. 19).
    """

    def __init__(self, in_channels: int, out_shape: tuple[int, int, int], width: float,
                 sigmoid: bool = False):
        super().__init__()
        self.out_shape = out_shape
        self.sigmoid = sigmoid
        channels = [max(2, round(c * width)) for block in DECODER_BLOCKS for c in block]
        channels[-1] = out_shape[0]
        self.convs = nn.ModuleList()
        self.upsample_after: set[int] = set()
        prev, index = in_channels, 0
        for b, block in enumerate(DECODER_BLOCKS):
            for _ in block:
                self.convs.append(nn.Conv2d(prev, channels[index], kernel_size=3, padding=1))
                prev, index = channels[index], index + 1
            if b < len(DECODER_BLOCKS) - 1:
                self.upsample_after.add(index)
        for conv in self.convs:
            nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        # Each upsampling returns to the size the encoder had before the matching pool: the
        # pools round down, so for a side not divisible by 16 (48x40, 340x280) doubling would
        # fall short and a final stretch would shift the map; this way it aligns as SegNet's
        # unpooling does.
        h, w = out_shape[1:]
        stages = [(h, w)]
        for _ in range(len(DECODER_BLOCKS) - 2):
            h, w = h // 2, w // 2
            stages.append((h, w))
        self.upsample_sizes = stages[::-1]  # smallest first

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = features  # (n, C_13, H/16, W/16), sides rounded down at each pool
        sizes = iter(self.upsample_sizes)
        for index, conv in enumerate(self.convs, start=1):
            x = conv(x)
            if index < len(self.convs):
                x = F.relu(x, inplace=True)
            if index in self.upsample_after:
                x = F.interpolate(x, size=next(sizes), mode="bilinear", align_corners=False)
        return torch.sigmoid(x) if self.sigmoid else x  # (n, C, H, W)

    @property
    def depth(self) -> int:
        return len(self.convs)


def build_head(task: TaskSpec, in_channels: int, width: float) -> nn.Module:
    hidden = max(16, round(256 * width))
    if task.kind == "classification":
        return FullyConnectedHead(in_channels, task.num_classes, hidden)
    if task.kind in ("landmarks", "pose"):
        shape = tuple(task.output_shape)
        return FullyConnectedHead(in_channels, math.prod(shape), hidden, shape)
    if task.kind == "denoise":
        return ConvDecoder(in_channels, tuple(task.output_shape), width, sigmoid=True)
    raise ValueError(f"no head for task kind {task.kind!r} (task {task.name})")
