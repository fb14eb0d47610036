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
    """Base of every method's options. Subclasses add fields made with `opt(...)` and their
    own value checks in `checks()`.

    A field typed `Literal[...]` (or `Literal[...] | None`) has a fixed set of choices, which
    `problems()` checks for every method: parsing flags checks a choice already, but a
    hand-edited config.json or direct construction do not.
    """

    def checks(self) -> list[str]:
        """The method's own checks of its values, each naming its flag (choices aside)."""
        return []

    def problems(self) -> list[str]:
        """What is wrong with these values, each naming its flag; empty when valid."""
        found = self.choice_problems()
        return found + [p for p in self.checks() if p not in found]

    @classmethod
    def choices(cls) -> dict[str, tuple[Any, ...]]:
        """{field: its allowed values} for every field with a fixed set of choices."""
        found = {}
        for name, hint in typing.get_type_hints(cls).items():
            allowed = _choices(hint)
            if allowed:
                found[name] = allowed
        return found

    def choice_problems(self) -> list[str]:
        """One problem per field whose value is not one of its choices."""
        found = []
        for name, allowed in self.choices().items():
            value = getattr(self, name)
            if value not in allowed:
                shown = ", ".join(str(c) for c in allowed if c is not None)
                found.append(f"{flag_name(name)} {value!r}: choose one of {shown}")
        return found

    @classmethod
    def option_fields(cls) -> list[dataclasses.Field]:
        return list(dataclasses.fields(cls))

    @classmethod
    def convert(cls, given: dict[str, str]) -> dict[str, Any]:
        """Flag strings ({field: text}) as typed values, checked for their type only (a
        resumed run compares a few flags with its saved values, which `problems()` of those
        few alone would not see); raise ConfigError naming each flag that does not convert."""
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
        return values

    @classmethod
    def parse(cls, given: dict[str, str]) -> SchedulerOptions:
        """Build from flag strings ({field: text}); raise ConfigError with every problem."""
        options = cls(**cls.convert(given))
        problems = options.problems()
        if problems:
            raise ConfigError(problems)
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


def _choices(hint: Any) -> tuple[Any, ...]:
    """The values a `Literal[...]` hint allows (with None for `Literal[...] | None`); empty
    for any other type."""
    if get_origin(hint) is Literal:
        return get_args(hint)
    if get_origin(hint) in (typing.Union, types.UnionType):
        args = get_args(hint)
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1 and get_origin(inner[0]) is Literal:
            return get_args(inner[0]) + ((None,) if type(None) in args else ())
    return ()


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
