"""`--skip-bad`: the one place where a prepare decides to fail on a bad raw item or leave it out.

Every reader takes a `BadItems` and hands it each item it cannot use (an image that does not
decode, a manifest row naming a missing file, a duplicate sample). Without `--skip-bad` the
item's DataError is raised as it is, so the user gets the reader's own message; with it, the
item is recorded, and `write_report` leaves `skipped.csv` (item, reason) in the prepared folder
and a line in manifest.json's `warnings`.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from dstcli.errors import DataError

REPORT = "skipped.csv"
SKIP_HINT = "pass --skip-bad to leave such items out (they are listed in skipped.csv)"


class BadItems:
    """Collects the items a prepare leaves out, or raises at the first one when not skipping."""

    def __init__(self, skip: bool = False):
        self.skip = skip
        self.items: list[tuple[str, str]] = []

    def __len__(self) -> int:
        return len(self.items)

    def reject(self, item: str, error: DataError) -> None:
        """Leave `item` out for the reason `error` gives, or raise it when not skipping."""
        if not self.skip:
            raise DataError(f"{error}\n({SKIP_HINT})") from error
        self.items.append((item, str(error)))

    def write_report(self, writer: Any) -> None:
        """Put skipped.csv into a DatasetWriter's folder before it commits, and warn once."""
        if not self.items:
            return
        path = Path(writer.tmp_dir) / REPORT
        tmp = path.with_name(REPORT + ".tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            out = csv.writer(f, lineterminator="\n")
            out.writerow(["item", "reason"])
            out.writerows(self.items)
        os.replace(tmp, path)
        writer.warn(f"{len(self.items)} bad item(s) left out (--skip-bad); {REPORT} beside "
                    "the shards lists each with its reason")
