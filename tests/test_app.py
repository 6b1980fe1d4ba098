"""The web app's HTTP API (FastAPI TestClient, no browser): uploads, limits, isolation.

The segmenter is `ThresholdSegmenter` (Otsu + connected components), a classical stand-in
for the trained model that runs in milliseconds; these tests are about the app, not about
segmentation quality.
"""

from __future__ import annotations

import io as _io
import time

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient

from utilegen.app import create_app
from utilegen.segment import ThresholdSegmenter


def png_bytes(disks=((30, 30, 10), (70, 60, 12)), shape=(100, 120)) -> bytes:
    import cv2

    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = np.full(shape, 210, np.uint8)
    for r, c, rad in disks:
        img[(yy - r) ** 2 + (xx - c) ** 2 <= rad**2] = 40
    ok, data = cv2.imencode(".png", img)
    assert ok
    return data.tobytes()


@pytest.fixture
def client(tmp_path):
    app = create_app(segmenter=ThresholdSegmenter(sigma=0, min_area=5), max_files=3,
                     max_bytes=200_000, max_pixels=1_000_000, workdir=tmp_path / "work")
    with TestClient(app, base_url="http://localhost") as c:
        yield c


def wait(client, url, timeout=120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.get(url).json()
        if state["status"] in ("done", "failed"):
            return state
        time.sleep(0.05)
    raise AssertionError(f"job did not finish in {timeout} s: {state}")


def upload(client, files, **data):
    return client.post("/api/jobs", files=[("files", f) for f in files],
                       data={"pixel_size": "0.5", "unit": "nm", **data})


def test_page_and_config(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="dropzone"' in page.text and 'id="pixel-size"' in page.text
    assert client.get("/api/config").json()["max_files"] == 3


def test_upload_analyze_and_download(client, tmp_path):
    r = upload(client, [("one.png", png_bytes(), "image/png"),
                        ("two.png", png_bytes(disks=((50, 50, 15),)), "image/png")])
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["accepted"] == ["one", "two"] and job["rejected"] == []
    state = wait(client, job["url"])
    assert state["status"] == "done", state
    result = state["result"]
    assert result["particles"] == 3 and result["unit"] == "nm"
    assert [im["particles"] for im in result["images"]] == [2, 1]
    stats = {s["name"]: s for s in result["stats"]}
    assert stats["particles"]["value"] == 3 and stats["D50"]["unit"] == "nm"
    # Diameters in nm: 2 * r * 0.5
    d = sorted(row[result["images"][0]["columns"].index("equivalent_diameter")]
               for row in result["images"][0]["rows"])
    np.testing.assert_allclose(d, [10, 12], rtol=0.07)
    csv = client.get(result["csv_url"])
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert "attachment" in csv.headers["content-disposition"]
    table = pd.read_csv(_io.StringIO(csv.text))
    assert len(table) == 3 and table["image_id"].tolist() == ["one", "one", "two"]
    for url in (result["psd_url"], result["images"][1]["overlay_url"]):
        png = client.get(url)
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert client.get(result["summary_csv_url"]).status_code == 200
    zipped = client.get(result["zip_url"])
    import zipfile

    names = zipfile.ZipFile(_io.BytesIO(zipped.content)).namelist()
    assert "utilegen-report/particles.csv" in names and "utilegen-report/labels/one.tif" in names


def test_non_images_and_corrupt_files_are_rejected_politely(client, tmp_path):
    r = upload(client, [("notes.png", b"just some text", "image/png"),
                        ("broken.png", png_bytes()[:60], "image/png"),
                        ("good.tif", png_bytes(), "image/tiff")])  # a PNG named .tif: fine
    assert r.status_code == 202
    rejected = {x["name"]: x["reason"] for x in r.json()["rejected"]}
    assert rejected["notes.png"].startswith("not an image")
    assert "damaged" in rejected["broken.png"] or "decoded" in rejected["broken.png"]
    assert r.json()["accepted"] == ["good"]
    assert wait(client, r.json()["url"])["status"] == "done"
    # Nothing usable: a 400 that lists why.
    r = upload(client, [("a.exe", b"MZ\x90\x00", "application/octet-stream")])
    assert r.status_code == 400
    assert r.json()["rejected"][0]["reason"].startswith("not an image")


def test_limits(client):
    r = upload(client, [(f"{i}.png", png_bytes(), "image/png") for i in range(4)])
    assert r.status_code == 400 and "too many files" in r.json()["detail"]
    big = np.random.default_rng(0).integers(0, 255, (400, 600), dtype=np.uint8)
    import cv2

    data = cv2.imencode(".png", big)[1].tobytes()
    assert len(data) > 200_000
    r = upload(client, [("big.png", data, "image/png"), ("ok.png", png_bytes(), "image/png")])
    assert r.status_code == 202
    assert "limit is" in r.json()["rejected"][0]["reason"]
    huge = cv2.imencode(".png", np.zeros((1200, 1000), np.uint8))[1].tobytes()  # 1.2 MP
    r = upload(client, [("huge.png", huge, "image/png")])
    assert r.status_code == 400 and "megapixels" in r.json()["rejected"][0]["reason"]
    r = upload(client, [("empty.png", b"", "image/png")])
    assert r.status_code == 400 and "empty" in r.json()["rejected"][0]["reason"]
    r = client.post("/api/jobs", data={"unit": "nm"})
    assert r.status_code == 400 and "no files" in r.json()["detail"]


def test_whole_request_size_limit(tmp_path):
    app = create_app(segmenter=ThresholdSegmenter(), max_files=1, max_bytes=1000,
                     workdir=tmp_path)
    with TestClient(app, base_url="http://localhost") as c:
        r = c.post("/api/jobs", files=[("files", ("x.png", b"\x89PNG" + b"0" * 2_000_000))])
    assert r.status_code == 413 and "too large" in r.json()["detail"]


@pytest.mark.parametrize("pixel_size,unit,message", [
    ("-1", "nm", "positive"), ("abc", "nm", "positive"), ("nan", "nm", "positive"),
    ("1", "furlong", "unit must be")])
def test_bad_calibration(client, pixel_size, unit, message):
    r = upload(client, [("a.png", png_bytes(), "image/png")], pixel_size=pixel_size, unit=unit)
    assert r.status_code == 400 and message in r.json()["detail"]


def test_pixels_unit_and_blank_pixel_size(client):
    r = upload(client, [("a.png", png_bytes(), "image/png")], pixel_size="", unit="px")
    assert wait(client, r.json()["url"])["result"]["unit"] == "px"


def test_file_names_never_become_paths(client, tmp_path):
    r = upload(client, [("../../../etc/evil.png", png_bytes(), "image/png"),
                        ("C:\\x\\=cmd|calc.png", png_bytes(), "image/png")])
    job = r.json()
    assert job["accepted"] == ["evil", "cmd_calc"]  # no path parts, no spreadsheet formula
    assert wait(client, job["url"])["status"] == "done"
    uploads = sorted(p.name for p in (tmp_path / "work" / job["id"] / "uploads").iterdir())
    assert uploads == ["upload_000.png", "upload_001.png"]
    assert not (tmp_path / "etc").exists()


def test_users_only_see_their_own_jobs(client):
    a = upload(client, [("alice.png", png_bytes(), "image/png")]).json()
    b = upload(client, [("bob.png", png_bytes(disks=((50, 50, 15),)), "image/png")]).json()
    assert a["id"] != b["id"]
    ra, rb = wait(client, a["url"])["result"], wait(client, b["url"])["result"]
    assert [im["name"] for im in ra["images"]] == ["alice"]
    assert [im["name"] for im in rb["images"]] == ["bob"]
    assert "bob" not in client.get(ra["csv_url"]).text
    assert "alice" not in client.get(rb["csv_url"]).text
    # No listing, and guessed or malformed ids find nothing.
    assert client.get("/api/jobs").status_code in (404, 405)
    assert client.get("/api/jobs/00000000-0000-4000-8000-000000000000").status_code == 404
    assert client.get("/api/jobs/../../etc/passwd").status_code == 404
    assert client.get(f"/api/jobs/{a['id']}/overlay/5.png").status_code == 404


def test_old_jobs_are_dropped(tmp_path):
    app = create_app(segmenter=ThresholdSegmenter(), max_jobs=2, workdir=tmp_path)
    with TestClient(app, base_url="http://localhost") as c:
        ids = []
        for i in range(3):
            job = upload(c, [(f"{i}.png", png_bytes(), "image/png")]).json()
            wait(c, job["url"])
            ids.append(job["id"])
        assert c.get(f"/api/jobs/{ids[0]}").status_code == 404
        assert not (tmp_path / ids[0]).exists()
        assert c.get(f"/api/jobs/{ids[2]}").status_code == 200


def test_create_app_argument_checks():
    with pytest.raises(ValueError, match="max_files"):
        create_app(segmenter=ThresholdSegmenter(), max_files=0)
    with pytest.raises(ValueError, match="predict"):
        create_app(segmenter=object())


def test_cli_serve_builds_the_app_and_runs_uvicorn(monkeypatch, capsys):
    import uvicorn

    from utilegen import pipeline as analyze_module
    from utilegen.cli import main

    calls = {}
    monkeypatch.setattr(analyze_module, "load_segmenter", lambda s=None: ThresholdSegmenter())
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.update(app=app, **kw))
    assert main(["serve", "--port", "8123", "--max-files", "5", "--max-mb", "2"]) == 0
    assert calls["host"] == "127.0.0.1" and calls["port"] == 8123
    with TestClient(calls["app"], base_url="http://localhost") as c:
        limits = c.get("/api/config").json()
    assert limits["max_files"] == 5 and limits["max_bytes"] == 2 * 1024 * 1024
    assert "http://127.0.0.1:8123/" in capsys.readouterr().out


def test_cli_serve_without_a_model_says_what_to_do(monkeypatch, capsys):
    from utilegen.cli import main
    from utilegen.segment import StarDist

    def missing(cls, name="emps"):
        raise FileNotFoundError("the pretrained model 'emps' is missing")

    monkeypatch.setattr(StarDist, "pretrained", classmethod(missing))
    assert main(["serve"]) == 2
    assert "--model" in capsys.readouterr().err


def test_calibrated_tiff_supplies_its_pixel_size(client, tmp_path):
    import cv2

    from utilegen.io import write_image

    image = cv2.imdecode(np.frombuffer(png_bytes(), np.uint8), cv2.IMREAD_GRAYSCALE)
    path = write_image(tmp_path / "calibrated.tif", image, pixel_size=0.25, unit="nm")
    r = upload(client, [("calibrated.tif", path.read_bytes(), "image/tiff")], pixel_size="")
    result = wait(client, r.json()["url"])["result"]
    assert result["unit"] == "nm"
    d = sorted(row[result["images"][0]["columns"].index("equivalent_diameter")]
               for row in result["images"][0]["rows"])
    np.testing.assert_allclose(d, [2 * 10 * 0.25, 2 * 12 * 0.25], rtol=0.07)


class _AbortOnMarker:
    """Crashes its process natively (as an escaped C++ exception does) on a marked image."""

    def predict(self, image):
        import os

        from utilegen import InstanceMask

        image = np.asarray(image)
        if int(image.flat[0]) == 13:
            os.abort()
        from scipy import ndimage

        return InstanceMask(ndimage.label(image < 100)[0].astype(np.uint16))


def test_an_image_that_crashes_native_code_fails_alone_and_the_server_goes_on(tmp_path):
    import cv2

    marked = cv2.imdecode(np.frombuffer(png_bytes(), np.uint8), cv2.IMREAD_GRAYSCALE)
    marked[0, 0] = 13
    crash = cv2.imencode(".png", marked)[1].tobytes()
    app = create_app(segmenter=_AbortOnMarker(), max_files=3, workdir=tmp_path / "work")
    with TestClient(app, base_url="http://localhost") as client:
        r = upload(client, [("good.png", png_bytes(), "image/png"),
                            ("crash.png", crash, "image/png"),
                            ("also-good.png", png_bytes(disks=((50, 50, 15),)), "image/png")])
        state = wait(client, r.json()["url"], timeout=120)
        assert state["status"] == "done", state
        result = state["result"]
        assert [im["particles"] for im in result["images"]] == [2, 1]
        assert "crash" in str(result.get("errors")) and "crashed" in str(result.get("errors"))
        # the next user is served by a fresh worker
        state = wait(client, upload(client, [("x.png", png_bytes(), "image/png")]).json()["url"],
                     timeout=120)
        assert state["status"] == "done" and state["result"]["particles"] == 2


def test_flat_image_with_one_small_feature_is_analyzed_by_the_default_model(tmp_path):
    import cv2

    flat = np.full((128, 128), 100, np.uint8)
    flat[60:64, 60:64] = 200  # p1 == p99.8: the input that used to abort the process
    data = cv2.imencode(".png", flat)[1].tobytes()
    try:
        app = create_app(workdir=tmp_path / "work")
    except FileNotFoundError:
        pytest.skip("the shipped model is not installed")
    with TestClient(app, base_url="http://localhost") as client:
        r = upload(client, [("flat.png", data, "image/png"),
                            ("disks.png", png_bytes(), "image/png")])
        state = wait(client, r.json()["url"], timeout=300)
        assert state["status"] == "done", state
        assert len(state["result"]["images"]) == 2


class _Slow(ThresholdSegmenter):
    """Holds every analysis until released, so that jobs stay queued."""

    def __init__(self, gate):
        super().__init__(sigma=0, min_area=5)
        self.gate = gate

    def predict(self, image):
        self.gate.wait(30)
        return super().predict(image)


def test_queue_is_capped_per_server_and_per_client(tmp_path):
    import threading

    gate = threading.Event()
    app = create_app(segmenter=_Slow(gate), isolate=False, max_queued=3, max_per_client=2,
                     workdir=tmp_path / "work")
    with TestClient(app, base_url="http://localhost") as client:
        files = [("a.png", png_bytes(), "image/png")]
        assert upload(client, files).status_code == 202
        assert upload(client, files).status_code == 202
        r = upload(client, files)  # a third from the same client
        assert r.status_code == 429 and "at most 2" in r.json()["detail"]
        other = TestClient(app, base_url="http://localhost", client=("10.0.0.2", 5000))
        assert upload(other, files).status_code == 202
        r = upload(TestClient(app, base_url="http://localhost", client=("10.0.0.3", 5000)), files)
        assert r.status_code == 503 and "busy" in r.json()["detail"]
        assert r.headers["retry-after"] == "60"
        gate.set()


def test_finished_jobs_expire_on_a_timer(tmp_path):
    app = create_app(segmenter=ThresholdSegmenter(sigma=0, min_area=5), isolate=False,
                     job_ttl=0.6, workdir=tmp_path / "work")
    with TestClient(app, base_url="http://localhost") as client:
        job = upload(client, [("a.png", png_bytes(), "image/png")]).json()
        assert wait(client, job["url"])["status"] == "done"
        folder = tmp_path / "work" / job["id"]
        deadline = time.monotonic() + 5
        while folder.exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # no new upload comes: the timer alone drops it
        assert not folder.exists()
        assert client.get(job["url"]).status_code == 404


def test_chunked_oversize_upload_gets_413_with_a_reason(tmp_path):
    app = create_app(segmenter=ThresholdSegmenter(), isolate=False, max_files=1, max_bytes=1000,
                     workdir=tmp_path / "work")
    with TestClient(app, base_url="http://localhost") as client:
        boundary = "XyZ"
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; "
                f"filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n").encode()

        def body():  # no Content-Length: the size is only known while streaming
            yield head
            for _ in range(40):
                yield b"\0" * 65536
            yield f"\r\n--{boundary}--\r\n".encode()

        r = client.post("/api/jobs", content=body(),
                        headers={"content-type": f"multipart/form-data; boundary={boundary}"})
        assert r.status_code == 413 and "too large" in r.json()["detail"]
        assert list((tmp_path / "work").iterdir()) == []


