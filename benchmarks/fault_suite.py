"""Fault and abuse suite: bad files, degenerate images, CLI misuse, web abuse, concurrent
users and a killed export. Prints, per case, whether it was handled (a result or a clear
error, the process alive, the rest of the batch reported) and whether data was lost.

Each case runs in a child process where a crash could take its runner down, so that a
native abort counts as "not handled" instead of ending the suite. Loopback only.

    .venv/bin/python benchmarks/fault_suite.py
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

PY = sys.executable


def _png_bomb() -> bytes:
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
            + struct.pack(">I", zlib.crc32(chunk)) + b"\x00" * 64)


def bad_files(folder: Path) -> dict[str, Path]:
    """name -> file of every bad or degenerate input."""
    import cv2
    import tifffile
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    files = {}

    def tif(name, arr):
        tifffile.imwrite(folder / name, arr)
        files[name] = folder / name

    def raw(name, data: bytes):
        (folder / name).write_bytes(data)
        files[name] = folder / name

    flat8 = np.full((128, 128), 100, np.uint8)
    flat8[60:64, 60:64] = 200
    tif("flat-uint8.tif", flat8)
    tif("flat-uint16.tif", flat8.astype(np.uint16) * 300)
    tif("flat-float.tif", flat8.astype(np.float32) / 255)
    tif("constant.tif", np.full((64, 64), 7, np.uint8))
    tif("all-nan.tif", np.full((64, 64), np.nan, np.float32))
    inf = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    inf[5:9, 5:9] = np.inf
    tif("inf-pixels.tif", inf)
    tif("one-pixel.tif", np.zeros((1, 1), np.uint8))
    tif("two-by-two.tif", np.array([[0, 255], [255, 0]], np.uint8))
    tif("stack.tif", np.zeros((3, 5, 64, 64), np.uint8))
    raw("empty.png", b"")
    raw("text.png", b"this is not an image")
    _, png = cv2.imencode(".png", flat8)
    raw("truncated.png", png.tobytes()[:60])
    good = (folder / "flat-uint8.tif").read_bytes()
    raw("junk-after-header.tif", good[:8] + bytes(np.random.default_rng(0).integers(
        0, 256, 3000, dtype=np.uint8)))
    raw("bomb-30000px.png", _png_bomb())
    idx = (np.arange(96 * 96).reshape(96, 96) % 29).astype(np.uint8)
    im = Image.fromarray(idx, mode="P")
    im.putpalette((np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, 1) * 0 +
                   np.clip(np.arange(256) * 8 + 10, 0, 255).astype(np.uint8)[:, None]).ravel()
                  .tolist())
    im.save(folder / "palette.tif")
    files["palette.tif"] = folder / "palette.tif"
    rgb = np.dstack([flat8, flat8 // 2, flat8 // 3])
    cv2.imwrite(str(folder / "rgb.png"), rgb)
    files["rgb.png"] = folder / "rgb.png"
    return files


def good_image(folder: Path) -> Path:
    import tifffile

    yy, xx = np.mgrid[:160, :160]
    img = np.full((160, 160), 200, np.uint8)
    for r, c in ((40, 40), (100, 110), (50, 120)):
        img[(yy - r) ** 2 + (xx - c) ** 2 <= 15**2] = 40
    tifffile.imwrite(folder / "good.tif", img)
    return folder / "good.tif"


def run(cmd, timeout=600):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def case_analyze_batch(tmp: Path):
    """Every bad file in one `utilegen analyze` batch with two good images (shipped model)."""
    import pandas as pd

    files = bad_files(tmp / "in")
    good_image(tmp / "in")
    (tmp / "in" / "good2.tif").write_bytes((tmp / "in" / "good.tif").read_bytes())
    r = run([PY, "-m", "utilegen", "analyze", str(tmp / "in"), "--out", str(tmp / "report"),
             "--no-progress"])
    rows = []
    summary = (pd.read_csv(tmp / "report" / "summary.csv")
               if (tmp / "report" / "summary.csv").exists() else None)
    errors = ((tmp / "report" / "errors.csv").read_text()
              if (tmp / "report" / "errors.csv").exists() else "")
    done = set(summary["image_id"].astype(str)) if summary is not None else set()
    for name in files:
        stem = Path(name).stem
        handled = r.returncode in (0, 3) and (stem in done or name in errors)
        rows.append(("analyze batch", name, handled, 0))
    lost = sum(s not in done for s in ("good", "good2"))
    rows.append(("analyze batch", "the two good images reported", lost == 0, lost))
    return rows


def case_predict(tmp: Path):
    """`segment predict` over the bad files, plus two inputs sharing a stem."""
    files = bad_files(tmp / "in")
    (tmp / "a").mkdir()
    (tmp / "b").mkdir()
    g = good_image(tmp / "a")
    (tmp / "b" / "good.tif").write_bytes(g.read_bytes())
    r = run([PY, "-m", "utilegen", "segment", "predict", str(tmp / "in"), str(g),
             str(tmp / "b" / "good.tif"), "--out", str(tmp / "labels"), "--overwrite"])
    out = {p.name for p in (tmp / "labels").iterdir()} if (tmp / "labels").exists() else set()
    rows = [("segment predict", name, r.returncode in (0, 3) and (
        f"{Path(name).stem}.tif" in out or name in r.stderr), 0) for name in files]
    lost = 2 - len({"good.tif", "good-2.tif"} & out)
    rows.append(("segment predict", "a/good.tif + b/good.tif", lost == 0, lost))
    return rows


def case_cli_misuse(tmp: Path):
    (tmp / "file").write_text("x")
    cases = [
        ("generate --out <file>", ["generate", "--sample", "--out", str(tmp / "file"), "--n", "2"],
         "is a file"),
        ("generate --n 0", ["generate", "--sample", "--out", str(tmp / "o"), "--n", "0"],
         "--n must"),
        ("generate --rotation -30-30", ["generate", "--sample", "--out", str(tmp / "r"), "--n", "1",
                                        "--size", "512", "--rotation", "-30-30"], None),
        ("analyze --pixel-size 1e-300", ["analyze", str(tmp), "--pixel-size", "1e-300", "--out",
                                         str(tmp / "rep")], "pixel-size"),
        ("segment train on no pairs", ["segment", "train", "--images", str(tmp),
                                       "--masks", str(tmp),
                                       "--out", str(tmp / "m"), "--minutes", "0.1"], "error"),
    ]
    rows = []
    for name, argv, expect in cases:
        r = run([PY, "-m", "utilegen", *argv])
        if expect is None:
            ok = r.returncode == 0
        else:
            ok = r.returncode == 2 and expect in r.stderr and "Traceback" not in r.stderr
        rows.append(("CLI misuse", name, ok, 0))
    return rows


_WEB = r"""
import io, json, sys, threading, time
import numpy as np, cv2
from fastapi.testclient import TestClient
from utilegen.segment import ThresholdSegmenter
from utilegen.app import create_app
folder = sys.argv[1]
import pathlib
files = {p.name: p.read_bytes() for p in pathlib.Path(folder).iterdir()}
good = cv2.imencode(".png", np.where(np.hypot(*np.mgrid[-50:50, -50:50]) < 20, 40, 200)
                   .astype(np.uint8))[1].tobytes()
