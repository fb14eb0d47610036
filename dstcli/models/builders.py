"""The model registry: a builder per network of the paper, chosen by an app's `model` key.

A builder takes the tasks (from the prepared data's manifest), the input channels, a preset,
`stl` (one network per task instead of one shared encoder), an optional weights file, and the
model options of the run (`input_size`, `tie`, `encoder_norm`), and returns an `nn.Module`
that answers `model(images, requests)` (see `dstcli.models.multitask`).
"""

from collections.abc import Callable
from pathlib import Path

from torch import nn

from dstcli.apps.base import TaskSpec
from dstcli.models.bilateral import BilateralNet
from dstcli.models.multitask import SharedEncoderNet, SingleTaskNets
from dstcli.models.presets import Preset
from dstcli.models.segmentation import SegmentationNets
from dstcli.models.vgg import VGG16Encoder
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
    encoder_norm: str = "none",
    **_: object,
) -> nn.Module:
    """The face and character network: a shared VGG16 encoder, heads at their branch points."""
    def make(some: list[TaskSpec]) -> SharedEncoderNet:
        return SharedEncoderNet(some, in_channels, preset.width, encoder_norm)

    model = SingleTaskNets(tasks, make) if stl else make(tasks)
    _load_encoders(model, encoder_weights)
    return model


@MODELS.register("bilateral-vgg16")
def bilateral_vgg16(
    tasks: list[TaskSpec],
    in_channels: int,
    preset: Preset,
    stl: bool = False,
    encoder_weights: Path | None = None,
    input_size: tuple[int, int] = (0, 0),
    tie: float = 0.0,
    encoder_norm: str = "none",
    **_: object,
) -> nn.Module:
    """The fingerprint network: two VGG16 encoders tied softly, for pairs of images."""
    def make(some: list[TaskSpec]) -> BilateralNet:
        return BilateralNet(some, in_channels, preset.width, tie, tuple(input_size),
                            encoder_norm)

    model = SingleTaskNets(tasks, make) if stl else make(tasks)
    _load_encoders(model, encoder_weights)
    return model


def _load_encoders(model: nn.Module, encoder_weights: Path | None) -> None:
    if encoder_weights is None:
        return
    for module in model.modules():
        if isinstance(module, VGG16Encoder):
            module.load_imagenet(Path(encoder_weights))


def _segmentation(architecture: str):
    def build(tasks: list[TaskSpec], in_channels: int, preset: Preset, stl: bool = False,
              encoder_weights: Path | None = None, **_: object) -> nn.Module:
        from dstcli.errors import DstError

        if not stl:
            raise DstError(f"--model {architecture} is a single-task network: train it with "
                           "--scheduler stl")
        others = [t.name for t in tasks if t.kind != "segmentation"]
        if others:
            raise DstError(f"--model {architecture} segments; the task(s) {', '.join(others)} "
                           "are not segmentation tasks: pass --tasks with the segmentation "
                           "tasks only")
        if encoder_weights is not None:
            # Known gap (docs/models.md): SegNet's encoder has vgg16_bn's shape and could load
            # it; until then Table 5 at the paper preset compares it untrained.
            raise DstError(f"--encoder-weights: {architecture} is trained from scratch here "
                           "(loading ImageNet weights into it is not implemented); drop the "
                           "flag for this run")
        return SegmentationNets(tasks, in_channels, preset.width, architecture)

    build.__doc__ = f"{architecture}: one single-task segmentation network per task (Table 5)."
    return build


MODELS.register("segnet")(_segmentation("segnet"))
MODELS.register("unet")(_segmentation("unet"))