def test_only_configured_host_names_are_served(tmp_path):
    app = create_app(segmenter=ThresholdSegmenter(), isolate=False, workdir=tmp_path / "w")
    with TestClient(app, base_url="http://evil.example") as client:
        assert client.get("/api/config").status_code == 400  # DNS rebinding
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        assert client.get("/api/config").status_code == 200


def test_own_work_folder_is_removed_on_shutdown():
    app = create_app(segmenter=ThresholdSegmenter(), isolate=False)
    root = app.state.workdir
    with TestClient(app, base_url="http://localhost") as client:
        upload(client, [("a.png", png_bytes(), "image/png")])
        assert root.exists()
    assert not root.exists()


@pytest.mark.parametrize("classifier", [None, "rules"])
def test_shapes_from_the_shipped_classifier_or_the_rules(tmp_path, classifier):
    app = create_app(segmenter=ThresholdSegmenter(sigma=0, min_area=5), classifier=classifier,
                     isolate=False, workdir=tmp_path / "work")
    with TestClient(app, base_url="http://localhost") as c:
        state = wait(c, upload(c, [("one.png", png_bytes(), "image/png")]).json()["url"])
    assert state["status"] == "done", state
    image = state["result"]["images"][0]
    if classifier == "rules":  # no network: particles named by the rules, no image class
        assert image["image_class"] is None
    else:  # the shipped classifier names the particles and, from them, the image
        assert image["image_class"] in ("sphere", "cube", "rod")
    assert any(s["name"] == "sphere fraction" for s in state["result"]["stats"])

