"""Networks of the paper. torch-free at import: the registry is in `dstcli.models.builders`,
the size presets (which the CLI lists at start-up) in `dstcli.models.presets`."""

# The registry's names, for validating a configuration without importing torch; a test keeps
# this list equal to the registry's.
MODEL_NAMES = ("bilateral-vgg16", "segnet", "unet", "unilateral-vgg16")
