"""Grad-CAM for the clinician view: the same map as a full backward pass, without touching the weights' .grad."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")


def _reference_cam(model, x, class_index: int) -> np.ndarray:  # model, x: torch objects (torch is optional here)
    """Grad-CAM as it was computed before: ``.backward()`` through every weight, then the feature map's .grad."""
    from torch.nn import functional as F

    with torch.enable_grad():
        out = model.forward_all(x)
        feats = out["features"]
        feats.retain_grad()
        out["logits"][0, class_index].backward()
        cam = F.relu((feats.grad.mean(dim=(2, 3), keepdim=True) * feats).sum(dim=1, keepdim=True))
        cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0].detach().numpy()
    model.zero_grad(set_to_none=True)
    return cam / cam.max() if cam.max() > 0 else cam


def test_grad_cam_equals_the_full_backward_and_leaves_the_weights_alone() -> None:
    from dermchat.classifier.model import build_model
    from dermchat.classifier.saliency import grad_cam

    torch.manual_seed(0)
    model = build_model().eval()
    x = torch.rand(1, 3, 96, 128)
    for class_index in range(model.config.num_classes):
        cam = grad_cam(model, x, class_index)
        assert cam.shape == (96, 128) and cam.min() >= 0.0 and cam.max() <= 1.0
        assert all(p.grad is None for p in model.parameters())  # nothing shared was written: no lock needed
        np.testing.assert_allclose(cam, _reference_cam(model, x, class_index), atol=1e-5)
