"""`vitkit serve`: every endpoint, the same predictions as `vitkit predict`, dynamic batching,
Prometheus metrics, and a JSON 4xx for each kind of bad request with the server answering
the next good one (FastAPI's TestClient, and a live server on a loopback port)."""

from __future__ import annotations

import asyncio
import base64
import io
import json

import pytest
import torch
from PIL import Image

import vitkit
from tests.serve_helpers import (
    CLASSES,
    bomb_png,
    live_server,
    png_bytes,
    tiny_checkpoint,
    truncated_png,
)
from vitkit.infer import predict

pytest.importorskip("fastapi")
pytest.importorskip("onnxruntime")

from fastapi.testclient import TestClient  # noqa: E402

from vitkit.export import export_onnx  # noqa: E402
from vitkit.serve import DynamicBatcher, TorchBackend, create_app, load_backend  # noqa: E402

LOCAL = "http://127.0.0.1"  # the Host the app answers (TestClient's 'testserver' gets 403)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("serve") / "ckpt")


@pytest.fixture(scope="module")
def client(checkpoint):
    backend = TorchBackend(vitkit.load_pretrained(checkpoint), device="cpu", fp32=True)
    with TestClient(create_app(backend, max_body_mb=1.0), base_url=LOCAL) as test_client:
        yield test_client


def expected_labels(checkpoint, tmp_path, data: bytes, k: int = 3):
    path = tmp_path / "image.png"
    path.write_bytes(data)
    row = predict(vitkit.load_pretrained(checkpoint), [path], top_k=k, fp32=True)[0]
    return row.labels, row.probs


