"""DST's epoch time relative to MTL's, beside the share of task-epochs DST dropped.

    python benchmarks/dst_epoch_time.py --epochs 6 --seeds 3

On the `cpu` preset's Omniglot shards (8 alphabets, prepared on first use), `mtl`, `dst` and
`dst --dropped-loss probe` are trained side by side in one process, an epoch each in turn
(mtl, dst, dst probe, mtl, ...): the speed of a shared or virtual machine drifts by a tenth
and more over minutes, and runs trained one after another would divide two different
machines. An epoch is timed as `dst train` times it for epochs.csv (the training pass, the
probe pass where there is one, and the scheduler's end of epoch; not the log or the
checkpoint). Each method's ratio to mtl is taken per round, then its median over the rounds of
every seed; the dropped share counts the gates the epochs trained with.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from _common import omniglot_parser, prepared_omniglot  # run from benchmarks/

# (label, scheduler, its options)
METHODS = (("mtl", "mtl", {}), ("dst", "dst", {}),
           ("dst (probe)", "dst", {"dropped_loss": "probe"}))


def build_run(scheduler: str, options: dict, data: Path, seed: int, args):
    """Model, optimizer and scheduler as `dst train` builds them; nothing is written to `out`
    (the epochs run here, not through `train`)."""
    from dstcli.config import TrainConfig
    from dstcli.schedulers import resolve
    from dstcli.train import build

    entry, _ = resolve(scheduler)
    config = TrainConfig(app="omniglot", data=str(data), out=str(args.work / "dst-epoch-time"),
                         scheduler=scheduler, scheduler_options=entry.options.parse(options),
                         preset=args.preset, epochs=args.epochs, batch_size=args.batch_size,
                         lr=1e-3, device="cpu", seed=seed).resolved()
    return build(config)


def timed_epoch(run, dataset, epoch: int) -> tuple[float, list[bool]]:
    """One epoch as the trainer runs it: its seconds and the gates it trained with."""
    from rich.console import Console

    from dstcli.train import run_epoch

    gates = list(run.scheduler.gates(epoch).values()) if epoch > 1 else []
    began = time.perf_counter()
    result = run_epoch(run, dataset, epoch, Console(quiet=True), progress=False)
    run.scheduler.end_epoch(epoch, result.losses, result.metrics)
    return time.perf_counter() - began, gates


def main() -> None:
    args = omniglot_parser(__doc__, epochs=6, seeds=3).parse_args()

    from dstcli.data.shards import ShardDataset

    data = prepared_omniglot(args.preset, args.work)
    seconds: dict[str, list[float]] = {name: [] for name, _, _ in METHODS}
    ratios: dict[str, list[float]] = {name: [] for name, _, _ in METHODS}
    gates: dict[str, list[bool]] = {name: [] for name, _, _ in METHODS}
    for seed in range(args.seeds):
        runs = {name: build_run(scheduler, options, data, seed, args)
                for name, scheduler, options in METHODS}
        dataset = ShardDataset(next(iter(runs.values())).data, "train")
        for epoch in range(1, args.epochs + 2):
            took = {}
            for name, run in runs.items():
                took[name], trained_with = timed_epoch(run, dataset, epoch)
                gates[name] += trained_with
            if epoch == 1:
                continue  # the pass without update costs every method the same
            for name in runs:
                seconds[name].append(took[name])
                ratios[name].append(took[name] / took["mtl"])
            print(f"seed {seed}, epoch {epoch}: "
                  + ", ".join(f"{name} {took[name]:.1f} s" for name in runs), flush=True)

    print(f"\nEpoch time, Omniglot 8 alphabets, preset {args.preset}, batch {args.batch_size}, "
          f"{args.epochs} training epochs x {args.seeds} seeds in turns, CPU\n")
    print("| method | s per epoch (median) | relative to mtl (median of rounds) | "
          "dropped task-epochs (%) |")
    print("| --- | --- | --- | --- |")
    for name, _, _ in METHODS:
        dropped = 100.0 * (1 - statistics.fmean(gates[name]))
        print(f"| {name} | {statistics.median(seconds[name]):.1f} | "
              f"{statistics.median(ratios[name]):.2f} | {dropped:.0f} |")


if __name__ == "__main__":
    main()
