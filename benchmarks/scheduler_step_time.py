"""Step time of every scheduler relative to `mtl`, measured side by side in one process.

    python benchmarks/scheduler_step_time.py --steps 20

On the `cpu` preset's Omniglot shards (8 alphabets, prepared on first use), each
scheduler trains the same `--steps` batches after one pass without update over them and two
warm-up steps; the table gives the median seconds per step and the ratio to `mtl`'s. Methods
are measured in turns (mtl, a, mtl, b, ...) so that a drift in the machine's speed affects
the ratio little.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from _common import FixedSubset, omniglot_parser, prepared_omniglot  # run from benchmarks/


def step_seconds(name: str, data: Path, preset: str, steps: int, batch: int, stl: Path) -> float:
    import torch
    from rich.console import Console

    from dstcli.config import TrainConfig
    from dstcli.data.shards import ShardDataset
    from dstcli.schedulers import resolve
    from dstcli.train import build, run_epoch

    entry, variant = resolve(name)
    given = {k: str(v) for k, v in variant.items()}
    if entry.name in ("adaptive", "early-stop"):
        given["stl_results"] = str(stl)  # a stand-in STL run: the step's cost is the same
    config = TrainConfig(app="omniglot", data=str(data), out="/tmp/unused", scheduler=name,
                         scheduler_options=entry.options.parse(given), preset=preset,
                         epochs=1, batch_size=batch, lr=1e-3, device="cpu").resolved()
    run = build(config)
    subset = FixedSubset(ShardDataset(run.data, "train"), batch * (steps + 2))
    console = Console(quiet=True)
    measured = run_epoch(run, subset, 1, console, progress=False)
    run.scheduler.end_epoch(1, measured.losses, measured.metrics)

    times: list[float] = []
    original = run.scheduler.after_step

    def timed_after_step(ctx):
        original(ctx)
        times.append(time.perf_counter())

    run.scheduler.after_step = timed_after_step
    torch.manual_seed(0)
    run_epoch(run, subset, 2, console, progress=False)
    durations = [b - a for a, b in zip(times, times[1:], strict=False)][2:]
    return statistics.median(durations)


def main() -> None:
    args = omniglot_parser(__doc__, steps=20).parse_args()

    from dstcli.data.shards import open_prepared
    from dstcli.schedulers import SCHEDULERS

    data = prepared_omniglot(args.preset, args.work)
    tasks = [t.name for t in open_prepared(data).tasks]
    # A stand-in STL run for the methods that compare against one (adaptive, early-stop).
    stl = args.work / "stl-stand-in"
    stl.mkdir(parents=True, exist_ok=True)
    # Adaptive reads its training error, early stop its loss V, from the logged epochs.
    (stl / "epochs.csv").write_text("epoch,phase,task,V,train_error\n"
                                    + "".join(f"2,train,{t},0.1,50.0\n" for t in tasks))

    rows = []
    for name in SCHEDULERS.names():
        if name == "mtl":
            continue
        base = step_seconds("mtl", data, args.preset, args.steps, args.batch_size, stl)
        mine = step_seconds(name, data, args.preset, args.steps, args.batch_size, stl)
        rows.append((name, mine, mine / base))
        print(f"{name}: {mine * 1000:.1f} ms, {mine / base:.2f} x mtl ({base * 1000:.1f} ms)",
              flush=True)

    print(f"\nStep time, Omniglot 8 alphabets, preset {args.preset}, batch {args.batch_size}, "
          f"median of {args.steps} steps, CPU\n")
    print("| scheduler | ms per step | relative to mtl |")
    print("| --- | --- | --- |")
    for name, seconds, ratio in sorted(rows, key=lambda r: r[2]):
        print(f"| {name} | {seconds * 1000:.1f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
