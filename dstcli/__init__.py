"""dst: Dropped Scheduled Task (DST) and multi-task learning baselines.

The command line lives in `dstcli.cli`; everything else is a library that the commands call.
Importing this package stays cheap: torch and h5py are imported by the modules that need them.
"""

__version__ = "0.1.0"
