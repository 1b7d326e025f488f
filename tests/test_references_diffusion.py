"""sd-diffusion with tiny random pipelines loaded through ``from_pretrained``: txt2img, img2img, LoRA, cache,
progress, labelling, and the verification filter (with the real ham-cnn classifier when its weights exist)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from references_fixtures import diagnosis, diffusion_app, ham_rows, make_ctx, write_lora

from dermchat.context import TurnContext
from dermchat.hookspecs import hookimpl
from dermchat.providers import Diagnoser, ReferenceGenerator
from dermchat.references import SYNTHETIC_LABEL
from dermchat.references.diffusion import lesion_crop
from dermchat.references.verify import MIN_PROBABILITY, judge, why_unchecked
from dermchat.request import TurnRequest
from dermchat.results import Diagnosis, DifferentialEntry, QualityReport, Reference
from dermchat.settings import Settings
from plugins.diffusion import DiffusionProvider

pytest.importorskip("diffusers")
DIFFERENTIAL = (("melanocytic_nevus", 0.6), ("melanoma", 0.3), ("benign_keratosis", 0.1))


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dermchat.references.tiny import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd") / "pipe")


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DERMCHAT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture()
def photo(ham_image: Path) -> Image.Image:
    return Image.open(ham_image).convert("RGB")


def generator(model: Path, **options: Any) -> DiffusionProvider:
    provider = DiffusionProvider()
    provider.configure({"model": str(model), "steps": 2, "size": 64, "scheduler": "ddim", "device": "cpu", **options})
    return provider


def pixels(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_availability_is_fast_and_explained(tmp_path: Path, tiny_sd: Path) -> None:
    assert generator(tiny_sd).available() == (True, "")
    ok, reason = generator(tmp_path / "nothing-here").available()
    assert not ok and "no model_index.json" in reason
    hub = DiffusionProvider()
    ok, reason = hub.available()  # the default hub id; nothing is cached on this machine
    assert not ok and "local Hugging Face cache" in reason and "options.sd-diffusion.model" in reason
    ok, reason = generator(tiny_sd, lora=str(tmp_path / "no-lora")).available()
    assert not ok and "LoRA weights not found" in reason
    assert DiffusionProvider.needs_gpu and DiffusionProvider.synthetic


def test_txt2img_references_are_labelled_seeded_cached_and_report_progress(
    tiny_sd: Path, photo: Image.Image, tmp_path: Path
) -> None:
    provider = generator(tiny_sd, seed=7)
    events: list[tuple[str, float | None]] = []
    ctx = make_ctx(photo, tmp_path / "t1", diagnosis(*DIFFERENTIAL), progress=lambda m, f=None: events.append((m, f)))
    refs = provider.references(ctx)
    assert [r.condition_id for r in refs] == [c for c, _ in DIFFERENTIAL]
    for ref in refs:
        assert ref.synthetic and ref.caption.endswith(SYNTHETIC_LABEL)
        assert "seed 7" in ref.provenance and ref.extra["seed"] == 7 and ref.extra["prompt"] in ref.provenance
        assert ref.extra["cached"] is False and len(ref.extra["step_ms"]) == 2
        assert ref.verified is None and ref.take_check()[1] == "ham-cnn"  # the engine has the default verifier judge it
        assert Path(ref.path).parent == tmp_path / "t1" / "references"
        assert Image.open(ref.path).size == (64, 64)
        assert "Fitzpatrick type" in ref.extra["prompt"]  # the user's skin tone is part of the concept prompt
        assert Image.open(ref.path).text["DermChat-Label"] == SYNTHETIC_LABEL  # a saved copy keeps its label
    assert any("step 2/2" in m for m, _ in events) and events[-1][1] == pytest.approx(1.0)

    events.clear()
    ctx2 = make_ctx(photo, tmp_path / "t2", diagnosis(*DIFFERENTIAL), progress=lambda m, f=None: events.append((m, f)))
    again = provider.references(ctx2)
    assert all(r.extra["cached"] for r in again) and not events
    for first, second in zip(refs, again):
        np.testing.assert_array_equal(pixels(first.path), pixels(second.path))

    fresh = generator(tiny_sd, seed=7, cache=False).references(
        make_ctx(photo, tmp_path / "t3", diagnosis(*DIFFERENTIAL))
    )
    np.testing.assert_array_equal(pixels(fresh[0].path), pixels(refs[0].path))  # a seed reproduces its image
    other = generator(tiny_sd, seed=8, cache=False).references(
        make_ctx(photo, tmp_path / "t4", diagnosis(*DIFFERENTIAL))
    )
    assert np.abs(pixels(other[0].path) - pixels(refs[0].path)).mean() > 1.0


def test_lesion_crop_keeps_the_lesion_in_view() -> None:
    img = Image.new("RGB", (200, 150), (255, 255, 255))
    img.paste((200, 0, 0), (120, 40, 150, 70))
    for bbox in ((120, 40, 150, 70), (0.6, 40 / 150, 0.75, 70 / 150)):
        crop = np.asarray(lesion_crop(img, bbox, 64))
        assert tuple(crop[32, 32]) == (200, 0, 0)
        assert tuple(crop[1, 1]) == (255, 255, 255) and tuple(crop[62, 62]) == (255, 255, 255)
        red = (crop[..., 0] > 150) & (crop[..., 1] < 60)
        assert 0.1 < red.mean() < 0.3  # the box plus margin, not the whole image and not a sliver
    assert lesion_crop(img, None, 64).size == (64, 64)


def test_img2img_starts_from_the_users_photo(tiny_sd: Path, photo: Image.Image, tmp_path: Path) -> None:
    provider = generator(tiny_sd, mode="img2img", strength=0.5, steps=4)
    quality = QualityReport(
        provider_id="q", score=80, acceptable=True, threshold=50, band="good", lesion_bbox=(0.3, 0.3, 0.7, 0.7)
    )
    ctx = make_ctx(photo, tmp_path / "i2i", diagnosis(("melanocytic_nevus", 1.0)), quality=quality)
    ref = provider.references(ctx)[0]
    assert ref.extra["mode"] == "img2img" and ref.extra["strength"] == 0.5
    assert len(ref.extra["step_ms"]) == 2  # strength 0.5 of 4 steps
    ctx_other = make_ctx(photo.rotate(90), tmp_path / "i2i-b", diagnosis(("melanocytic_nevus", 1.0)), quality=quality)
    ctx_other.result.image_sha256 = "1" * 64
    other = provider.references(ctx_other)[0]
    assert other.extra["cache_key"] != ref.extra["cache_key"] and not other.extra["cached"]


def test_lora_weights_change_the_pipeline(tiny_sd: Path, photo: Image.Image, tmp_path: Path) -> None:
    zero = write_lora(tiny_sd, tmp_path / "lora-zero", zero=True)
    real = write_lora(tiny_sd, tmp_path / "lora-real", scale=0.5)

    def image(**options: Any) -> tuple[np.ndarray, DiffusionProvider]:
        provider = generator(tiny_sd, cache=False, **options)
        ref = provider.references(
            make_ctx(photo, tmp_path / str(len(options)) / str(options.get("lora")), diagnosis(("melanoma", 1.0)))
        )[0]
        return pixels(ref.path), provider

    base, plain = image()
    same, _ = image(lora=str(zero))
    changed, with_lora = image(lora=str(real), lora_scale=1.0)
    np.testing.assert_array_equal(base, same)
    assert np.abs(changed - base).mean() > 1.0
    assert with_lora.lora_method == "peft (load_lora_weights + fuse_lora)"
    from safetensors.torch import load_file

    tensors = load_file(str(real / "pytorch_lora_weights.safetensors"))
    key = next(k for k in tensors if k.endswith("lora_A.weight"))
    path = key[len("unet.") : -len(".lora_A.weight")]
    delta = tensors[key.replace("lora_A", "lora_B")] @ tensors[key]
    fused = with_lora.txt2img.unet.get_submodule(path)
    fused = getattr(fused, "base_layer", fused).weight.detach()  # peft keeps the fused weight in its base layer
    original = plain.txt2img.unet.get_submodule(path).weight.detach()
    np.testing.assert_allclose((fused - original).numpy(), delta.numpy(), atol=1e-5)


class RankingDiagnoser(Diagnoser):
    """A test double with a fixed ranking, to pin down the top-three rule; it records what it was shown."""

    id = "ranking-double"

    def __init__(self, ranking: list[str]) -> None:
        super().__init__()
        self.ranking = ranking
        self.seen_sizes: list[tuple[int, int]] = []

    def diagnose(self, ctx: TurnContext) -> Diagnosis:
        assert ctx.image is not None and ctx.diagnosis is None
        self.seen_sizes.append(ctx.image.size)
        n = len(self.ranking)
        return Diagnosis(
            provider_id=self.id,
            differential=[
                DifferentialEntry(condition_id=c, probability=(n - i) / (n * (n + 1) / 2))
                for i, c in enumerate(self.ranking)
            ],
        )


class Illustrator(ReferenceGenerator):
    """A test double for a generator: one plain illustration per condition, each awaiting the engine's check."""

    id = "illustrator"
    synthetic = True

    def __init__(self, conditions: list[str], verifier_id: str) -> None:
        super().__init__()
        self.conditions, self.verifier_id = conditions, verifier_id

    def references(self, ctx: TurnContext) -> list[Reference]:
        out = []
        for condition_id in self.conditions:
            image = Image.new("RGB", (64, 64), (150, 100, 90))
            image.save(ctx.workdir / f"{condition_id}.png")
            ref = Reference(
                path=str(ctx.workdir / f"{condition_id}.png"),
                condition_id=condition_id,
                caption=condition_id,
                provenance="test",
                synthetic=True,
                provider_id=self.id,
            )
            ref.await_check(image, self.verifier_id)
            out.append(ref)
        return out


