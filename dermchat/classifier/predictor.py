"""Inference with everything calibration adds: calibrated probabilities, a conformal prediction
set, the melanoma high-sensitivity flag and the out-of-distribution gate (and Grad-CAM on demand),
optionally informed by the patient's age, sex and body site (`patient_info`).

One class serves both the chat plugin (one photo at a time) and the evaluation command (arrays of
logits), so the numbers the evaluation reports are produced by exactly the code the app runs.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dermchat.classifier import HAM_CLASSES, MALIGNANT_CODES
from dermchat.classifier.calibrate import (
    CALIBRATION_FILE,
    DEFAULT_COVERAGE,
    OOD_FILE,
    Mahalanobis,
    conformal_threshold,
    energy,
    prediction_sets,
    softmax,
)
from dermchat.classifier.patient_info import PatientInfo, PatientPrior

if TYPE_CHECKING:
    from PIL import Image

    from dermchat.classifier.onnx_runtime import OnnxForward

MODEL_FILE = "model.pt"


def default_weights_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "weights" / "ham_cnn"


def missing_weight_files(weights_dir: Path) -> list[str]:
    return [name for name in (MODEL_FILE, CALIBRATION_FILE, OOD_FILE) if not (Path(weights_dir) / name).is_file()]


@dataclass
class Prediction:
    """One image's calibrated output; `probabilities` follow HAM_CLASSES order."""

    probabilities: np.ndarray
    prediction_set: list[str]
    coverage: float
    energy: float
    mahalanobis: float
    out_of_distribution: bool
    ood_reason: str | None
    melanoma_probability: float
    melanoma_threshold: float
    urgent: bool
    urgent_reason: str | None
    heatmap: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def top(self) -> str:
        return HAM_CLASSES[int(np.argmax(self.probabilities))]

    def as_dict(self) -> dict[str, float]:
        return {c: float(p) for c, p in zip(HAM_CLASSES, self.probabilities)}


