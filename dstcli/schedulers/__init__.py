"""The scheduler registry: every training method (STL, MTL, DST and the baselines).

A method is registered by its options dataclass in `dstcli/schedulers/specs/` (torch-free, so
the CLI can offer its flags at once); its implementation is a `Scheduler` subclass imported when
a run starts. Every module in `specs/` is imported here, so adding a method is adding files.
"""

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

from dstcli.registry import Registry
from dstcli.schedulers.options import SchedulerEntry, SchedulerOptions

SCHEDULERS: Registry[SchedulerEntry] = Registry("scheduler")


def register_scheduler(
    name: str,
    impl: str,
    summary: str,
    stl: bool = False,
    variants: dict[str, dict[str, Any]] | None = None,
) -> Callable[[type[SchedulerOptions]], type[SchedulerOptions]]:
    """Class decorator for an options dataclass: register the method it configures."""

    def add(options: type[SchedulerOptions]) -> type[SchedulerOptions]:
        SCHEDULERS.register(name)(
            SchedulerEntry(name, options, impl, summary, stl, dict(variants or {}))
        )
        return options

    return add


def resolve(name: str) -> tuple[SchedulerEntry, dict[str, Any]]:
    """A scheduler or one of its named variants (`gradnorm-1.5`): the entry and preset values."""
    if name in SCHEDULERS:
        return SCHEDULERS.get(name), {}
    for entry_name in SCHEDULERS:
        entry = SCHEDULERS.get(entry_name)
        if name in entry.variants:
            return entry, dict(entry.variants[name])
    SCHEDULERS.get(name)  # raises with the list of choices
    raise AssertionError("unreachable")


def all_names() -> list[str]:
    """Every name `--scheduler` accepts: methods, then their named variants."""
    names = SCHEDULERS.names()
    for n in SCHEDULERS.names():
        names += sorted(SCHEDULERS.get(n).variants)
    return names


def _import_specs() -> None:
    from dstcli.schedulers import specs

    for module in sorted(m.name for m in pkgutil.iter_modules(specs.__path__)):
        importlib.import_module(f"{specs.__name__}.{module}")


_import_specs()

__all__ = ["SCHEDULERS", "SchedulerEntry", "SchedulerOptions", "all_names", "register_scheduler",
           "resolve"]
