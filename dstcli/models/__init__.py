"""Networks of the paper. torch-free at import: the registry is in `dstcli.models.builders`,
the size presets (which the CLI lists at start-up) in `dstcli.models.presets`."""
