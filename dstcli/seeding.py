"""Seeds for each random stream of a run, derived from the run's seed (torch-free).

Each purpose has its own stream, so that, for example, two schedulers with the same seed see
the same data order whatever gates they draw, and a resumed run draws what it would have.
"""

import numpy as np

# Stream identifiers: the first part after the seed.
DATA_ORDER, TORCH_STATE, PROBE, GATES, INIT_PASSES = 0, 1, 2, 3, 4


def derived_seed(seed: int, *parts: int) -> int:
    """A 32-bit seed for one purpose, from the run's seed and identifying integers."""
    return int(np.random.SeedSequence([seed, *parts]).generate_state(1)[0])
