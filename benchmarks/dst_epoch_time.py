"""DST's epoch time relative to MTL's, beside the share of task-epochs DST dropped.

    python benchmarks/dst_epoch_time.py --epochs 6 --seeds 2

On the `cpu` preset's Omniglot shards (8 alphabets, prepared on first use), whole `dst train`
runs of `mtl`, `dst` and `dst --dropped-loss probe` are trained one after another for each
seed, alone on the machine, so that a drift in its speed hits every method of a seed alike.
Each run's cost is the median of its training epochs' `seconds` in epochs.csv and its dropped
share comes from the logged gates, as `dst tables` computes them for costs.csv.
"""

from __future__ import annotations

import shutil
import statistics
from pathlib import Path

from _common import omniglot_parser, prepared_omniglot  # run from benchmarks/

# (label, scheduler, its options)
METHODS = (("mtl", "mtl", {}), ("dst", "dst", {}),
           ("dst (probe)", "dst", {"dropped_loss": "probe"}))


def train_and_cost(scheduler: str, options: dict, data: Path, out: Path, seed: int, args
                   ) -> tuple[float, float]:
    from rich.console import Console

    from dstcli.config import TrainConfig
    from dstcli.report.tables import run_cost as logged_cost
    from dstcli.schedulers import resolve
    from dstcli.train import train

    entry, _ = resolve(scheduler)
    config = TrainConfig(app="omniglot", data=str(data), out=str(out), scheduler=scheduler,
                         scheduler_options=entry.options.parse(options), preset=args.preset,
                         epochs=args.epochs, batch_size=args.batch_size, lr=1e-3,
                         device="cpu", seed=seed).resolved()
    shutil.rmtree(out, ignore_errors=True)
    train(config, console=Console(quiet=True), progress=False)
    return logged_cost(out)


def main() -> None:
    args = omniglot_parser(__doc__, epochs=6, seeds=2).parse_args()

    data = prepared_omniglot(args.preset, args.work)
    costs: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in METHODS}
    for seed in range(args.seeds):
        for name, scheduler, options in METHODS:
            out = args.work / "dst-epoch-time" / f"{name.replace(' ', '-')}-s{seed}"
            seconds, dropped = train_and_cost(scheduler, options, data, out, seed, args)
            costs[name].append((seconds, dropped))
            print(f"seed {seed}, {name}: {seconds:.1f} s per epoch, {dropped:.0f}% of "
                  "task-epochs dropped", flush=True)

    # A ratio per seed (runs of one seed ran back to back), then their median.
    print(f"\nEpoch time, Omniglot 8 alphabets, preset {args.preset}, batch {args.batch_size}, "
          f"{args.epochs} training epochs, {args.seeds} seeds, CPU\n")
    print("| method | s per epoch (median of seeds) | relative to mtl | dropped task-epochs (%) |")
    print("| --- | --- | --- | --- |")
    for name, _, _ in METHODS:
        ratios = [s / m for (s, _), (m, _) in zip(costs[name], costs["mtl"], strict=True)]
        print(f"| {name} | {statistics.median(s for s, _ in costs[name]):.1f} | "
              f"{statistics.median(ratios):.2f} | "
              f"{statistics.fmean(d for _, d in costs[name]):.0f} |")


if __name__ == "__main__":
    main()
