"""The app registry: each app is a dataset family with its tasks, protocol and network.

Importing this package imports no torch; an app imports what it needs inside its methods.
"""

from dstcli.apps.base import App, TaskSpec
from dstcli.registry import Registry

APPS: Registry[App] = Registry("app")


def register_app(cls: type[App]) -> type[App]:
    """Class decorator: register one instance of the app under its `name`."""
    APPS.register(cls.name)(cls())
    return cls



def _import_apps() -> None:
    """Every module of this package registers its app on import."""
    import importlib
    import pkgutil

    for module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
        if module != "base":
            importlib.import_module(f"{__name__}.{module}")


_import_apps()

__all__ = ["APPS", "App", "TaskSpec", "register_app"]
