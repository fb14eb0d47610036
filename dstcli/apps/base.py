"""What an app is: its tasks, its protocol and how its model is built.

This module is torch-free so that the CLI can list apps and tasks without importing torch.
"""

from dataclasses import asdict, dataclass, field
from typing import Any

# Task kinds the losses, heads and metrics know (dstcli.tasks, dstcli.models); an app picks one
# per task. What `labels/<task>` holds in the shards for each kind:
#   classification  int64 ()            class index, -1 where unlabelled
#   landmarks       float32 (L, 3)      x, y in [0, 1] of the network input (x right, y down)
#                                       and visibility (1 visible, 0 not: the p_j of Eq. 14)
#   pose            float32 (3,)        roll, pitch, yaw in radians
#   denoise         uint8 (C, H, W)     the clean image; the input is its noisy copy
#   segmentation    uint8 (H, W)        the foreground mask, 1 inside
#   contrastive     float32 ()          1 for a genuine pair, 0 for an impostor (Eq. 20)
TASK_KINDS = ("classification", "landmarks", "pose", "denoise", "segmentation", "contrastive")


@dataclass(frozen=True)
class TaskSpec:
    """One task of an app, as the model, the losses and the metrics need it."""

    name: str
    kind: str
    depth: int  # layers from the input to the task's output (the paper's d_t)
    branch: int  # the encoder convolution (1..13) the task's head reads
    num_classes: int | None = None  # classification only
    output_shape: tuple[int, ...] = ()  # regression and dense tasks: the network's output
    class_names: tuple[str, ...] = field(default=(), repr=False)
    # The metric's divisor where a kind needs one: landmarks, the face-box width in units of
    # the input width (normalised mean error); pose, pi (angle error as a share of pi).
    scale: float = 1.0
    # The images of a sample the task reads: (0,) for single-image apps; in a pair app,
    # (0,) the fingerprint, (1,) the latent, (0, 1) both (matching).
    inputs: tuple[int, ...] = (0,)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["output_shape"] = list(self.output_shape)
        out["class_names"] = list(self.class_names)
        out["inputs"] = list(self.inputs)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TaskSpec":
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        fields["output_shape"] = tuple(fields.get("output_shape", ()))
        fields["class_names"] = tuple(fields.get("class_names", ()))
        fields["inputs"] = tuple(fields.get("inputs", (0,)))
        return cls(**fields)


class App:
    """A dataset family of the paper: its tasks, how they are prepared, which network runs them.

    Subclasses set `name`, `model` (a key of the model registry) and `description`, and
    implement `prepare`. Tasks come from the prepared data's manifest, so one app serves any
    subset of its tasks (8 Omniglot alphabets or 50).
    """

    name: str = ""
    model: str = ""
    description: str = ""
    input_kind: str = "image"  # "image" or "pair" (bilateral networks)

    def protocol(self) -> dict[str, Any]:
        from dstcli.data.protocols import load_protocol

        return load_protocol(self.name)
