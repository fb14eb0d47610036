"""`dst train`: train a network of the paper under any registered scheduler.

The app and scheduler choices, and one flag per scheduler option, come from the registries, so
a method added to `dstcli/schedulers/specs/` appears here with its options and help.
"""

from __future__ import annotations

import inspect
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from dstcli.cli.common import err, user_errors
from dstcli.errors import ConfigError, DstError

# Flags of the command itself; a scheduler option may not take one of these names.
FIXED = ("app", "scheduler", "data", "out", "preset", "epochs", "seed", "batch_size", "lr",
         "device", "workers", "checkpoint_every", "encoder_weights", "encoder_norm", "branch",
         "init_passes", "model", "tasks", "tie", "margin", "amp", "channels_last", "compile",
         "resume")


def scheduler_flags() -> dict[str, dict[str, Any]]:
    """Every scheduler option as one flag across the registry: {field: {help, helps, methods}},
    with `helps` {method: its help text} and `methods` {method: its default}."""
    from dstcli.schedulers import SCHEDULERS

    flags: dict[str, dict[str, Any]] = {}
    for name in SCHEDULERS.names():
        for f in SCHEDULERS.get(name).options.option_fields():
            if f.name in FIXED:
                raise RuntimeError(f"scheduler {name}: option {f.name} clashes with a dst flag")
            entry = flags.setdefault(f.name, {"helps": {}, "methods": {}})
            entry["helps"][name] = f.metadata.get("help", "")
            entry["methods"][name] = f.default

    for entry in flags.values():
        entry["help"] = shared_help(entry["helps"])
    return flags


def shared_help(helps: dict[str, str]) -> str:
    """One help text for a flag from each method's own ({method: text}): the text once when
    they agree, else every text prefixed with the methods it is for ("adaptive: ...;
    early-stop: ..."), since the methods may want different things under the same name."""
    methods_of: dict[str, list[str]] = {}
    for method, text in helps.items():
        methods_of.setdefault(text, []).append(method)

    if len(methods_of) == 1:
        return next(iter(methods_of))
    return "; ".join(f"{', '.join(methods)}: {text.rstrip('.')}"
                     for text, methods in methods_of.items()) + "."