class Providers:
    def __init__(self, *providers: Any) -> None:
        self.providers = providers

    @hookimpl
    def register_diagnosers(self, register: Any) -> None:
        for provider in self.providers:
            if isinstance(provider, Diagnoser):
                register(provider)

    @hookimpl
    def register_reference_generators(self, register: Any) -> None:
        for provider in self.providers:
            if isinstance(provider, ReferenceGenerator):
                register(provider)


def _verified(tmp_path: Path, photo: Path, conditions: list[str], verifier: Diagnoser | None, verifier_id: str) -> Any:
    """A turn whose only reference generator draws ``conditions``, checked by ``verifier`` (None: not installed)."""
    from core_helpers import fake_app

    plugin = Providers(Illustrator(conditions, verifier_id), *([verifier] if verifier else []))
    return fake_app(tmp_path, [(plugin, "verifying")], references=["illustrator"]).run_turn_sync(
        TurnRequest(image=photo, force=True)
    )


def test_top_three_rule(tmp_path: Path) -> None:
    """The engine runs the verifier on each generated image (never the user's photo), and the rule decides."""
    from core_helpers import solid_image

    photo = solid_image(tmp_path / "photo.png", (200, 160, 140), size=(80, 60))
    double = RankingDiagnoser(["melanocytic_nevus", "benign_keratosis", "melanoma", "dermatofibroma"])
    result = _verified(tmp_path, photo, ["melanoma", "dermatofibroma"], double, double.id)
    assert [r.condition_id for r in result.references] == ["melanoma"] and result.references[0].verified is True
    hidden = result.hidden_references
    assert [r.condition_id for r in hidden] == ["dermatofibroma"] and hidden[0].verified is False
    details = hidden[0].extra["verification"]
    assert details["target_rank"] is None and len(details["top"]) == 3
    assert double.seen_sizes == [(64, 64), (64, 64)]  # the generated images, never the user's photo
    assert "references" in result.timings_ms
    missing = _verified(tmp_path, photo, ["tinea"], None, "ham-cnn")  # not registered
    assert missing.references[0].verified is None
    assert "not installed" in missing.references[0].extra["verification_notice"]