class Predictor:
    """Lazily loads the weights folder; thread-safe; torch is imported only on load."""

    def __init__(
        self,
        weights_dir: Path | str | None = None,
        coverage: float | None = None,
        tta: bool | None = None,
        threads: int = 1,
    ) -> None:
        self.weights_dir = Path(weights_dir) if weights_dir else default_weights_dir()
        self.requested_coverage = coverage
        self.tta = tta
        self.threads = threads  # ONNX Runtime's threads (torch's are the caller's `torch.set_num_threads`)
        self._lock = threading.RLock()
        self._model: Any = None
        self._onnx: OnnxForward | None = None
        self.runtime_note = ""
        self.calibration: dict[str, Any] = {}
        self._maha: Mahalanobis | None = None
        self._scores: np.ndarray | None = None
        self.conformal_threshold = 1.0
        self.patient_prior: PatientPrior | None = None
        self.patient_conformal_threshold = 1.0
        self.coverage = coverage or DEFAULT_COVERAGE

    def available(self) -> tuple[bool, str]:
        missing = missing_weight_files(self.weights_dir)
        if missing:
            return False, f"weights not found at {self.weights_dir} (missing {', '.join(missing)})"
        return True, ""

    def load(self) -> None:
        if self._model is not None:
            return
        with self._lock:
            if self._model is not None:
                return
            ok, reason = self.available()
            if not ok:
                raise FileNotFoundError(reason)
            from dermchat.classifier.model import load_model

            model, _ = load_model(self.weights_dir / MODEL_FILE)
            self.calibration = json.loads((self.weights_dir / CALIBRATION_FILE).read_text())
            if tuple(self.calibration.get("classes", ())) != HAM_CLASSES:
                raise ValueError(f"{self.weights_dir / CALIBRATION_FILE} lists unexpected classes")
            with np.load(self.weights_dir / OOD_FILE) as z:
                self._maha = Mahalanobis(z["maha_means"].astype(np.float64), z["maha_precision"].astype(np.float64))
                self._scores = z["conformal_scores"].astype(np.float64)
                patient_scores = (
                    z["conformal_scores_patient"].astype(np.float64) if "conformal_scores_patient" in z else None
                )
            self.coverage = self.requested_coverage or float(self.calibration["conformal"]["coverage"])
            self.conformal_threshold = conformal_threshold(self._scores, self.coverage)
            prior = PatientPrior.load(self.weights_dir)
            if prior is not None and patient_scores is not None and "with_patient_info" in self.calibration:
                self.patient_prior = prior
                self.patient_conformal_threshold = conformal_threshold(patient_scores, self.coverage)
            self._onnx, self.runtime_note = self._matching_onnx(model)
            self._model = model

    def _matching_onnx(self, model: Any) -> tuple[OnnxForward | None, str]:
        """The exported graph has no flip averaging: use it only when this predictor does not average flips."""
        from dermchat.classifier.onnx_runtime import open_matching

        tta = self.tta if self.tta is not None else getattr(model, "prefers_tta", True)
        if tta:
            return None, "flip test-time averaging runs in torch"
        return open_matching(self.weights_dir, threads=self.threads)

    @property
    def runtime(self) -> str:
        """Which library runs the forward pass: "onnxruntime" (model.onnx) or "torch" (model.pt)."""
        self.load()
        return "onnxruntime" if self._onnx is not None else "torch"

    @property
    def model(self) -> Any:
        self.load()
        return self._model

    @property
    def temperature(self) -> float:
        self.load()
        return float(self.calibration["temperature"])

    @property
    def melanoma_threshold(self) -> float:
        self.load()
        return float(self.calibration["melanoma"]["threshold"])

    # -- array API (evaluation) ---------------------------------------------------------------------------
    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) of the frames this model reads: callers build frames with `to_model_frame(img, size)`."""
        width, height = self.model.config.input_size
        return width, height

    def forward_frames(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits and embeddings for uint8 NHWC model frames (in batches: each runtime's own size)."""
        from dermchat.classifier.model import batched_inference

        self.load()
        if self._onnx is not None:
            return self._onnx.run(frames)
        out = batched_inference(self.model, frames, tta=self.tta)
        return out["logits"].numpy().astype(np.float64), out["embedding"].numpy().astype(np.float64)

    @property
    def uses_patient_info(self) -> bool:
        """Whether these weights come with a patient-details prior (older weights folders do not)."""
        self.load()
        return self.patient_prior is not None

    def _calibrated(self, logits: np.ndarray, block: dict[str, Any], threshold: float) -> tuple[np.ndarray, ...]:
        bias = np.asarray(block.get("class_bias") or np.zeros(len(HAM_CLASSES)), dtype=np.float64)
        probs = softmax(logits, float(block["temperature"]), bias)
        mel_flag = probs[:, HAM_CLASSES.index("mel")] >= float(block["melanoma"]["threshold"])
        thresholds = np.full(len(probs), float(block["melanoma"]["threshold"]))
        return probs, prediction_sets(probs, threshold), mel_flag, thresholds

    def analyse(
        self, logits: np.ndarray, embeddings: np.ndarray, patients: list[PatientInfo] | None = None
    ) -> dict[str, np.ndarray]:
        """Calibrated probabilities, sets, OOD scores/flags and melanoma flags for arrays of outputs.

        Rows whose `patients` entry gives any detail use the patient-details shift and its own calibration;
        the out-of-distribution gate always looks at the image alone (details cannot make a photo in-scope).
        """
        self.load()
        assert self._maha is not None
        t = self.temperature
        probs, sets, mel_flag, mel_thr = self._calibrated(logits, self.calibration, self.conformal_threshold)
        with_info = np.zeros(len(logits), dtype=bool)
        if patients is not None and self.patient_prior is not None:
            with_info = np.array([p.given for p in patients], dtype=bool)
        if with_info.any():
            assert self.patient_prior is not None
            shifted = logits[with_info] + self.patient_prior.shift([p for p, g in zip(patients or [], with_info) if g])
            parts = self._calibrated(shifted, self.calibration["with_patient_info"], self.patient_conformal_threshold)
            for whole, part in zip((probs, sets, mel_flag, mel_thr), parts):
                whole[with_info] = part
        e = energy(logits, t)
        m = self._maha.score(embeddings)
        ood_cfg = self.calibration["ood"]
        ood_energy = e > ood_cfg["energy_threshold"]
        ood_maha = m > ood_cfg["mahalanobis_threshold"]
        malignant_cols = [HAM_CLASSES.index(c) for c in sorted(MALIGNANT_CODES)]
        urgent = mel_flag | sets[:, malignant_cols].any(axis=1)
        return {
            "raw_probs": softmax(logits),
            "probs": probs,
            "sets": sets,
            "energy": e,
            "mahalanobis": m,
            "ood_energy": ood_energy,
            "ood_mahalanobis": ood_maha,
            "ood": ood_energy | ood_maha,
            "melanoma_flag": mel_flag,
            "melanoma_threshold": mel_thr,
            "urgent": urgent,
            "with_patient_info": with_info,
        }

    # -- single image API (the chat plugin) ---------------------------------------------------------------
    def predict_image(
        self, image: Image.Image, heatmap: bool = False, patient: PatientInfo | None = None
    ) -> Prediction:
        from dermchat.classifier.data import to_model_frame

        frame = to_model_frame(image, self.input_size)
        logits, emb = self.forward_frames(frame[None])
        a = self.analyse(logits, emb, [patient] if patient is not None else None)
        probs = a["probs"][0]
        mel_threshold = float(a["melanoma_threshold"][0])
        in_set = [HAM_CLASSES[k] for k in np.argsort(-probs) if a["sets"][0, k]]
        reasons = []
        if a["ood_mahalanobis"][0]:
            reasons.append("the image does not resemble the dermoscopic lesion photos the model was trained on")
        if a["ood_energy"][0]:
            reasons.append("the model's evidence for every one of its 7 lesion types is unusually weak")
        mel_p = float(probs[HAM_CLASSES.index("mel")])
        urgent_reason = None
        if a["urgent"][0]:
            malignant = [c for c in in_set if c in MALIGNANT_CODES]
            parts = []
            if a["melanoma_flag"][0]:
                parts.append(
                    f"melanoma probability {mel_p:.2f} is above the high-sensitivity threshold {mel_threshold:.2f}"
                )
            if malignant:
                parts.append("the prediction set contains " + ", ".join(malignant))
            urgent_reason = "; ".join(parts)
        cam = None
        if heatmap:
            cam = self.heatmap(frame, int(np.argmax(probs)))
        return Prediction(
            probabilities=probs,
            prediction_set=in_set,
            coverage=self.coverage,
            energy=float(a["energy"][0]),
            mahalanobis=float(a["mahalanobis"][0]),
            out_of_distribution=bool(a["ood"][0]),
            ood_reason="; ".join(reasons) or None,
            melanoma_probability=mel_p,
            melanoma_threshold=mel_threshold,
            urgent=bool(a["urgent"][0]),
            urgent_reason=urgent_reason,
            heatmap=cam,
            extra={
                "raw_probabilities": {c: float(p) for c, p in zip(HAM_CLASSES, a["raw_probs"][0])},
                "patient_info_used": patient.describe() if a["with_patient_info"][0] and patient else None,
            },
        )

    def heatmap(self, frame: np.ndarray, class_index: int) -> np.ndarray:
        from dermchat.classifier.model import uint8_to_input
        from dermchat.classifier.saliency import grad_cam

        # No lock: grad_cam takes the gradient with autograd.grad, which leaves the weights' .grad untouched, so
        # two turns draw their heat maps at once instead of one after the other.
        return grad_cam(self.model, uint8_to_input(frame), class_index)