def _signature() -> tuple[inspect.Signature, dict[str, Any]]:
    from dstcli.apps import APPS
    from dstcli.models.presets import PRESETS
    from dstcli.schedulers import all_names

    app_enum = Enum("AppName", {n: n for n in APPS.names()}, type=str)
    scheduler_enum = Enum("SchedulerName", {n: n for n in all_names()}, type=str)
    preset_enum = Enum("PresetName", {n: n for n in PRESETS}, type=str)
    opt = typer.Option
    fixed: list[tuple[str, Any, Any]] = [
        ("app", app_enum | None, opt(None, help="The app (dataset family); default: the "
                                     "one --data was prepared for.")),
        ("scheduler", scheduler_enum | None, opt(None, help="Training method or a named "
                                                 "variant of one. [default: mtl]")),
        ("data", Path | None, opt(None, help="Prepared folder (dst prepare ... --out).")),
        ("out", Path | None, opt(None, help="Run folder to create.")),
        ("preset", preset_enum | None, opt(None, help="Size preset; must match the data. "
                                           "[default: the data's]")),
        ("epochs", int | None, opt(None, help="Training epochs after the pass without weight "
                                   "update. [default: 10]")),
        ("seed", int | None, opt(None, help="Seed of initialisation, data order and gates. "
                                 "[default: 0]")),
        ("batch_size", int | None, opt(None, help="Samples per step. [default: 16]")),
        ("lr", float | None, opt(None, help="Adam learning rate. [default: 5e-5]")),
        ("device", str | None, opt(None, help="auto (CUDA when present), cpu, cuda or cuda:N. "
                                   "[default: auto]")),
        ("workers", int | None, opt(None, help="Data-loading processes. [default: 0]")),
        ("checkpoint_every", int | None, opt(None, help="Also checkpoint every N steps "
                                             "inside an epoch. [default: 0, epoch ends only]")),
        ("encoder_weights", Path | None, opt(None, help="torchvision VGG16 ImageNet weights "
                                             "file to start the encoder from.")),
        ("encoder_norm", str | None, opt(None, help="none: the paper's plain VGG16; batch: "
                                         "batch norm after each convolution. [default: the "
                                         "preset's: batch for cpu-tiny and cpu, none for "
                                         "paper]")),
        ("branch", list[str] | None, opt(None, help="Move a task's head to another encoder "
                                         "convolution, TASK=CONV (Table 7: gender=7); "
                                         "repeatable.")),
        ("model", str | None, opt(None, help="Another registered network: segnet or unet "
                                  "(single-task segmentation, Table 5, with --scheduler stl). "
                                  "[default: the app's]")),
        ("tasks", str | None, opt(None, help="Train only these tasks, comma-separated. "
                                  "[default: every task of the data]")),
        ("init_passes", int | None, opt(None, help="Average V[1] over this many "
                                        "initialisations (section 4.4.2); training starts "
                                        "from the first. [default: 1]")),
        ("tie", float | None, opt(None, help="Bilateral network: soft parameter sharing "
                                  "coefficient on sum ||theta_P - theta_L||^2. [default: 1e-3]")),
        ("margin", float | None, opt(None, help="Bilateral network: margin of the contrastive "
                                     "matching loss (Eq. 20). [default: 1.0]")),
        ("amp", str | None, opt(None, help="Mixed precision of the forward pass: none, bf16, "
                                "or fp16 with loss scaling (CUDA; not for the methods that "
                                "read gradients: GradNorm and gradient surgery). "
                                "[default: none]")),
        ("channels_last", bool | None, opt(None, "--channels-last", help="Model and images "
                                           "in channels-last layout (faster convolutions on "
                                           "CUDA and on most CPUs).")),
        ("compile", bool | None, opt(None, "--compile", help="torch.compile the encoder(s); "
                                     "the first steps are slow while it compiles.")),
        ("resume", Path | None, opt(None, help="Continue the run in this folder from its "
                                    "last checkpoint.")),
    ]
    params, hints = [], {}
    for name, hint, default in fixed:
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                                        default=default, annotation=hint))
        hints[name] = hint
    for name, info in sorted(scheduler_flags().items()):
        methods = ", ".join(f"{m} (default {_shown(d)})" for m, d in info["methods"].items())
        help_text = f"{info['help']} Scheduler option of: {methods}."
        hint = Annotated[str | None, opt(help=help_text, rich_help_panel="Scheduler options")]
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=hint))
        hints[name] = hint
    return inspect.Signature(params), hints


def _shown(default: Any) -> str:
    """A default as one would type it: tuples comma-separated."""
    if isinstance(default, tuple):
        return ",".join(str(v) for v in default)
    return str(default)


def register(app: typer.Typer) -> None:
    signature, hints = _signature()

    @user_errors
    def train(**given: Any) -> None:
        """Train a multi-task network; epoch 1 measures every task's loss without updating."""
        given = {k: (v.value if isinstance(v, Enum) else v) for k, v in given.items()
                 if v is not None}
        run_training(given)

    train.__signature__ = signature
    train.__annotations__ = dict(hints)
    del train.__wrapped__  # Typer must read the signature above, not the wrapped function's
    app.command("train")(train)


def run_training(given: dict[str, Any]) -> Path:
    """Resolve the configuration from the flags given (or the run folder), validate, train."""
    from dstcli.config import TrainConfig

    option_names = set(scheduler_flags())
    scheduler_given = {k: str(v) for k, v in given.items() if k in option_names}
    given = {k: v for k, v in given.items() if k not in option_names}

    if "tasks" in given:
        given["tasks"] = tuple(t.strip() for t in given["tasks"].split(",") if t.strip())
    resume = given.pop("resume", None)
    if resume is not None:
        config = TrainConfig.load(Path(resume) / "config.json")
        differs = _differences(config, given, scheduler_given)
        if differs:
            raise ConfigError([f"{d}; a resumed run keeps its saved configuration, start a "
                               "new run (--out) to change it" for d in differs])
        try:
            config.validate()
        except ConfigError as e:
            # The values come from the run folder, not the command line: say where to fix them.
            raise ConfigError([f"{p} (saved in {Path(resume) / 'config.json'})"
                               for p in e.problems]) from None
    else:
        config = _new_config(given, scheduler_given)
        config.validate()

    from dstcli.train import train

    train(config, resume=resume is not None, console=err)
    return Path(config.out)


