"""Models: every registered builder at every preset, task depths, weights from a file."""

from __future__ import annotations

import pytest
import torch

from dstcli.apps.base import TaskSpec
from dstcli.errors import DstError
from dstcli.models.builders import MODELS
from dstcli.models.multitask import TaskRequest
from dstcli.models.presets import PRESETS
from dstcli.models.vgg import CONV_COUNT, VGG16Encoder

TASKS = [TaskSpec("a", "classification", 17, 13, num_classes=3),
         TaskSpec("b", "classification", 17, 13, num_classes=5)]

# Per registered model: tasks of every kind it serves, and a batch of its input (B = 4).
EXAMPLES = {
    "unilateral-vgg16": (
        TASKS + [
            TaskSpec("points", "landmarks", 17, 13, output_shape=(21, 2)),
            TaskSpec("pose", "pose", 17, 13, output_shape=(3,)),
            TaskSpec("clean", "denoise", 26, 13, output_shape=(1, 32, 32)),
        ],
        lambda h, w: torch.randint(0, 256, (4, 1, h, w), dtype=torch.uint8),
        {"a": (3,), "b": (5,), "points": (21, 2), "pose": (3,), "clean": (1, 32, 32)},
    ),
    "bilateral-vgg16": (
        [
            TaskSpec("fp_orientation", "classification", 17, 13, num_classes=6, inputs=(0,)),
            TaskSpec("fp_segmentation", "segmentation", 26, 13, inputs=(0,)),
            TaskSpec("lfp_orientation", "classification", 17, 13, num_classes=6, inputs=(1,)),
            TaskSpec("lfp_segmentation", "segmentation", 26, 13, inputs=(1,)),
            TaskSpec("matching", "contrastive", 13, 13, inputs=(0, 1)),
        ],
        lambda h, w: torch.randint(0, 256, (4, 2, 1, h, w), dtype=torch.uint8),
        {"fp_orientation": (6,), "fp_segmentation": (48, 40), "lfp_orientation": (6,),
         "lfp_segmentation": (48, 40), "matching": ()},
    ),
}
SEGMENTATION = (
    [TaskSpec("fp_segmentation", "segmentation", 26, 13, inputs=(0,)),
     TaskSpec("lfp_segmentation", "segmentation", 26, 13, inputs=(1,))],
    lambda h, w: torch.randint(0, 256, (4, 2, 1, h, w), dtype=torch.uint8),
    {"fp_segmentation": (48, 40), "lfp_segmentation": (48, 40)},
)
EXAMPLES["segnet"] = EXAMPLES["unet"] = SEGMENTATION
SIZES = {"unilateral-vgg16": "omniglot", "bilateral-vgg16": "fingerprint",
         "segnet": "fingerprint", "unet": "fingerprint"}
# Single-task segmentation networks keep their own depths (SegNet 26, U-Net 23).
OWN_DEPTHS = {"segnet": 26, "unet": 23}


def all_rows(tasks, n: int, train: bool = True) -> dict[str, TaskRequest]:
    return {t.name: TaskRequest(torch.arange(n), train) for t in tasks}


def test_every_registered_model_has_an_example():
    from dstcli.models import MODEL_NAMES

    assert set(EXAMPLES) == set(MODELS.names()) == set(MODEL_NAMES)


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("stl", [False, True])
def test_every_model_builds_at_every_preset_with_the_papers_depths(name, preset, stl):
    tasks, make_input, shapes = EXAMPLES[name]
    size = PRESETS[preset].input_size(SIZES[name])
    if preset != "cpu-tiny":
        tasks = [t for t in tasks if t.kind != "denoise"]  # its output shape is cpu-tiny's
    if name in OWN_DEPTHS and not stl:
        with pytest.raises(DstError, match="--scheduler stl"):
            MODELS.get(name)(tasks, 1, PRESETS[preset], stl=stl, input_size=size)
        return
    model = MODELS.get(name)(tasks, 1, PRESETS[preset], stl=stl, input_size=size, tie=1e-3)
    for task in tasks:
        assert model.task_depth(task.name) == OWN_DEPTHS.get(name, task.depth)

    if preset == "cpu-tiny":
        outputs = model(make_input(*size), all_rows(tasks, 4))
        for task in tasks:
            assert outputs[task.name].shape == (4, *shapes[task.name]), task.name


