"""End to end in a real browser: headless Chromium (Debian's, driven by Playwright) uses
the web app served by uvicorn on localhost.

The app is given `ThresholdSegmenter` (Otsu + connected components), a classical stand-in
for the trained StarDist model, so the test is about the product's plumbing (upload by
drag and drop, analysis, overlay and plot shown, CSV download) and finishes in seconds;
the expected particle count comes from running the same segmenter through `analyze`.

`make test` installs Chromium (Debian package) and Playwright (dev extra) first. Without
them the test is skipped on a developer machine and fails in CI (CI=true).
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

CHROMIUM = os.environ.get("UTILEGEN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]
IMAGES = ("00655d9628.png", "0289bd97e6.png")


def _missing(what: str):
    message = f"{what}; run 'make test' (it installs the browser test's requirements)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("fastapi")
    import uvicorn

    from utilegen.app import create_app
    from utilegen.segment import ThresholdSegmenter

    segmenter = ThresholdSegmenter()
    app = create_app(segmenter=segmenter, workdir=tmp_path_factory.mktemp("app"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the web app did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", segmenter
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright is not installed (pip install playwright)")
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        _missing(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        # A fresh profile folder each run: a persistent context is how Playwright takes one.
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
            accept_downloads=True, viewport={"width": 1280, "height": 900})
        yield context
        context.close()


def _drop_files(page, selector: str, paths) -> None:
    """Drop files on an element the way a user's drag and drop does (a DataTransfer)."""
    files = [{"name": Path(p).name, "data": base64.b64encode(Path(p).read_bytes()).decode()}
             for p in paths]
    transfer = page.evaluate_handle("""(files) => {
        const dt = new DataTransfer();
        for (const f of files) {
            const bytes = Uint8Array.from(atob(f.data), (c) => c.charCodeAt(0));
            dt.items.add(new File([bytes], f.name, {type: "image/png"}));
        }
        return dt;
    }""", files)
    page.dispatch_event(selector, "dragenter", {"dataTransfer": transfer})
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def test_upload_two_emps_images_and_download_csv(server, browser, emps_root, tmp_path):
    from utilegen import analyze

    url, segmenter = server
    paths = [emps_root / "images" / name for name in IMAGES]
    expected = analyze(paths, segmenter=segmenter, pixel_size=0.5, unit="nm")
    start = time.monotonic()

    page = browser.new_page()
    console_errors = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.goto(url)
    assert page.title().startswith("utilegen")
    page.wait_for_function("document.getElementById('limits').textContent.includes('files')")

    _drop_files(page, "#dropzone", paths)
    assert page.locator("#file-list li").count() == 2
    assert page.locator("#file-list").inner_text().count(".png") == 2
    page.fill("#pixel-size", "0.5")
    page.select_option("#unit", "nm")
    page.click("#analyze")

    page.wait_for_selector("#results:not([hidden])", timeout=60_000)
    status = page.inner_text("#status")
    assert status.startswith(f"Done: {len(expected.particles)} particles in 2 image(s)"), status

    # Overlays and the PSD plot are shown (loaded, with real pixels).
    cards = page.locator("#images .card")
    assert cards.count() == 2
    page.wait_for_function("""() => [...document.querySelectorAll('img.overlay, #psd')]
        .every((img) => img.complete && img.naturalWidth > 0)""", timeout=30_000)
    sizes = page.evaluate("""() => [...document.querySelectorAll('img.overlay')]
        .map((img) => [img.naturalWidth, img.naturalHeight])""")
    assert sizes == [[512, 515], [687, 512]]  # the micrographs' own sizes
    assert page.evaluate("document.getElementById('psd').naturalWidth") > 300
    for i, name in enumerate(IMAGES):
        stem = Path(name).stem
        heading = cards.nth(i).locator("h3").inner_text()
        assert heading.startswith(f"{stem} — {expected.count(stem)} particles"), heading
        # The card's particle table has one row per particle.
        assert cards.nth(i).locator("table.particles tbody tr").count() == expected.count(stem)
    stats = page.inner_text("#stats")
    assert "D50" in stats and "nm" in stats and "log-normal sigma" in stats

    # Download the particle table as the user would, and check it.
    with page.expect_download() as info:
        page.click("#download-csv")
    download = info.value
    assert download.suggested_filename == "particles.csv"
    saved = tmp_path / "particles.csv"
    download.save_as(saved)
    table = pd.read_csv(saved)
    shown = sum(int(cards.nth(i).locator("h3").inner_text().split(" — ")[1].split()[0])
                for i in range(2))
    assert len(table) == shown == len(expected.particles)
    assert table.groupby("image_id").size().to_dict() == {
        Path(n).stem: expected.count(Path(n).stem) for n in IMAGES}
    pd.testing.assert_series_equal(table["equivalent_diameter"],
                                   expected.particles["equivalent_diameter"].astype(float),
                                   check_names=False)
    page.screenshot(path=str(tmp_path / "results.png"), full_page=True)
    assert console_errors == []
    assert time.monotonic() - start < 60


def test_rejected_file_is_explained_in_the_page(server, browser, tmp_path):
    url, _ = server
    page = browser.new_page()
    page.goto(url)
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"this is not a picture")
    page.set_input_files("#file-input", [str(fake)])
    page.click("#analyze")
    page.wait_for_selector("#status.error", timeout=20_000)
    text = page.inner_text("#status")
    assert "fake.png" in text and "not an image" in text


def test_scale_bar_calibrates_and_is_shown(server, browser, tmp_path):
    import cv2
    from test_calibration import micrograph, with_bar

    from utilegen.calibration import tesseract_available

    if not tesseract_available():
        _missing("tesseract is not installed (apt-get install tesseract-ocr)")
    url, _ = server
    image = with_bar(micrograph(seed=150), "100 nm", 150, light=True, corner="br")
    path = tmp_path / "with_bar.png"
    cv2.imwrite(str(path), image)
    page = browser.new_page()
    page.goto(url)
    _drop_files(page, "#dropzone", [path])
    page.click("#analyze")  # no pixel size typed: the scale bar calibrates the image
    page.wait_for_selector("#results:not([hidden])", timeout=60_000)
    text = page.inner_text("#images .card .calibration")
    assert "0.6667 nm/px from the scale bar" in text and '"100 nm"' in text, text
    assert " nm" in page.inner_text("#stats")
    page.wait_for_function("document.querySelector('img.overlay').complete", timeout=30_000)
