"""Run configuration: one frozen dataclass, validated once, saved beside the results.

Resolution order: defaults here, then the command line, then `validate()`, which reports every
problem together, each naming its flag and the fix. `config.json` in the run folder is the
resolved configuration; `--resume` reads it back. torch-free.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dstcli.errors import ConfigError, DstError
from dstcli.records import write_json
from dstcli.schedulers.options import SchedulerOptions

CONFIG_VERSION = 1
# Not given in the paper. The encoders start equal, so the penalty starts at 0 and only holds
# them together; a margin of 1 suits distances between unit-length embeddings (at most 2).
BILATERAL_TIE = 1e-3
BILATERAL_MARGIN = 1.0
DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
AMP_MODES = ("none", "bf16", "fp16")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run. Field names follow the CLI flags."""

    app: str
    data: str  # prepared folder (`dst prepare ... --out`)
    out: str  # run folder
    scheduler: str = "mtl"  # as given: a method or a named variant (`gradnorm-1.5`)
    scheduler_options: SchedulerOptions | None = None  # resolved; None = the method's defaults
    preset: str = "cpu-tiny"
    epochs: int = 10  # training epochs, after the pass without weight update (epoch 1)
    seed: int = 0
    batch_size: int = 16  # the paper's face setting
    lr: float = 5e-5  # the paper's Adam learning rate
    device: str = "auto"
    workers: int = 0
    checkpoint_every: int = 0  # steps between mid-epoch checkpoints; 0: at epoch ends only
    encoder_weights: str | None = None
    encoder_norm: str | None = None  # "none" or "batch"; None: the preset's default
    # Heads moved to another branch point, "task=conv" (Table 7's small network: gender=7).
    branch: tuple[str, ...] = ()
    # Initialisations V[1] is averaged over (section 4.4.2); training starts from the first.
    init_passes: int = 1
    model: str | None = None  # a model registry name; None: the app's network
    tasks: tuple[str, ...] = ()  # train only these tasks; empty: every task of the data
    # The bilateral network's options (app fingerprint); None elsewhere.
    tie: float | None = None  # soft parameter sharing: coefficient of sum ||theta_P - theta_L||^2
    margin: float | None = None  # the contrastive loss's margin m (Eq. 20)
    # The speed flags (docs/scale.md); off by default, the device-dependent checks in train.
    amp: str = "none"  # autocast of the forward: none, bf16, or fp16 with loss scaling
    channels_last: bool = False  # convolutions in NHWC (faster with cuDNN and oneDNN)
    compile: bool = False  # torch.compile of the encoder(s)
    version: int = field(default=CONFIG_VERSION)

    def problems(self) -> list[str]:
        """Every problem with this configuration, each naming its flag and the fix."""
        from dstcli.apps import APPS
        from dstcli.models.presets import PRESETS
        from dstcli.schedulers import all_names

        found: list[str] = []
        if self.app not in APPS:
            found.append(f"--app {self.app!r} is unknown; choose one of: "
                         f"{', '.join(APPS.names())}")
        if self.scheduler not in all_names():
            found.append(f"--scheduler {self.scheduler!r} is unknown; choose one of: "
                         f"{', '.join(all_names())}")
        if self.preset not in PRESETS:
            found.append(f"--preset {self.preset!r} is unknown; choose one of: "
                         f"{', '.join(PRESETS)}")
        if self.epochs < 1:
            found.append(f"--epochs {self.epochs}: train for at least 1 epoch")
        if self.batch_size < 1:
            found.append(f"--batch-size {self.batch_size}: must be at least 1")
        if not self.lr > 0:
            found.append(f"--lr {self.lr}: the learning rate must be positive")
        if self.seed < 0:
            found.append(f"--seed {self.seed}: use a seed of 0 or more")
        if self.workers < 0:
            found.append(f"--workers {self.workers}: use 0 (load in the main process) or more")
        from dstcli.models import MODEL_NAMES

        if self.model is not None and self.model not in MODEL_NAMES:
            found.append(f"--model {self.model!r} is unknown; choose one of: "
                         f"{', '.join(MODEL_NAMES)} (default: the app's network)")
        if self.init_passes < 1:
            found.append(f"--init-passes {self.init_passes}: measure V[1] over at least 1 "
                         "initialisation")
        if self.checkpoint_every < 0:
            found.append(f"--checkpoint-every {self.checkpoint_every}: use 0 (at epoch ends "
                         "only) or a number of steps")
        if not DEVICE.match(self.device):
            found.append(f"--device {self.device!r}: use auto, cpu, cuda or cuda:N")
        if self.encoder_weights is not None and not Path(self.encoder_weights).is_file():
            found.append(f"--encoder-weights {self.encoder_weights}: no such file; dst never "
                         "downloads weights, pass the path of torchvision's VGG16 file")
        if self.encoder_norm not in (None, "none", "batch"):
            found.append(f"--encoder-norm {self.encoder_norm!r}: use none (the paper's VGG16) "
                         "or batch (batch norm after each convolution)")
        if self.tie is not None and self.tie < 0:
            found.append(f"--tie {self.tie}: the soft-sharing coefficient must be 0 or more")
        if self.margin is not None and not self.margin > 0:
            found.append(f"--margin {self.margin}: the contrastive margin must be positive")
        if self.app in APPS and APPS.get(self.app).input_kind != "pair":
            given = [f for f in ("tie", "margin") if getattr(self, f) is not None]
            found += [f"--{f} applies to the bilateral network of pair apps, not to app "
                      f"{self.app}" for f in given]
        if self.amp not in AMP_MODES:
            found.append(f"--amp {self.amp!r}: use none, bf16 or fp16 (CUDA)")
        if self.scheduler_options is not None:
            found += self.scheduler_options.problems()
        found += self._data_problems()
        return found

    def _data_problems(self) -> list[str]:
        from dstcli.data.shards import open_prepared
        from dstcli.models.presets import PRESETS

        try:
            data = open_prepared(Path(self.data))
        except DstError as e:
            return [f"--data: {e}"]
        found = []
        if data.app != self.app:
            found.append(f"--data {self.data} was prepared for app {data.app!r}, not "
                         f"{self.app!r}; pass --app {data.app} or other data")
        if self.preset in PRESETS and self.app in PRESETS[self.preset].sizes:
            want = PRESETS[self.preset].sizes[self.app]
            have = data.input_size
            if tuple(want) != tuple(have):
                found.append(
                    f"--preset {self.preset} trains at {want[0]}x{want[1]} but --data holds "
                    f"{have[0]}x{have[1]} images (prepared with --preset "
                    f"{data.manifest['image'].get('preset')}); prepare again with --preset "
                    f"{self.preset} or train with the data's preset"
                )
        found += branch_problems(self.branch, data.tasks)
        names = [t.name for t in data.tasks]
        unknown = [t for t in self.tasks if t not in names]
        if unknown:
            found.append(f"--tasks: no task {', '.join(map(repr, unknown))} in --data; its "
                         f"tasks are {', '.join(names)}")
        for task in data.tasks:
            if self.tasks and task.name not in self.tasks:
                continue
            if data.labelled_count(task.name, "train") == 0:
                found.append(f"task {task.name} has no labelled training sample in --data "
                             f"{self.data}: its loss and P_c are undefined; prepare with "
                             "labels for it or leave the task out")
        return found

    def validate(self) -> TrainConfig:
        problems = self.problems()
        if problems:
            raise ConfigError(problems)
        return self

    def resolved(self) -> TrainConfig:
        """Every default that depends on other fields filled in: what config.json records."""
        return self.resolve_scheduler().resolve_model_options()

    def resolve_model_options(self) -> TrainConfig:
        """Fill the model's defaults (the preset's encoder norm; the bilateral network's tie
        and margin for a pair app), so config.json shows them."""
        from dstcli.apps import APPS
        from dstcli.models.presets import PRESETS

        config = self
        if config.encoder_norm is None and config.preset in PRESETS:
            config = dataclasses.replace(config,
                                         encoder_norm=PRESETS[config.preset].encoder_norm)
        if config.app not in APPS or APPS.get(config.app).input_kind != "pair":
            return config
        return dataclasses.replace(
            config, tie=BILATERAL_TIE if config.tie is None else config.tie,
            margin=BILATERAL_MARGIN if config.margin is None else config.margin)

    def resolve_scheduler(self) -> TrainConfig:
        """Fill `scheduler_options` with the method's defaults and the variant's values."""
        from dstcli.schedulers import resolve

        if self.scheduler_options is not None:
            return self
        entry, variant = resolve(self.scheduler)
        return dataclasses.replace(self, scheduler_options=entry.options(**variant))

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if self.scheduler_options is not None:
            out["scheduler_options"] = self.scheduler_options.to_json()
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainConfig:
        from dstcli.schedulers import resolve

        values = {k: v for k, v in data.items() if k in {f.name for f in dataclasses.fields(cls)}}
        values["branch"] = tuple(values.get("branch", ()))
        values["tasks"] = tuple(values.get("tasks", ()))
        if values.get("scheduler_options") is not None:
            entry, _ = resolve(values["scheduler"])
            values["scheduler_options"] = entry.options.from_json(values["scheduler_options"])
        return cls(**values)

    def save(self, path: Path) -> None:
        write_json(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        try:
            return cls.from_json(json.loads(Path(path).read_text()))
        except FileNotFoundError:
            raise DstError(f"{path} not found: is this a run folder made by `dst train`?") from None
        except (json.JSONDecodeError, TypeError) as e:
            raise DstError(f"{path} is not a valid run configuration ({e})") from e


# Task kinds whose head is fully connected and can read any convolution; a decoder cannot.
MOVABLE_KINDS = ("classification", "landmarks", "pose")


def parse_branch(entry: str) -> tuple[str, int]:
    """`task=conv` -> (task, conv); ValueError with the reason otherwise."""
    task, sep, conv = entry.partition("=")
    if not sep or not task or not conv.isdigit():
        raise ValueError("expected TASK=CONV, e.g. gender=7")
    return task, int(conv)


def branch_problems(entries: tuple[str, ...], tasks: list) -> list[str]:
    by_name = {t.name: t for t in tasks}
    found = []
    for entry in entries:
        try:
            task, conv = parse_branch(entry)
        except ValueError as e:
            found.append(f"--branch {entry!r}: {e}")
            continue
        if task not in by_name:
            found.append(f"--branch {entry!r}: no task {task!r}; the tasks are "
                         f"{', '.join(by_name)}")
        elif by_name[task].kind not in MOVABLE_KINDS:
            found.append(f"--branch {entry!r}: a {by_name[task].kind} head cannot move; only "
                         f"{', '.join(MOVABLE_KINDS)} heads can")
        elif not 1 <= conv <= 13:
            found.append(f"--branch {entry!r}: the encoder's convolutions are 1..13")
    return found