def test_presets_change_only_width():
    layers = {name: [type(m).__name__ for m in MODELS.get("unilateral-vgg16")(
        TASKS, 1, preset).modules()] for name, preset in PRESETS.items()}
    assert layers["cpu-tiny"] == layers["cpu"] == layers["paper"]
    assert len(VGG16Encoder(3, 0.25).convs) == CONV_COUNT == 13
    assert VGG16Encoder(3, 1.0).channels == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512,
                                             512, 512, 512]


def test_a_task_that_does_not_train_keeps_no_graph():
    model = MODELS.get("unilateral-vgg16")(TASKS, 1, PRESETS["cpu-tiny"])
    images = torch.randint(0, 256, (4, 1, 32, 32), dtype=torch.uint8)
    requests = {"a": TaskRequest(torch.arange(4), True),
                "b": TaskRequest(torch.arange(4), False)}
    outputs = model(images, requests)

    assert outputs["a"].requires_grad and not outputs["b"].requires_grad
    outputs["a"].sum().backward()
    assert all(p.grad is None for p in model.heads["b"].parameters())
    assert all(p.grad is not None for p in model.heads["a"].parameters())


def test_stl_networks_are_independent():
    model = MODELS.get("unilateral-vgg16")(TASKS, 1, PRESETS["cpu-tiny"], stl=True)
    images = torch.randint(0, 256, (4, 1, 32, 32), dtype=torch.uint8)
    outputs = model(images, {"a": TaskRequest(torch.arange(2), True)})
    outputs["a"].sum().backward()

    assert all(p.grad is None for p in model.nets["b"].parameters())
    assert all(p.grad is not None for p in model.nets["a"].parameters())
    assert model.shared_parameters() == []


@pytest.fixture(scope="module")
def vgg16_file(tmp_path_factory):
    """A file in torchvision's VGG16 layout (random weights: nothing is downloaded)."""
    torchvision = pytest.importorskip("torchvision")
    features = torchvision.models.vgg16(weights=None).features
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    path = tmp_path_factory.mktemp("weights") / "vgg16-397923af.pth"
    torch.save(state, path)
    return path, state


def test_imagenet_weights_load_from_a_file(vgg16_file):
    path, state = vgg16_file
    rgb = VGG16Encoder(3, 1.0)
    rgb.load_imagenet(path)
    assert torch.equal(rgb.convs[0].weight, state["features.0.weight"])
    assert torch.equal(rgb.convs[12].bias, state["features.28.bias"])

    # A grey image through the grey encoder's first layer (its own normalisation) answers as
    # the RGB encoder does to (g, g, g) with ImageNet's per-colour normalisation, inside the
    # border (where zero padding stands for different means).
    grey = VGG16Encoder(1, 1.0)
    grey.load_imagenet(path)
    image = torch.randint(0, 256, (1, 1, 16, 16), dtype=torch.uint8)
    as_grey = grey.convs[0](grey.normalise(image))
    as_rgb = rgb.convs[0](rgb.normalise(image.expand(1, 3, 16, 16)))
    torch.testing.assert_close(as_grey[..., 1:-1, 1:-1], as_rgb[..., 1:-1, 1:-1],
                               rtol=1e-4, atol=1e-4)


def test_weights_errors_are_clear(vgg16_file, tmp_path):
    path, _ = vgg16_file
    with pytest.raises(DstError, match="no such file.*never downloads"):
        VGG16Encoder(3, 1.0).load_imagenet(tmp_path / "absent.pth")
    with pytest.raises(DstError, match="--preset paper"):
        VGG16Encoder(3, 0.25).load_imagenet(path)
    junk = tmp_path / "junk.pth"
    junk.write_text("not weights")
    with pytest.raises(DstError, match="not a PyTorch state dict"):
        VGG16Encoder(3, 1.0).load_imagenet(junk)
    partial = tmp_path / "partial.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, partial)
    with pytest.raises(DstError, match="found 1"):
        VGG16Encoder(3, 1.0).load_imagenet(partial)


