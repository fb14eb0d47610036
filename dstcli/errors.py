"""Errors meant for the user: the CLI prints their message and exits non-zero, no traceback."""


class DstError(Exception):
    """A problem the user can fix; the message says what and how."""


class ConfigError(DstError):
    """Every problem found in a configuration, reported together."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid configuration ({len(self.problems)} problem(s)):\n{lines}")


class DataError(DstError):
    """Raw data or shards that cannot be read as they are; the message names the file."""


class Interrupted(DstError):
    """Stopped at the user's request (Ctrl-C) with the state saved; exit status 130."""

    exit_code = 130