app = create_app(max_files=4, max_bytes=2_000_000, max_queued=8, max_per_client=2)
out = []
def wait(c, url):
    for _ in range(1200):
        s = c.get(url).json()
        if s["status"] in ("done", "failed"):
            return s
        time.sleep(0.1)
    return s
with TestClient(app, base_url="http://localhost") as c:
    for name, data in files.items():
        r = c.post("/api/jobs", files=[("files", (name, data)), ("files", ("good.png", good))],
                   data={"pixel_size": "1", "unit": "nm"})
        if r.status_code != 202:
            out.append(["web upload", name, False, 1]); continue
        s = wait(c, r.json()["url"])
        ok = s["status"] == "done" and any(i["name"] == "good" for i in s["result"]["images"])
        out.append(["web upload", name, ok, 0 if ok else 1])
    r = c.post("/api/jobs", files=[("files", ("a.png", b"\0" * 3_000_000))], data={})
    out.append(["web abuse", "oversize file",
                r.status_code in (400, 413) and bool(r.json().get("detail")), 0])
    def body():
        yield b'--B\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n\r\n'
        for _ in range(200): yield b"\0" * 65536
        yield b"\r\n--B--\r\n"
    r = c.post("/api/jobs", content=body(),
               headers={"content-type": "multipart/form-data; boundary=B"})
    out.append(["web abuse", "chunked oversize upload",
                r.status_code == 413 and "too large" in r.json()["detail"], 0])
    evil = TestClient(app, base_url="http://rebind.example")  # no `with`: one lifespan only
    out.append(["web abuse", "foreign Host header (DNS rebinding)",
                evil.get("/api/config").status_code == 400, 0])
    # 12 users at once, 2 uploads each, bounded: every answer is 202, 429 or 503, and every
    # accepted job finishes
    answers, urls = [], []
    def user(k):  # no `with`: the app's lifespan belongs to the main client
        try:
            u = TestClient(app, base_url="http://localhost", client=(f"10.0.0.{k}", 1000))
            for _ in range(2):
                r = u.post("/api/jobs", files=[("files", ("g.png", good))], data={})
                answers.append(r.status_code)
                if r.status_code == 202: urls.append(r.json()["url"])
        except Exception as exc:  # counted: not a 202/429/503
            answers.append(repr(exc))
    threads = [threading.Thread(target=user, args=(k,)) for k in range(12)]
    [t.start() for t in threads]; [t.join() for t in threads]
    finished = [wait(c, u)["status"] for u in urls]
    ok = (len(answers) == 24 and set(answers) <= {202, 429, 503} and answers.count(202) <= 8
          and all(s == "done" for s in finished))
    out.append(["web concurrency", f"12 users x 2 uploads ({answers.count(202)} accepted, "
                f"{answers.count(503)} busy, {answers.count(429)} per-client)", ok,
                finished.count("failed")])
    out.append(["web", "server alive after all cases", c.get("/api/config").status_code == 200, 0])
