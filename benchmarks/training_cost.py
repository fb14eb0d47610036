"""What training costs here, per sample and per app, and what the paper's sweeps would take.

    OMP_NUM_THREADS=1 python benchmarks/training_cost.py --steps 8

Measures, with the trainer's own run_epoch and `mtl` at the `cpu` preset (channels-last), the
seconds per training sample of each app's benchmark data: the 8 Omniglot alphabets, a 5,000-face
synthetic AFLW, the 2,995 MTFL faces, 2,000 synthetic fingerprint pairs (each prepared into
benchmarks/work on first use). Then projects each benchmark sweep: runs x (epochs + the pass
without update, at a third of a training epoch) x training samples x cost. The projection is
for `mtl`-priced methods; the per-task-gradient methods (pcgrad, cagrad, imtl, aligned, nash)
cost 3.5 to 4.5 times as much per step (scheduler_step_time.py), and are counted so.

Run it the way the sweeps run (`dst ablate --jobs 2` with one thread per process, so with the
other core busy) to project their time; alone, it measures one process on an idle machine.
"""

from __future__ import annotations

import argparse
import time

from _common import FixedSubset, prepared_faces, prepared_mtfl, prepared_omniglot, prepared_pairs

# The per-task-gradient methods take K backward passes a step (the step-time table).
GRADIENT_METHODS = {"pcgrad", "cagrad", "imtl", "aligned", "nash"}
GRADIENT_FACTOR = 4.0


def seconds_per_sample(app: str, data, steps: int, batch: int) -> float:
    from rich.console import Console

    from dstcli.config import TrainConfig
    from dstcli.data.shards import ShardDataset
    from dstcli.train import build, run_epoch

    config = TrainConfig(app=app, data=str(data), out="/tmp/unused", scheduler="mtl",
                         preset="cpu", epochs=1, batch_size=batch, lr=1e-3, device="cpu",
                         channels_last=True).resolved().validate()
    run = build(config)
    subset = FixedSubset(ShardDataset(run.data, "train"), batch * steps)
    quiet = Console(quiet=True)
    run_epoch(run, subset, 1, quiet, progress=False)  # warm-up; also the pass without update
    began = time.perf_counter()
    run_epoch(run, subset, 2, quiet, progress=False)
    return (time.perf_counter() - began) / len(subset)


def sweep_rows(name: str, all_schedulers: bool) -> list[str]:
    from dstcli.schedulers import resolve
    from dstcli.sweep import find_sweep, load_sweep

    sweep = load_sweep(find_sweep(name))
    if all_schedulers:
        sweep = sweep.with_all_schedulers()
    return [resolve(row.scheduler)[0].name for row in sweep.rows if not row.needs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, as in the sweeps")
    args = parser.parse_args()

    from dstcli.data.shards import open_prepared

    data = {"omniglot": prepared_omniglot("cpu"), "aflw": prepared_faces(5000, None),
            "mtfl": prepared_mtfl(), "fingerprint": prepared_pairs(2000)}
    cost, samples = {}, {}
    for app, folder in data.items():
        cost[app] = seconds_per_sample(app, folder, args.steps, args.batch_size)
        samples[app] = open_prepared(folder).manifest["splits"]["train"]["samples"]
        print(f"{app}: {cost[app] * 1000:.1f} ms per training sample, "
              f"{samples[app]} training samples", flush=True)

    plans = [("Table 6: Omniglot, the paper's methods", "omniglot", "methods", False),
             ("Omniglot, every scheduler (issue 3)", "omniglot", "methods", True),
             ("Table 8: lambdas on AFLW (5,000 faces)", "aflw", "lambdas", False),
             ("Table 3: AFLW (5,000 faces), every scheduler", "aflw", "methods", True),
             ("MTFL, every scheduler", "mtfl", "methods", True),
             ("Table 4: fingerprints (2,000 pairs), every scheduler", "fingerprint", "methods",
              True)]
    print(f"\n{args.epochs} epochs, {args.seeds} seeds, {args.jobs} runs at a time\n")
    print("| sweep | runs | hours |")
    print("| --- | --- | --- |")
    for title, app, sweep, every in plans:
        methods = sweep_rows(sweep, every)
        units = sum(GRADIENT_FACTOR if m in GRADIENT_METHODS else 1.0 for m in methods)
        epoch = samples[app] * cost[app]
        hours = units * args.seeds * (args.epochs + 1 / 3) * epoch / 3600 / args.jobs
        print(f"| {title} | {len(methods) * args.seeds} | {hours:.1f} |")


if __name__ == "__main__":
    main()