def test_conditions_outside_the_classifiers_classes_are_not_verified(photo: Image.Image, tmp_path: Path) -> None:
    ham = RankingDiagnoser(["melanocytic_nevus"])
    ham.id = "ham-cnn"
    assert "outside the image model's seven HAM10000 classes" in (why_unchecked(ham, "ham-cnn", "tinea") or "")
    assert why_unchecked(ham, "ham-cnn", "melanoma") is None


def test_engine_shows_verified_and_hides_unrecognised_illustrations(
    tiny_sd: Path, ham_image: Path, tmp_path: Path
) -> None:
    """Through the real engine: the fake colour-rule diagnoser verifies each generated image."""
    from fake_plugins import FakeDiagnoser

    from dermchat.cli import write_turn_files

    app = diffusion_app(tmp_path, tiny_sd)
    result = app.run_turn_sync(TurnRequest(image=ham_image, force=True))
    assert result.status == "ok", result.errors
    shown, hidden = result.references, result.hidden_references
    assert len(shown) + len(hidden) == 3
    rule = FakeDiagnoser()
    for ref in shown + hidden:
        image = Image.open(ref.path).convert("RGB")
        ctx = make_ctx(image, tmp_path, diagnosis(*DIFFERENTIAL))
        judged = rule.diagnose(ctx)
        likely = [e.condition_id for e in judged.top(3) if e.probability >= MIN_PROBABILITY]
        assert ref.verified is (ref.condition_id in likely or ref.condition_id in judged.prediction_set)
    assert all(r.verified for r in shown) and all(r.verified is False for r in hidden)
    if hidden:
        assert any("hidden" in n for n in result.notices)
    write_turn_files(result, tmp_path / "out")
    manifest = json.loads((tmp_path / "out" / "references.json").read_text())
    assert all(m["synthetic"] and m["caption"].endswith(SYNTHETIC_LABEL) for m in manifest)


