"""The offline default diagnoser `ham-cnn`: the project's own CNN trained on HAM10000.

It answers with calibrated probabilities over the 7 HAM10000 lesion types mapped onto the shared
vocabulary, a conformal prediction set ("the answer is likely one of ..."), a triage hint, and, when the
turn asks for one (the clinician view), a Grad-CAM heat map. It abstains rather than guess when the photo is
not skin (the quality step says so) or does not look like the dermoscopic images it was trained on.

torch is imported only when the model loads, so registering this plugin costs nothing. The forward pass runs on
ONNX Runtime when the weights folder has a matching `model.onnx` (`export-onnx`), else on torch; the heat map
always needs torch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dermchat.classifier.patient_info import PatientInfo, ignored_details
from dermchat.context import TurnContext
from dermchat.hookspecs import hookimpl
from dermchat.providers import Diagnoser, ProviderError
from dermchat.results import Diagnosis, DifferentialEntry, TriageTier
from dermchat.vocabulary import Vocabulary, get_vocabulary

PROVIDER_ID = "ham-cnn"
SCOPE_NOTE = (
    "Trained on dermoscopic images of 7 pigmented lesion types (HAM10000, mostly light skin); "
    "not validated on phone photos, rashes or darker skin, and not for clinical use."
)


def _default_weights_dir() -> Path:
    from dermchat.paths import WEIGHTS_DIR

    return WEIGHTS_DIR / "ham_cnn"


class HamCnnDiagnoser(Diagnoser):
    """Calibrated HAM10000 classifier (ImageNet EfficientNet-Lite0 fine-tuned in-project) with conformal sets,
    abstention and Grad-CAM."""

    id = PROVIDER_ID
    label = "HAM10000 CNN (offline, trained in-project)"
    version = "2.3"
    needs_gpu = False
    description = "EfficientNet-Lite0 (ImageNet) fine-tuned on HAM10000 dermoscopy; temperature-scaled, conformal sets."

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        weights_dir: str | None = Field(None, description="folder with model.pt + calibration (default: shipped)")
        coverage: float = Field(0.9, gt=0.5, lt=1.0, description="conformal prediction-set coverage")
        heatmap: bool = Field(
            True,
            description="write a Grad-CAM overlay PNG when the turn asks for one "
            "(the chat's clinician view, /turn with heatmap=true)",
        )
        abstain_on_ood: bool = Field(True, description="abstain when the image looks unlike the training data")
        use_patient_info: bool = Field(
            True, description="let the age, sex and body site the user gives inform the model"
        )

    def __init__(self) -> None:
        super().__init__()
        self._predictor: Any = None

    @property
    def opts(self) -> HamCnnDiagnoser.Options:
        """The options, typed: ``configure`` always builds them from ``Options``."""
        assert isinstance(self.options, HamCnnDiagnoser.Options)
        return self.options

    def weights_dir(self) -> Path:
        opts = self.opts
        return Path(opts.weights_dir) if opts.weights_dir else _default_weights_dir()

    def available(self) -> tuple[bool, str]:
        from dermchat.classifier.predictor import missing_weight_files

        missing = missing_weight_files(self.weights_dir())
        if missing:
            return False, f"weights not found at {self.weights_dir()} (missing {', '.join(missing)})"
        try:
            import torch  # noqa: F401
        except ImportError:
            return False, "torch is not installed"
        return True, ""

    def _load(self) -> None:
        from dermchat.classifier.predictor import Predictor

        ok, reason = self.available()
        if not ok:
            raise ProviderError(reason)
        predictor = Predictor(self.weights_dir(), coverage=self.opts.coverage)
        predictor.load()
        self._predictor = predictor

    @property
    def predictor(self) -> Any:
        self.load()
        return self._predictor

    def diagnose(self, ctx: TurnContext) -> Diagnosis:
        if ctx.image is None:
            raise ProviderError("the image model needs a photo")
        opts = self.opts
        # the fields every answer of this provider carries
        base: dict[str, Any] = {"provider_id": self.id, "provider_version": self.version, "coverage": opts.coverage}
        if ctx.quality is not None and not ctx.quality.is_skin:
            return Diagnosis(
                **base,
                abstained=True,
                abstain_reason="the photo does not seem to show skin, so the lesion model was not run",
                rationale=SCOPE_NOTE,
            )
        self.load()
        ctx.progress("running the lesion classifier", 0.2)
        patient = PatientInfo.from_user(ctx.age, ctx.sex, ctx.body_site) if opts.use_patient_info else None
        dropped = ignored_details(ctx.age, ctx.sex, ctx.body_site) if opts.use_patient_info else []
        if dropped:
            base["notices"] = ["Not taken into account: " + "; ".join(dropped) + "."]
        pred = self._predictor.predict_image(ctx.image, heatmap=False, patient=patient)
        used = pred.extra.get("patient_info_used")
        vocab = get_vocabulary()
        differential = [
            DifferentialEntry(condition_id=vocab.from_ham_code(code), probability=float(p), label=code)
            for code, p in sorted(pred.as_dict().items(), key=lambda kv: kv[1], reverse=True)
        ]
        # Probabilities are made to sum to exactly one in one place, the engine's diagnosis step (steps/diagnosis.py).
        extra = self._measurements(pred, used)
        if pred.out_of_distribution and opts.abstain_on_ood:
            return Diagnosis(
                **base,
                abstained=True,
                ood_score=pred.mahalanobis,
                extra=extra,
                abstain_reason=f"the image model is out of its depth: {pred.ood_reason}",
                rationale=SCOPE_NOTE,
            )
        prediction_set = [vocab.from_ham_code(code) for code in pred.prediction_set]
        hint, why = triage_hint(pred, prediction_set, vocab)
        heatmap_path = None
        if opts.heatmap and ctx.wants_heatmap:  # never unasked: see HEATMAP_OPTION
            ctx.progress("drawing the heat map", 0.7)
            heatmap_path = self._write_heatmap(ctx, pred)
        return Diagnosis(
            **base,
            differential=differential,
            prediction_set=prediction_set,
            triage_hint=hint,
            triage_reason=why,
            rationale=self._rationale(differential[0], len(prediction_set), used),
            heatmap_path=heatmap_path,
            ood_score=pred.mahalanobis,
            extra=extra,
        )

    def _measurements(self, pred: Any, used: Any) -> dict[str, Any]:
        """What the clinician view, the study log and the consistency checks read beside the differential."""
        return {
            "ham_probabilities": pred.as_dict(),
            "uncalibrated_probabilities": pred.extra["raw_probabilities"],
            "temperature": self._predictor.temperature,
            "energy": pred.energy,
            "mahalanobis": pred.mahalanobis,
            "melanoma_probability": pred.melanoma_probability,
            "melanoma_threshold": pred.melanoma_threshold,
            "prediction_set_ham": pred.prediction_set,
            "patient_info_used": used,
        }

    def _rationale(self, top: DifferentialEntry, set_size: int, used: Any) -> str:
        """One line for clinicians: the top class, the size of the prediction set, the details used, the scope."""
        return (
            f"Top class {get_vocabulary().get(top.condition_id).clinician_name} ({top.probability:.0%}); "
            f"{set_size} condition(s) in the {self.opts.coverage:.0%} prediction set. "
            + (f"The details given ({used}) were weighed in with the image. " if used else "")
            + SCOPE_NOTE
        )

    def _write_heatmap(self, ctx: TurnContext, pred: Any) -> str:
        """Grad-CAM for the top class over the same crop the model saw, at a viewable size."""
        from PIL import Image

        from dermchat.classifier import HAM_CLASSES
        from dermchat.classifier.data import to_model_frame
        from dermchat.classifier.saliency import save_overlay

        assert ctx.image is not None
        frame = to_model_frame(ctx.image, self._predictor.input_size)
        cam = self._predictor.heatmap(frame, HAM_CLASSES.index(pred.top))
        view = Image.fromarray(to_model_frame(ctx.image, size=(384, 288)))
        name = f"ham_cnn_heatmap_{(ctx.image_sha256 or 'image')[:16]}.png"
        return str(save_overlay(view, cam, Path(ctx.workdir) / name))


def benchmark(options: dict[str, Any]) -> dict[str, Any]:
    """Cold load time and one-thread ms per image (with and without the heat map)."""
    import statistics

    import torch
    from PIL import Image

    from dermchat.classifier.predictor import Predictor

    image_path = options.get("image")
    if not image_path:
        raise ValueError("the ham-cnn benchmark needs an image path")
    runs = max(3, int(options.get("runs", 10)))
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t0 = time.perf_counter()
        predictor = Predictor(_default_weights_dir())
        predictor.load()
        cold_s = time.perf_counter() - t0
        with Image.open(image_path) as im:
            img = im.convert("RGB")
        predictor.predict_image(img)
        plain, heat = [], []
        for _ in range(runs):
            t = time.perf_counter()
            predictor.predict_image(img)
            plain.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            predictor.predict_image(img, heatmap=True)
            heat.append((time.perf_counter() - t) * 1000)
    finally:
        torch.set_num_threads(previous)
    return {
        "cold_load_s": round(cold_s, 3),
        "runtime": predictor.runtime,
        "threads": 1,
        "runs": runs,
        "ms_per_image_median": round(statistics.median(plain), 2),
        "ms_per_image_with_heatmap_median": round(statistics.median(heat), 2),
    }


@hookimpl
def register_diagnosers(register: Callable[[Diagnoser], None]) -> None:
    register(HamCnnDiagnoser())


@hookimpl
def register_benchmarks(register: Callable[[str, Callable[[dict[str, Any]], dict[str, Any]]], None]) -> None:
    register("ham-cnn", benchmark)


def triage_hint(pred: Any, prediction_set: list[str], vocab: Vocabulary) -> tuple[TriageTier, str]:
    """The provider's triage hint and its reason. Urgent when the high-sensitivity melanoma threshold fires or any
    malignant condition is in the prediction set; reassuring only when the set holds a single benign condition;
    routine otherwise. It is a hint: `dermchat.safety` sets the tier, e.g. it reads an urgent hint raised only by
    conditions with a routine referral pathway (basal cell carcinoma under NICE NG12) as routine, unless the melanoma
    flag is up."""
    if pred.urgent or any(vocab.get(c).malignant for c in prediction_set):
        return "urgent", f"see a clinician: {pred.urgent_reason}"
    if len(prediction_set) > 1:
        return "routine", "several benign conditions remain possible"
    return "reassure", "the prediction set holds a single benign condition"