print(json.dumps(out))
"""


def case_web(tmp: Path):
    bad_files(tmp / "in")
    r = run([PY, "-c", _WEB, str(tmp / "in")], timeout=1800)
    if r.returncode != 0:
        return [("web", "server process", False, 1)]
    return [tuple(x) for x in json.loads(r.stdout.strip().splitlines()[-1])]


_EXPORT = """
import sys
from utilegen.datasets import sample_pair
from utilegen.synth import Compositor, SyntheticDataset
pairs = [sample_pair((256, 256), particles=12, rng=0)]
ds = SyntheticDataset.from_pairs(pairs, keep_border=True, min_size=0,
                                 compositor=Compositor(image_size=256, scale=(0.8, 1.2)),
                                 length=2000, seed=0)
ds.export(sys.argv[1], workers=2, progress=False)
"""


def case_export(tmp: Path):
    from utilegen.io import read_image, read_mask

    out = tmp / "export"
    rows = []
    for kill in range(3):  # killed three times at different points, then completed
        proc = subprocess.Popen([PY, "-c", _EXPORT, str(out)])
        time.sleep(4 + 3 * kill)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        time.sleep(1.5)
        before = len(list((out / "images").glob("*.tif")))
        time.sleep(1.5)
        rows.append(("killed export", f"kill {kill + 1}: workers stop", before == len(list(
            (out / "images").glob("*.tif"))), 0))
    r = run([PY, "-c", _EXPORT, str(out)])
    manifest = json.loads((out / "manifest.json").read_text())
    bad = 0
    for item in manifest.get("items", []):
        try:
            read_image(out / item["image"])
            read_mask(out / item["mask"])
        except Exception:  # noqa: BLE001 - counted as lost
            bad += 1
    stray = [p.name for p in out.rglob("*.tif") if p.name.startswith(".")]
    lost = (2000 - len(manifest.get("items", []))) + bad
    rows.append(("killed export", "resume completes, every item readable, no stray temp files",
                 r.returncode == 0 and manifest.get("complete") and lost == 0 and not stray, lost))
    return rows


def main():
    rows = []
    for case in (case_analyze_batch, case_predict, case_cli_misuse, case_web, case_export):
        with tempfile.TemporaryDirectory() as tmp:
            t = time.time()
            got = case(Path(tmp))
            rows += got
            print(f"{case.__name__}: {sum(r[2] for r in got)}/{len(got)} handled "
                  f"({time.time() - t:.0f} s)", flush=True)
    print()
    print("| group | case | handled | data lost |")
    print("|---|---|---|---|")
    for group, name, ok, lost in rows:
        print(f"| {group} | {name} | {'yes' if ok else '**no**'} | {lost} |")
    print(f"\ncases tried {len(rows)}, handled {sum(r[2] for r in rows)}, "
          f"data lost {sum(r[3] for r in rows)}")


if __name__ == "__main__":
    main()
