"""Writing a folder whole or not at all: stage it beside its destination, then swap it in.

Used by every prepare (the shards) and by the synthetic generators' raw sets, so a reader
never meets a half-written folder and an interrupted run leaves the old one as it was.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from dstcli.errors import DataError

SYNTHETIC_MARKER = "SYNTHETIC.txt"


def staging_dir(target: Path) -> Path:
    """An empty hidden folder beside `target`, with the permissions a plain mkdir would give."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    staged.chmod(0o777 & ~umask)  # mkdtemp's 0700 would outlive the rename
    return staged


def swap_in(staged: Path, target: Path) -> None:
    """Put `staged` at `target`: the old folder is moved aside, the new one takes its name,
    then the old one is deleted. Each rename is atomic, so `target` is never a mix of the two;
    between the two renames (microseconds) it is absent, and a crash exactly there leaves the
    old folder at `.NAME.old-PID` beside it (the error a reader then gets names the missing
    folder; the next prepare writes a new one)."""
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        os.replace(target, old)
    os.replace(staged, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def synthetic_raw_dir(out: Path) -> Path:
    """Where a synthetic prepare keeps its raw set: `<out>.raw`, beside the prepared folder."""
    out = Path(out)
    return out.parent / f"{out.name}.raw"


def draw_synthetic_raw(out: Path, draw: Callable[[Path], None], what: str, note: str) -> Path:
    """Draw a synthetic raw set for the prepared folder `out` into `<out>.raw`.

    A folder there that a synthetic prepare wrote (it carries the marker) is replaced; any
    other is refused, since it may hold someone's data. `draw(folder)` fills an empty folder.
    """
    raw = synthetic_raw_dir(out)
    if raw.exists() and not (raw / SYNTHETIC_MARKER).is_file():
        raise DataError(f"{raw} exists and is not a synthetic {what} written by dst; move it "
                        "away or choose another --out (the raw set goes beside it)")
    staged = staging_dir(raw)
    try:
        draw(staged)
        (staged / SYNTHETIC_MARKER).write_text(
            f"{note}\nA synthetic prepare replaces this folder; do not keep data here.\n")
        swap_in(staged, raw)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return raw