def test_bilateral_ties_its_encoders_and_shares_its_decoder():
    tasks, make_input, _ = EXAMPLES["bilateral-vgg16"]
    model = MODELS.get("bilateral-vgg16")(tasks, 1, PRESETS["cpu-tiny"], input_size=(48, 40),
                                          tie=0.5)
    assert model.regularization() == 0  # both encoders start from the same weights
    with torch.no_grad():
        for p in model.encoders[1].parameters():
            p.add_(0.1)
    penalty = model.regularization()
    expected = 0.5 * sum(((a - b) ** 2).sum() for a, b in zip(
        model.encoders[0].parameters(), model.encoders[1].parameters(), strict=True))
    assert torch.allclose(penalty, expected) and penalty > 0

    shared = {id(p) for p in model.shared_parameters()}
    assert all(id(p) in shared for p in model.decoder.parameters())
    assert model.task_parameters("fp_segmentation") == []
    assert model.task_parameters("matching") == []

    outputs = model(make_input(48, 40), {"lfp_orientation": TaskRequest(torch.arange(4), True)})
    outputs["lfp_orientation"].sum().backward()
    assert all(p.grad is None for p in model.encoders[0].parameters())
    assert all(p.grad is not None for p in model.encoders[1].parameters())

    # A network of one image's tasks (a single-task network) ties nothing: its other encoder
    # is idle and must not pull on the one in use.
    latent_only = [t for t in tasks if t.inputs == (1,)]
    alone = MODELS.get("bilateral-vgg16")(latent_only, 1, PRESETS["cpu-tiny"],
                                          input_size=(48, 40), tie=0.5)
    with torch.no_grad():
        for p in alone.encoders[0].parameters():
            p.add_(0.1)
    assert alone.regularization() is None


def test_batch_norm_encoder_loads_vgg16_bn_weights(tmp_path, vgg16_file):
    torchvision = pytest.importorskip("torchvision")
    features = torchvision.models.vgg16_bn(weights=None).features
    with torch.no_grad():
        features[1].running_mean.fill_(0.25)
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    path = tmp_path / "vgg16_bn-6c64b313.pth"
    torch.save(state, path)

    encoder = VGG16Encoder(3, 1.0, norm="batch")
    encoder.load_imagenet(path)
    assert torch.equal(encoder.convs[0].weight, state["features.0.weight"])
    assert torch.equal(encoder.norms[0].running_mean, state["features.1.running_mean"])
    assert torch.equal(encoder.convs[12].weight, state["features.40.weight"])

    with pytest.raises(DstError, match="--encoder-norm batch"):
        VGG16Encoder(3, 1.0).load_imagenet(path)
    plain, _ = vgg16_file
    with pytest.raises(DstError, match="--encoder-norm none"):
        encoder.load_imagenet(plain)


def test_batch_norm_adds_no_weight_layer():
    plain = MODELS.get("unilateral-vgg16")(TASKS, 1, PRESETS["cpu"], encoder_norm="none")
    normed = MODELS.get("unilateral-vgg16")(TASKS, 1, PRESETS["cpu"], encoder_norm="batch")
    assert [t for t in (plain.task_depth("a"), normed.task_depth("a"))] == [17, 17]
    convs = [m for m in normed.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 13


@pytest.mark.parametrize("size", [(64, 64), (48, 40), (105, 105), (340, 280)])
def test_the_decoder_returns_through_the_encoders_own_sizes(size):
    """Each upsampling lands on the size the encoder had before the matching pool (the pools
    round down), so no final stretch shifts the map when a side is not a multiple of 16."""
    from dstcli.models.heads import ConvDecoder

    encoder = VGG16Encoder(1, 1 / 16)
    seen = []
    hooks = [conv.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[-2:])))
             for conv in encoder.convs]
    features = encoder(torch.zeros(1, 1, *size), {13})[13]
    for hook in hooks:
        hook.remove()
    stage_sizes = list(dict.fromkeys(seen))  # (H, W) at each of the 5 stages, input first
    decoder = ConvDecoder(encoder.channels[-1], (1, *size), 1 / 16)
    assert decoder.upsample_sizes == stage_sizes[-2::-1]
    assert decoder(features).shape == (1, 1, *size)
