"""Names of the records a run folder holds, for the modules that read them without torch."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

EPOCHS_FILE = "epochs.csv"
METRICS_FILE = "metrics.json"  # the test split's scores: what tables and sweeps read
RUN_RECORD = "run.json"  # written when training has finished


def metrics_file(split: str, suffix: str = ".json") -> str:
    """`metrics.json` for the test split, `metrics-<split>.json` for any other, so that scoring
    a run on its training set never replaces the test scores the tables are built from."""
    stem = "metrics" if split == "test" else f"metrics-{split}"
    return stem + suffix


def write_json(path: Path, value: Any) -> None:
    """Write `value` as JSON whole or not at all (a temporary name, then a rename): sweeps and
    tables read these records while other runs are being written. ASCII (a label's λ as an
    escape), so that a reader under any locale's encoding reads it back."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n")
    os.replace(tmp, path)


def machine(device: str, gpu: str | None = None, threads: int | None = None,
            processes: int = 1) -> dict[str, Any]:
    """What a run's epoch times depend on, for run.json: epoch times from two machines (or
    two thread counts) are not comparable, and the cost tables compare only like with like."""
    return {"host": platform.node(), "cpu": _cpu_model(), "cpus": os.cpu_count(),
            "threads": threads, "device": device, "gpu": gpu, "processes": processes}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_key(run_dir: Path) -> str:
    """The machine a finished run trained on, as one comparable string; "" for a run recorded
    before run.json said so (such runs are compared with each other only)."""
    try:
        record = json.loads((Path(run_dir) / RUN_RECORD).read_text())
    except (OSError, ValueError):
        return ""
    described = record.get("machine") if isinstance(record, dict) else None
    return json.dumps(described, sort_keys=True) if described else ""
