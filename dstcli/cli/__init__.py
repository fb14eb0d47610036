"""The `dst` command line (Typer). `main.py` joins one module per command."""
