"""Size presets: the paper's architecture at other widths and input sizes.

A preset never changes the layer structure (so task depths stay those of the paper); it scales
the channel counts and picks the input resolution each app is prepared at.
"""

from dataclasses import dataclass

from dstcli.errors import DstError


@dataclass(frozen=True)
class Preset:
    name: str
    width: float  # multiplier on VGG16's channel counts (64 .. 512)
    sizes: dict[str, tuple[int, int]]  # app -> (height, width) of the network input
    purpose: str
    # Batch norm after each convolution by default? The paper's VGG16 has none and starts
    # from ImageNet; the small presets train from scratch, where the plain stack stalls.
    encoder_norm: str = "none"

    def input_size(self, app: str) -> tuple[int, int]:
        if app not in self.sizes:
            raise DstError(f"preset {self.name!r} defines no input size for app {app!r}")
        return self.sizes[app]

    def channels(self, base: int) -> int:
        return max(2, round(base * self.width))


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "cpu-tiny",
            1 / 16,
            {"omniglot": (32, 32), "aflw": (32, 32), "mtfl": (32, 32), "fingerprint": (48, 40)},
            "tests: seconds per epoch on a laptop CPU",
            encoder_norm="batch",
        ),
        Preset(
            "cpu",
            1 / 4,
            {"omniglot": (64, 64), "aflw": (64, 64), "mtfl": (64, 64), "fingerprint": (96, 80)},
            "benchmarks on a 2-core CPU",
            encoder_norm="batch",
        ),
        Preset(
            "paper",
            1.0,
            {
                "omniglot": (105, 105),
                "aflw": (224, 224),
                "mtfl": (224, 224),
                "fingerprint": (340, 280),
            },
            "the paper's full width and resolution, for GPUs",
        ),
    )
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise DstError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]
