"""The model registry: a builder per network of the paper, chosen by an app's `model` key.

A builder takes the tasks (from the prepared data's manifest), the input channels, a preset
and `stl` (one network per task instead of one shared encoder), and returns an `nn.Module`
that answers `model(images, requests)` (see `dstcli.models.multitask`).
"""

from collections.abc import Callable
from pathlib import Path

from torch import nn

from dstcli.apps.base import TaskSpec
from dstcli.models.multitask import SharedEncoderNet, SingleTaskNets
from dstcli.models.presets import Preset
from dstcli.registry import Registry

ModelBuilder = Callable[..., nn.Module]
MODELS: Registry[ModelBuilder] = Registry("model")


@MODELS.register("unilateral-vgg16")
def unilateral_vgg16(
    tasks: list[TaskSpec],
    in_channels: int,
    preset: Preset,
    stl: bool = False,
    encoder_weights: Path | None = None,
) -> nn.Module:
    """The face and character network: a shared VGG16 encoder, heads at their branch points."""
    if stl:
        model = SingleTaskNets(tasks, in_channels, preset.width)
        encoders = [net.encoder for net in model.nets.values()]
    else:
        model = SharedEncoderNet(tasks, in_channels, preset.width)
        encoders = [model.encoder]
    if encoder_weights is not None:
        for encoder in encoders:
            encoder.load_imagenet(Path(encoder_weights))
    return model