def _new_config(given: dict[str, Any], scheduler_given: dict[str, str]) -> Any:
    from dstcli.config import TrainConfig
    from dstcli.data.shards import open_prepared
    from dstcli.schedulers import resolve

    problems = [f"--{k.replace('_', '-')} is required" for k in ("data", "out")
                if k not in given]
    if problems:
        raise ConfigError(problems)
    # The app and the preset default to those the data was prepared with.
    if "app" not in given or "preset" not in given:
        try:
            prepared = open_prepared(Path(given["data"]))
            given.setdefault("app", prepared.app)
            given.setdefault("preset", prepared.manifest["image"]["preset"])
        except DstError as e:
            raise ConfigError([f"--data: {e}"]) from None

    scheduler = given.get("scheduler", "mtl")
    entry, variant = resolve(scheduler)
    own = {f.name for f in entry.options.option_fields()}
    problems = [
        f"--{k.replace('_', '-')} is not an option of scheduler {entry.name}"
        + (f" (its options: {', '.join('--' + o.replace('_', '-') for o in sorted(own))})"
           if own else " (it has none)") for k in sorted(set(scheduler_given) - own)
    ]
    problems += _variant_contradictions(scheduler, entry, variant, scheduler_given)

    try:
        options = entry.options.parse({**{k: str(v) for k, v in variant.items()},
                                       **{k: v for k, v in scheduler_given.items() if k in own}})
    except ConfigError as e:
        problems += e.problems
        options = entry.options(**variant)
    values = {k: (str(v) if isinstance(v, Path) else v) for k, v in given.items()}
    if "branch" in values:
        values["branch"] = tuple(values["branch"])

    config = TrainConfig(**values, scheduler_options=options).resolved()

    # Everything at once: the scheduler's options and the rest of the configuration.
    problems += [p for p in config.problems() if p not in problems]
    if problems:
        raise ConfigError(problems)
    return config


def _variant_contradictions(scheduler: str, entry: Any, variant: dict[str, Any],
                            scheduler_given: dict[str, str]) -> list[str]:
    """A flag that changes a value the named variant sets: config.json would name a variant
    the run does not follow. Repeating the variant's own value is fine."""
    found = []
    for key, value in sorted(variant.items()):
        if key not in scheduler_given:
            continue
        try:
            typed = entry.options.convert({key: scheduler_given[key]})[key]
        except ConfigError:
            continue  # parsing the options names this flag and what it expects
        if typed != value:
            flag = f"--{key.replace('_', '-')}"
            found.append(f"{flag} {scheduler_given[key]} contradicts --scheduler {scheduler}, "
                         f"which sets {key} to {_shown(value)}: drop {flag}, or use "
                         f"--scheduler {entry.name} {flag} {scheduler_given[key]}")
    return found


def _differences(config: Any, given: dict[str, Any], scheduler_given: dict[str, str]
                 ) -> list[str]:
    saved = config.to_json()
    found = []
    for key, value in given.items():
        value = str(value) if isinstance(value, Path) else value
        value = tuple(value) if isinstance(value, list) else value
        if key in saved and saved[key] != value:
            found.append(f"--{key.replace('_', '-')} {value} differs from the saved "
                         f"{saved[key]!r}")
    options = saved.get("scheduler_options") or {}
    found += [f"--{key.replace('_', '-')} is not an option of this run's scheduler "
              f"{config.scheduler}" for key in scheduler_given if key not in options]

    # Each flag given is converted alone and compared with its saved value: the flags given
    # are only part of the options, so checking them as a set would miss the saved ones
    # (e.g. report a required --stl-results as missing).
    for key in [k for k in scheduler_given if k in options]:
        try:
            value = type(config.scheduler_options).convert({key: scheduler_given[key]})[key]
        except ConfigError as e:
            found += e.problems
            continue
        if value != getattr(config.scheduler_options, key):
            found.append(f"--{key.replace('_', '-')} {scheduler_given[key]} differs from the "
                         f"saved {options[key]!r}")
    return found
