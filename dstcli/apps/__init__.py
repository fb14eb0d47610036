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


# Registration happens on import; keep this list to the app modules.
from dstcli.apps import omniglot  # noqa: E402, F401

__all__ = ["APPS", "App", "TaskSpec", "register_app"]
