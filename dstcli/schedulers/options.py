"""Typed, validated options for the schedulers, and the registry entry that ties them together.

torch-free: the CLI builds its scheduler flags from these dataclasses at start-up. Each field is
one flag (`loss_norm` -> `--loss-norm`); its metadata holds the help text. A method's
implementation lives in its own module and is imported only when a run starts.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin

from dstcli.errors import ConfigError


def opt(default: Any, help: str) -> Any:  # noqa: A002 - mirrors typer.Option
    return field(default=default, metadata={"help": help})


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


@dataclass(frozen=True)
class SchedulerOptions:
    """Base of every method's options. Subclasses add fields made with `opt(...)`."""

    def problems(self) -> list[str]:
        """What is wrong with these values, each naming its flag; empty when valid."""
        return []

    @classmethod
    def option_fields(cls) -> list[dataclasses.Field]:
        return list(dataclasses.fields(cls))

    @classmethod
    def parse(cls, given: dict[str, str]) -> SchedulerOptions:
        """Build from flag strings ({field: text}); raise ConfigError with every problem."""
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        problems: list[str] = []
        for f in cls.option_fields():
            if f.name not in given:
                continue
            try:
                values[f.name] = _convert(given[f.name], hints[f.name])
            except ValueError as e:
                problems.append(f"{flag_name(f.name)} {given[f.name]!r}: {e}")
        if problems:
            raise ConfigError(problems)
        options = cls(**values)
        if options.problems():
            raise ConfigError(options.problems())
        return options

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SchedulerOptions:
        hints = typing.get_type_hints(cls)
        values = {k: tuple(v) if get_origin(hints[k]) is tuple else v
                  for k, v in data.items() if k in hints}
        return cls(**values)


def _convert(text: str, hint: Any) -> Any:
    """Turn one flag's text into its field's type: float, int, bool, str, Literal, tuples."""
    origin = get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in get_args(hint) if a is not type(None)]
        if text.lower() in ("", "none"):
            return None
        return _convert(text, inner[0])
    if origin is Literal:
        choices = get_args(hint)
        if text not in choices:
            raise ValueError(f"choose one of {', '.join(map(str, choices))}")
        return text
    if origin is tuple:
        item = get_args(hint)[0]
        parts = [p for p in text.replace(" ", ",").split(",") if p]
        return tuple(_convert(p, item) for p in parts)
    if hint is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError("expected true or false")
    if hint is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError("expected a number") from None
    if hint is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError("expected a whole number") from None
    return hint(text)


@dataclass(frozen=True)
class SchedulerEntry:
    """A registered method: its options, where its implementation lives, what it is."""

    name: str
    options: type[SchedulerOptions]
    impl: str  # "module:Class", imported when a run starts
    summary: str
    stl: bool = False  # trains one network per task
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)

    def load(self) -> type:
        module, _, cls = self.impl.partition(":")
        return getattr(importlib.import_module(module), cls)


LOSS_NORM_HELP = (
    "initial: w_t = mean_s V[1,s] / V[1,t] equalises the starting losses (Eq. 17); "
    "none: w_t = 1."
)
