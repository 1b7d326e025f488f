"""End to end through gradio_client against the real app (built-in plugins, offline) launched in-process."""

from __future__ import annotations

from pathlib import Path

import pytest
from app_fixtures import live_app  # noqa: F401 - fixture

from dermchat.safety import NOT_A_DIAGNOSIS
from dermchat.vocabulary import get_vocabulary


@pytest.fixture(scope="module")
def client(live_app):
    from gradio_client import Client

    url, _ = live_app
    return Client(url, verbose=False)


def test_turn_endpoint_streams_steps_and_returns_the_structured_result(client, ham_image: Path) -> None:
    from gradio_client import handle_file

    question = "Should I worry about this mole?"
    job = client.submit(
        handle_file(str(ham_image)), question, "clinician", False, None, "", "", True, True, api_name="/turn"
    )  # with the heat map and the reference images as files
    partials = list(job)
    final = job.result()
    assert len(partials) >= 2, "the endpoint should stream intermediate step events"
    steps = [e["step"] for e in final["events"] if e["kind"] == "start"]
    assert steps[:2] == ["quality", "diagnosis"]
    result = final["result"]
    assert result["status"] in {"ok", "abstained"}, result.get("message")
    vocab = get_vocabulary()
    probs = [e["probability"] for e in result["diagnosis"]["differential"]]
    assert all(e["condition_id"] in vocab for e in result["diagnosis"]["differential"])
    assert abs(sum(probs) - 1) < 1e-3
    assert NOT_A_DIAGNOSIS in result["notices"]
    assert result["quality"]["score"] > 0 and result["image_sha256"]
    assert result["explanation"] and result["explanation"]["citations"]
    assert result["references"] and not any(r["synthetic"] for r in result["references"])
    assert all(Path(r["image"]).exists() and "real image" in r["caption"] for r in result["references"])
    if not result["diagnosis"]["abstained"]:
        assert Path(result["diagnosis"]["heatmap"]).exists()


def test_turn_endpoint_returns_no_files_unless_asked(client, ham_image: Path) -> None:
    """By default a /turn answer is JSON only: no heat map drawn, no reference image to download (issue 23)."""
    from gradio_client import handle_file

    result = client.predict(handle_file(str(ham_image)), "", "clinician", False, api_name="/turn")["result"]
    assert result["status"] in {"ok", "abstained"}, result.get("message")
    assert result["diagnosis"]["heatmap_path"] is None and "heatmap" not in result["diagnosis"]
    assert result["references"] and all("image" not in r and "path" not in r for r in result["references"])
    assert all("real image" in r["caption"] and r["provenance"] for r in result["references"])


def test_turn_endpoint_rejects_a_non_image_politely(client, tmp_path: Path) -> None:
    from gradio_client import handle_file

    fake = tmp_path / "notes.txt"
    fake.write_text("not a photo")
    final = client.predict(handle_file(str(fake)), "", "patient", False, api_name="/turn")
    assert final["result"]["status"] == "invalid_input"
    assert "doesn't look like a photo" in final["result"]["message"]


def test_turn_endpoint_without_image_asks_questions(client) -> None:
    final = client.predict(None, "itchy red rings on my arm that spread", "patient", False, api_name="/turn")
    result = final["result"]
    assert result["status"] == "no_image"
    assert NOT_A_DIAGNOSIS in result["notices"]


def test_turn_endpoint_takes_the_optional_details(client, ham_dir: Path) -> None:
    from gradio_client import handle_file

    image = ham_dir / "images" / "ISIC_0027419.jpg"
    final = client.predict(handle_file(str(image)), "", "clinician", False, 80, "M", "scalp", api_name="/turn")
    diagnosis = final["result"]["diagnosis"]
    assert diagnosis["provider_id"] == "ham-cnn" and not diagnosis["abstained"]
    assert diagnosis["extra"]["patient_info_used"] == "age 80, male, scalp"


def test_turn_endpoint_compares_with_an_optional_earlier_photo(client, ham_dir: Path) -> None:
    from gradio_client import handle_file

    image = handle_file(str(ham_dir / "images" / "ISIC_0027419.jpg"))
    final = client.predict(image, "", "patient", True, None, "", "", False, False, image, api_name="/turn")
    comparison = final["result"]["morphology"]["comparison"]
    assert comparison is not None and not comparison["changed"] and "No clear change" in comparison["summary"]
    plain = client.predict(image, "", "patient", True, api_name="/turn")
    assert plain["result"]["morphology"]["comparison"] is None