def test_real_classifier_recognises_real_images(ham_dir: Path, tmp_path: Path) -> None:
    """Stub-free path: the shipped ham-cnn weights judge real HAM10000 images of known class."""
    from classifier_fixtures import weights_dir_or_skip

    weights_dir_or_skip()
    import plugins.ham_classifier
    from dermchat.plugin_manager import PluginManager

    pm = PluginManager(load_entry_points=False)
    pm.register(plugins.ham_classifier, "ham_classifier")
    ham = pm.collect().get("diagnoser", "ham-cnn")
    assert isinstance(ham, Diagnoser)
    ham.load()

    def verdict(image: Image.Image, condition_id: str) -> bool | None:
        assert why_unchecked(ham, "ham-cnn", condition_id) is None
        ctx = make_ctx(image, tmp_path, diagnosis(*DIFFERENTIAL), settings=Settings(workdir=str(tmp_path)))
        ctx.result.diagnosis = None  # the image alone, as the engine's check sees it
        return judge(ham.diagnose(ctx), condition_id, "ham-cnn")[0]

    images = [
        Image.open(ham_dir / "images" / f"{r['image_id']}.jpg").convert("RGB")
        for r in ham_rows(ham_dir, "nv", 8, skip=40)
    ]
    as_nevus = [verdict(img, "melanocytic_nevus") for img in images]
    as_vascular = [verdict(img, "vascular_lesion") for img in images]
    assert None not in as_nevus
    assert sum(as_nevus) >= 6, as_nevus
    assert sum(as_vascular) <= 4, as_vascular


def test_unchecked_illustrations_get_a_notice(tiny_sd: Path, ham_image: Path, tmp_path: Path) -> None:
    from core_helpers import fake_app

    import plugins.diffusion
    from dermchat.results import TurnResult

    app = fake_app(  # the default verifier, ham-cnn, is not installed here
        tmp_path,
        plugins=[(plugins.diffusion, "diffusion")],
        references=["sd-diffusion"],
        options={"sd-diffusion": {"model": str(tiny_sd), "steps": 2, "size": 64, "scheduler": "ddim", "device": "cpu"}},
    )
    result = app.run_turn_sync(TurnRequest(image=ham_image, force=True))
    notice = (
        "Some generated illustrations were not checked by the image model: the image model 'ham-cnn' is not installed."
    )
    assert result.references and all(r.verified is None for r in result.references) and notice in result.notices
    assert plugins.diffusion.extra_notices(result=result, audience="patient") == [notice]
    assert plugins.diffusion.extra_notices(result=TurnResult(turn_id="t"), audience="patient") is None


def test_a_generated_image_carries_a_visible_synthetic_band() -> None:
    """The caption and flag are lost when the file is saved or shared; the band in the pixels is not."""
    from dermchat.references.synthetic_mark import with_visible_mark

    clean = Image.new("RGB", (512, 512), (230, 190, 170))
    marked = np.asarray(with_visible_mark(clean)).astype(int)
    band = marked[-40:]
    assert band.mean() < 90 and band.max() > 200  # a dark band with light lettering
    np.testing.assert_array_equal(marked[:400], np.asarray(clean)[:400])  # the rest of the picture is untouched
    assert np.asarray(with_visible_mark(Image.new("RGB", (64, 48), (255, 255, 255))))[-14:].mean() < 130
