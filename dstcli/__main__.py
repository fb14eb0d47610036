"""`python -m dstcli ...` runs the same command line as `dst ...` (torchrun needs a module)."""

from dstcli.cli.main import main

if __name__ == "__main__":
    main()
