"""Omniglot, 8 alphabets: average test error and epoch time of schedulers over seeds.

    python benchmarks/omniglot_schedulers.py --schedulers mtl stl --seeds 3 --epochs 15

Prepares the two small official zips of ../shared/data/omniglot (8 distinct alphabets) at the
`cpu` preset once, trains every scheduler with every seed, evaluates, and prints a Markdown
table (average error as mean +- std over seeds; seconds per training epoch, the median over
epochs and then over seeds, so that a run that shared the machine does not skew it) that goes
into the README. Raw results are written to benchmarks/results/omniglot-<preset>.csv.
Finished runs are reused, so an interrupted benchmark continues where it stopped.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "data" / "omniglot"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedulers", nargs="+", default=["mtl", "stl"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--work", type=Path, default=HERE / "work")
    args = parser.parse_args()

    from dstcli.apps import APPS
    from dstcli.config import TrainConfig
    from dstcli.evaluate import evaluate
    from dstcli.train import train

    data = args.work / f"omniglot-{args.preset}"
    if not (data / "manifest.json").exists():
        zips = sorted(SHARED.glob("images_background_small*.zip"))
        APPS.get("omniglot").prepare(zips, data, args.preset, force=True)

    rows = []
    for scheduler in args.schedulers:
        for seed in range(args.seeds):
            run_dir = args.work / "runs" / f"{scheduler}-{args.preset}-e{args.epochs}-s{seed}"
            began = time.perf_counter()
            if not (run_dir / "metrics.json").exists():
                config = TrainConfig(app="omniglot", data=str(data), out=str(run_dir),
                                     scheduler=scheduler, preset=args.preset,
                                     epochs=args.epochs, seed=seed, lr=args.lr,
                                     batch_size=args.batch_size, device="cpu")
                train(config.resolved().validate(), resume=(run_dir / "checkpoint.pt")
                      .exists(), progress=False)
                evaluate(run_dir)
            metrics = json.loads((run_dir / "metrics.json").read_text())
            with open(run_dir / "epochs.csv", newline="") as f:
                log = list(csv.DictReader(f))
            epochs = {int(r["epoch"]): float(r["seconds"]) for r in log if r["phase"] == "train"}
            # G logged at epoch k gates epoch k + 1: the dropped share of the training epochs.
            gates = [int(r["G"]) for r in log if r.get("G") not in (None, "")
                     and int(r["epoch"]) < max(epochs)]
            rows.append({"scheduler": scheduler, "seed": seed,
                         "average_error": metrics["average_error"],
                         # The median: robust to a stray process sharing the machine.
                         "seconds_per_epoch": statistics.median(epochs.values()),
                         "dropped_share": 1 - statistics.mean(gates) if gates else 0.0,
                         "wall_seconds": round(time.perf_counter() - began, 1)})
            print(json.dumps(rows[-1]), flush=True)

    out = HERE / "results" / f"omniglot-{args.preset}.csv"
    out.parent.mkdir(exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    print(f"\nOmniglot, 8 alphabets, preset {args.preset}, {args.epochs} training epochs, "
          f"lr {args.lr}, batch {args.batch_size}, {args.seeds} seeds\n")
    print("| scheduler | average error (%) | seconds per epoch | dropped task-epochs (%) |")
    print("| --- | --- | --- | --- |")
    for scheduler in args.schedulers:
        mine = [r for r in rows if r["scheduler"] == scheduler]
        errors = [r["average_error"] for r in mine]
        spread = statistics.stdev(errors) if len(errors) > 1 else 0.0
        seconds = statistics.median(r["seconds_per_epoch"] for r in mine)
        dropped = 100 * statistics.mean(r["dropped_share"] for r in mine)
        print(f"| {scheduler} | {statistics.mean(errors):.2f} ± {spread:.2f} | {seconds:.1f} "
              f"| {dropped:.0f} |")


if __name__ == "__main__":
    main()
