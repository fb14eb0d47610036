"""Peak resident memory of preparing a synthetic AFLW, measured in a child process.

    python benchmarks/prepare_memory.py --faces 20000

The child runs `prepare_synthetic(faces, out, "cpu")` into a temporary folder (deleted after);
its peak RSS (and that of any process it waits for) is read with getrusage(RUSAGE_CHILDREN),
so this script's own memory does not count. Printed: peak MB and its ratio to 1 GB.
Target: below 1 (1 GB).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import sys
from pathlib import Path
from dstcli.apps import APPS
APPS.get("aflw").prepare_synthetic(int(sys.argv[1]), Path(sys.argv[2]), "cpu", force=True,
                                   seed=0)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=20000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="dst-prepare-memory-") as tmp:
        out = Path(tmp) / "aflw"
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", CHILD, str(args.faces), str(out)], check=True)
        seconds = time.perf_counter() - began
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    peak_mb = peak_kb / 1024
    print(f"prepared {args.faces} synthetic faces at the cpu preset in {seconds:.0f} s")
    print(f"peak RSS {peak_mb:.0f} MB; ratio to 1 GB {peak_mb / 1024:.2f} (target < 1)")


if __name__ == "__main__":
    main()
