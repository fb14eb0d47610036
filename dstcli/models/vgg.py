"""The VGG16 encoder of the paper, with a tap after every convolution so heads can branch.

Thirteen 3x3 convolutions in five blocks (torchvision's configuration "D", no batch norm), each
followed by ReLU; max pooling closes the first four blocks. The fifth pool is left out: every
head reads a convolution's output directly, and the deepest branch point is convolution 13.
A preset scales the channel counts; the layer structure, and so every task's depth, is fixed.

`norm="batch"` puts batch normalisation after each convolution (torchvision's vgg16_bn
layout). It adds no weight layer, so depths are unchanged. The small presets use it: trained
from scratch, the plain 13-convolution stack at 1/16 or 1/4 width stays at the class prior for
epochs on Omniglot (docs/models.md has the measurement), where the paper starts from ImageNet.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from dstcli.errors import DstError

VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
CONV_COUNT = sum(len(b) for b in VGG16_BLOCKS)
# ImageNet statistics, which the pretrained filters expect; a grey image uses their mean.
RGB_MEAN, RGB_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def conv_channels(width: float) -> list[int]:
    """Output channels of convolutions 1..13 at a width multiplier."""
    return [max(2, round(c * width)) for block in VGG16_BLOCKS for c in block]


ENCODER_NORMS = ("none", "batch")


def grey_first_layer(weight: torch.Tensor, bias: torch.Tensor, channels: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """ImageNet's first convolution for grey input: the response the RGB network gives to the
    grey image (g, g, g), away from the border.

    The RGB network sees (g - m_c) / s_c per colour; the grey encoder sees (g - m) / s with the
    colours' mean m and s. So the grey filter is s * sum_c W_c / s_c (shared out over
    `channels` identical grey channels) and the bias gains sum W_c (m - m_c) / s_c. At the
    border the two differ a little: zero padding stands for the mean grey here, for each
    colour's mean there.
    """
    mean, std = torch.tensor(RGB_MEAN), torch.tensor(RGB_STD)  # (3,)
    per_colour = weight / std.view(1, 3, 1, 1)  # W_c / s_c: (out, 3, k, k)
    grey = std.mean() * per_colour.sum(dim=1, keepdim=True) / channels
    shift = (per_colour * (mean.mean() - mean).view(1, 3, 1, 1)).sum(dim=(1, 2, 3))  # (out,)
    return grey.expand(-1, channels, -1, -1).contiguous(), bias + shift


class VGG16Encoder(nn.Module):
    def __init__(self, in_channels: int, width: float = 1.0, norm: str = "none"):
        super().__init__()
        if norm not in ENCODER_NORMS:
            raise ValueError(f"encoder norm {norm!r}: use one of {ENCODER_NORMS}")
        self.width = width
        self.norm = norm
        self.in_channels = in_channels
        self.channels = conv_channels(width)
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.pool_after: set[int] = set()
        prev, depth = in_channels, 0
        for b, block in enumerate(VGG16_BLOCKS):
            for _ in block:
                out = self.channels[depth]
                self.convs.append(nn.Conv2d(prev, out, kernel_size=3, padding=1))
                self.norms.append(nn.BatchNorm2d(out) if norm == "batch" else nn.Identity())
                prev, depth = out, depth + 1
            if b < len(VGG16_BLOCKS) - 1:
                self.pool_after.add(depth)  # 1-based index of the conv a pool follows
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2, 2)
        mean, std = torch.tensor(RGB_MEAN), torch.tensor(RGB_STD)
        if in_channels != 3:
            mean, std = mean.mean().repeat(in_channels), std.mean().repeat(in_channels)
        self.register_buffer("mean", mean.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", std.view(1, -1, 1, 1), persistent=False)
        for conv in self.convs:
            # He initialisation (as torchvision's VGG): a plain 13-layer stack trains from
            # scratch only if the activations keep their scale through the depth.
            nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(conv.bias)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images, as the shards hold them, to the float input the filters expect."""
        return (images.float() / 255.0 - self.mean) / self.std

    def forward(self, x: torch.Tensor, taps: set[int], grad_upto: int | None = None
                ) -> dict[int, torch.Tensor]:
        """Features after the convolutions in `taps` (1-based), running no deeper than needed.

        Layers past `grad_upto` run without autograd: only tasks that do not train read them,
        so a graph there would be built for nothing.
        """
        upto = max(taps)
        grad = torch.is_grad_enabled()
        if x.dtype == torch.uint8:
            x = self.normalise(x)
        out: dict[int, torch.Tensor] = {}
        for depth, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True), start=1):
            with torch.set_grad_enabled(grad and (grad_upto is None or depth <= grad_upto)):
                x = self.relu(norm(conv(x)))
            if depth in taps:
                out[depth] = x  # (B, C_depth, H_depth, W_depth)
            if depth == upto:
                break
            if depth in self.pool_after:
                x = self.pool(x)
        return out

    def load_imagenet(self, path: Path) -> None:
        """Copy torchvision's VGG16 ImageNet weights (`vgg16-397923af.pth`) into the encoder."""
        path = Path(path)
        if not path.is_file():
            raise DstError(
                f"--encoder-weights {path}: no such file. dst never downloads weights: fetch "
                "torchvision's VGG16 ImageNet weights (vgg16-397923af.pth) on a machine with "
                "internet access and pass the file's path"
            )
        if self.width != 1.0:
            raise DstError(
                f"--encoder-weights needs the full-width network (--preset paper); this preset "
                f"has width {self.width:g}, whose layers have other shapes"
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable file gets the same advice
            raise DstError(f"--encoder-weights {path}: not a PyTorch state dict ({e})") from e
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        conv_keys = sorted(
            {k.rsplit(".", 1)[0] for k in state if k.startswith("features.")
             and k.endswith(".weight") and state[k].dim() == 4},
            key=lambda k: int(k.split(".")[1]),
        )
        norm_keys = sorted(
            {k.rsplit(".", 1)[0] for k in state if k.startswith("features.")
             and k.endswith(".running_mean")},
            key=lambda k: int(k.split(".")[1]),
        )
        if len(conv_keys) != CONV_COUNT:
            raise DstError(
                f"--encoder-weights {path}: expected the 13 convolutions of torchvision's "
                f"VGG16 ('features.N.weight'), found {len(conv_keys)}"
            )
        has_norm = len(norm_keys) == CONV_COUNT
        if has_norm != (self.norm == "batch"):
            want = "vgg16_bn (with batch norm)" if self.norm == "batch" else "plain vgg16"
            raise DstError(
                f"--encoder-weights {path} holds {'vgg16_bn' if has_norm else 'plain vgg16'} "
                f"weights but the encoder is {want}; pass the matching file or "
                f"--encoder-norm {'batch' if has_norm else 'none'}"
            )
        with torch.no_grad():
            for conv, key in zip(self.convs, conv_keys, strict=True):
                weight, bias = state[f"{key}.weight"], state[f"{key}.bias"]
                if conv is self.convs[0] and weight.shape[1] != self.in_channels:
                    weight, bias = grey_first_layer(weight, bias, self.in_channels)
                if weight.shape != conv.weight.shape:
                    raise DstError(f"--encoder-weights {path}: {key}.weight has shape "
                                   f"{tuple(weight.shape)}, the encoder needs "
                                   f"{tuple(conv.weight.shape)}")
                conv.weight.copy_(weight)
                conv.bias.copy_(bias)
            if has_norm:
                for norm, key in zip(self.norms, norm_keys, strict=True):
                    norm.load_state_dict({name: state[f"{key}.{name}"] for name in
                                          ("weight", "bias", "running_mean", "running_var",
                                           "num_batches_tracked") if f"{key}.{name}" in state},
                                         strict=False)
