"""Equal weighting: `mtl` trains every task every step on one network; `stl` trains a network
per task. Both use the base contract unchanged; `stl` differs only in the model it is given."""

from dstcli.schedulers.base import Scheduler


class EqualWeighting(Scheduler):
    """`L = sum_t w_t L_t` with `w_t = 1`, or the starting-loss normaliser with --loss-norm."""
