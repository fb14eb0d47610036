"""Names of the records a run folder holds, for the modules that read them without torch."""

from __future__ import annotations

EPOCHS_FILE = "epochs.csv"
METRICS_FILE = "metrics.json"  # the test split's scores: what tables and sweeps read


def metrics_file(split: str, suffix: str = ".json") -> str:
    """`metrics.json` for the test split, `metrics-<split>.json` for any other, so that scoring
    a run on its training set never replaces the test scores the tables are built from."""
    stem = "metrics" if split == "test" else f"metrics-{split}"
    return stem + suffix