def test_model_health_and_page(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    info = client.get("/v1/model").json()
    assert info["classes"] == CLASSES and info["input_size"] == [32, 32]
    assert info["mean"] == [0.5, 0.5, 0.5] and info["std"] == [0.5, 0.5, 0.5]
    assert info["num_parameters"] > 1000 and info["backend"] == "torch" and info["explain"]
    page = client.get("/")
    assert page.status_code == 200 and "<title>vitkit</title>" in page.text


def test_predict_matches_vitkit_predict(client, checkpoint, tmp_path):
    data = png_bytes(3)
    labels, probs = expected_labels(checkpoint, tmp_path, data)
    answer = client.post("/v1/predict?top_k=3", files={"file": ("a.png", data, "image/png")})
    assert answer.status_code == 200, answer.text
    rows = answer.json()["predictions"]
    assert [r["label"] for r in rows[0]] == labels
    assert [r["score"] for r in rows[0]] == pytest.approx(probs, abs=1e-5)
    raw = client.post("/v1/predict?top_k=3", content=data, headers={"content-type": "image/png"})
    assert raw.json()["predictions"] == rows


def test_predict_several_files_and_top_k(client):
    files = [("files", (f"{i}.png", png_bytes(i), "image/png")) for i in range(3)]
    answer = client.post("/v1/predict?top_k=2", files=files)
    assert answer.status_code == 200, answer.text
    rows = answer.json()["predictions"]
    assert len(rows) == 3 and all(len(r) == 2 for r in rows)
    assert answer.json()["files"] == ["0.png", "1.png", "2.png"]


def test_explain_gives_an_overlay_png_and_top_k(client):
    answer = client.post("/v1/explain?top_k=2", files={"file": ("a.png", png_bytes(5))})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert len(body["top_k"]) == 2 and body["top_k"][0]["label"] in CLASSES
    png = base64.b64decode(body["overlay"].split(",", 1)[1])
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and min(image.size) >= 256
    raw = client.post("/v1/explain?format=png", content=png_bytes(5))
    assert raw.headers["content-type"] == "image/png"
    assert json.loads(raw.headers["x-vitkit-top-k"])[0]["label"] == body["top_k"][0]["label"]


BAD_REQUESTS = {
    "not an image": (dict(files={"file": ("a.png", b"hello, not a picture")}), 415,
                     "not an image"),
    "truncated": (dict(files={"file": ("t.png", truncated_png())}), 400, "truncated"),
    "decompression bomb": (dict(files={"file": ("b.png", bomb_png())}), 413,
                           "decompression bomb"),
    "oversized body": (dict(content=b"\x00" * 1_500_000), 413, "limit of 1 MB"),
    "wrong field name": (dict(files={"image": ("a.png", png_bytes())}), 422, "'file'"),
    "empty body": (dict(content=b""), 400, "no image"),
    "empty file": (dict(files={"file": ("e.png", b"")}), 400, "empty"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_requests_get_a_json_4xx_and_the_server_goes_on(client, case):
    kwargs, status, phrase = BAD_REQUESTS[case]
    answer = client.post("/v1/predict", **kwargs)
    assert answer.status_code == status, answer.text
    assert phrase in answer.json()["error"]
    assert client.post("/v1/predict", files={"file": ("a.png", png_bytes())}).status_code == 200


def test_bad_parameters_and_routes(client):
    for url, status in (("/v1/predict?top_k=0", 422), ("/v1/predict?top_k=two", 422),
                        ("/v1/explain?format=gif", 422), ("/v2/predict", 404)):
        answer = client.post(url, files={"file": ("a.png", png_bytes())})
        assert answer.status_code == status and answer.json()["error"], url
    two = [("files", ("a.png", png_bytes(1))), ("files", ("b.png", png_bytes(2)))]
    answer = client.post("/v1/explain", files=two)
    assert answer.status_code == 422 and "one image" in answer.json()["error"]
    assert client.get("/v1/predict").status_code == 405


def test_metrics_in_prometheus_text(client):
    client.post("/v1/predict", files={"file": ("a.png", png_bytes())})
    client.post("/v1/predict", files={"file": ("a.txt", b"not a picture")})
    text = client.get("/metrics").text
    assert 'vitkit_requests_total{endpoint="/v1/predict",status="200"}' in text
    assert "vitkit_request_seconds_bucket" in text and "vitkit_batch_size_bucket" in text
    assert 'vitkit_requests_total{endpoint="/v1/predict",status="415"}' in text


def test_metrics_count_answers_from_every_layer(client):
    # Refusals made before routing (a foreign Host) and by the route (a 404) are counted with
    # their own status, each exactly once.
    def count(endpoint: str, status: int) -> float:
        line = f'vitkit_requests_total{{endpoint="{endpoint}",status="{status}"}} '
        found = [row for row in client.get("/metrics").text.splitlines() if row.startswith(line)]
        return float(found[0].split()[-1]) if found else 0.0

    before = count("unmatched", 403), count("unmatched", 404), count("/v1/predict", 200)
    assert client.post("/v1/predict", headers={"host": "evil.example"},
                       files={"file": ("a.png", png_bytes())}).status_code == 403
    assert client.post("/v2/predict").status_code == 404
    assert client.post("/v1/predict", files={"file": ("a.png", png_bytes())}).status_code == 200
    after = count("unmatched", 403), count("unmatched", 404), count("/v1/predict", 200)
    assert [b - a for a, b in zip(before, after, strict=True)] == [1.0, 1.0, 1.0]


def test_onnx_file_serves_the_same_predictions(checkpoint, tmp_path):
    path = export_onnx(vitkit.load_pretrained(checkpoint), tmp_path / "m.onnx")
    torch_backend = TorchBackend(vitkit.load_pretrained(checkpoint), device="cpu", fp32=True)
    data = {"file": ("a.png", png_bytes(7))}
    with TestClient(create_app(load_backend(path)), base_url=LOCAL) as onnx, \
            TestClient(create_app(torch_backend), base_url=LOCAL) as eager:
        got = onnx.post("/v1/predict?top_k=3", files=data).json()["predictions"]
        want = eager.post("/v1/predict?top_k=3", files=data).json()["predictions"]
        assert [r["label"] for r in got[0]] == [r["label"] for r in want[0]]
        assert onnx.get("/v1/model").json()["backend"] == "onnx"
        answer = onnx.post("/v1/explain", files=data)
        assert answer.status_code == 501 and "checkpoint" in answer.json()["error"]


def test_batcher_runs_concurrent_requests_as_one_batch():
    sizes: list[int] = []

    async def scenario(max_batch: int) -> list[torch.Tensor]:
        batcher = DynamicBatcher(lambda x: x * 2, max_batch=max_batch, max_delay=0.2,
                                 on_batch=sizes.append)
        await batcher.start()
        try:
            jobs = [batcher.submit(torch.full((1, 2), float(i))) for i in range(8)]
            return await asyncio.gather(*jobs)
        finally:
            await batcher.stop()

    results = asyncio.run(scenario(32))
    assert sizes == [8]
    assert [r.tolist() for r in results] == [[[2.0 * i] * 2] for i in range(8)]
    sizes.clear()
    asyncio.run(scenario(3))
    assert sizes == [3, 3, 2]
    sizes.clear()
    asyncio.run(scenario(1))
    assert sizes == [1] * 8


def test_live_server_on_loopback_survives_bad_requests(checkpoint):
    import httpx

    with live_server(checkpoint, "--max-body-mb", "1") as url:
        assert url.startswith("http://127.0.0.1:")
        good = {"file": ("a.png", png_bytes())}
        assert httpx.post(f"{url}/v1/predict", files=good).status_code == 200
        for case, (kwargs, status, _) in BAD_REQUESTS.items():
            answer = httpx.post(f"{url}/v1/predict", timeout=30, **kwargs)
            assert answer.status_code == status, (case, answer.text)
            assert httpx.post(f"{url}/v1/predict", files=good).status_code == 200, case
        assert httpx.get(f"{url}/healthz").status_code == 200
