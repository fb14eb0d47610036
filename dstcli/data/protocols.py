"""The protocol files in `data_manifests/`: each app's expected raw layout and split rules."""

import os
import tomllib
from pathlib import Path
from typing import Any

from dstcli.errors import DstError

# A source checkout (the README installs with `pip install -e .`) keeps them beside the package;
# DST_MANIFESTS points elsewhere, e.g. at a copy a lab edits for its own protocol.
_DEFAULT_DIR = Path(__file__).resolve().parents[2] / "data_manifests"


def manifests_dir() -> Path:
    return Path(os.environ.get("DST_MANIFESTS", _DEFAULT_DIR))


def load_protocol(app: str) -> dict[str, Any]:
    path = manifests_dir() / f"{app}.toml"
    if not path.exists():
        raise DstError(f"no protocol file {path} for app {app!r}; set DST_MANIFESTS to the "
                       "folder holding data_manifests/*.toml")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise DstError(f"{path}: not valid TOML ({e})") from e
