"""The FastAPI application: upload micrographs, analyze them in the background, serve results."""


import math
import shutil
import tempfile
import threading
import time
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._page import INDEX_HTML
from ._uploads import UploadRejected, check_image_file, display_name, sniff_suffix

__all__ = ["TABLE_COLUMNS", "create_app"]

#: Particle-table columns shown on the page (the CSV download has all of them).
TABLE_COLUMNS = ("label", "shape_class", "equivalent_diameter", "feret_diameter_max",
                 "feret_diameter_min", "aspect_ratio", "circularity", "solidity")
_SUMMARY_KEYS = (("particles", "particles"), ("mean", "equivalent_diameter_mean"),
                 ("mean, 95 % CI low", "equivalent_diameter_mean_ci_low"),
                 ("mean, 95 % CI high", "equivalent_diameter_mean_ci_high"),
                 ("std", "equivalent_diameter_std"), ("median", "equivalent_diameter_median"),
                 ("mode", "equivalent_diameter_mode"), ("D10", "equivalent_diameter_d10"),
                 ("D50", "equivalent_diameter_d50"),
                 ("D50, 95 % CI low", "equivalent_diameter_d50_ci_low"),
                 ("D50, 95 % CI high", "equivalent_diameter_d50_ci_high"),
                 ("D90", "equivalent_diameter_d90"),
                 ("geometric mean", "equivalent_diameter_geometric_mean"),
                 ("geometric std", "equivalent_diameter_geometric_std"),
                 ("log-normal mu", "equivalent_diameter_lognormal_mu"),
                 ("log-normal sigma", "equivalent_diameter_lognormal_sigma"),
                 ("best fit", "equivalent_diameter_best_fit"),
                 ("mean aspect ratio", "aspect_ratio_mean"),
                 ("mean circularity", "circularity_mean"), ("mean solidity", "solidity_mean"))
_LENGTH_KEYS = {f"equivalent_diameter_{k}" for k in
                ("mean", "std", "median", "mode", "d10", "d50", "d90", "geometric_mean",
                 "mean_ci_low", "mean_ci_high", "d50_ci_low", "d50_ci_high")}
UNITS = ("nm", "µm", "Å", "px")


@dataclass
class Job:
    """One upload's analysis; reachable only through its random id."""

    id: str
    folder: Path
    names: list[str]
    pixel_size: float | str | None  # a number, "auto" or None (pixels)
    unit: str
    rejected: list[dict]
    created: float = field(default_factory=time.monotonic)
    status: str = "queued"  # queued -> running -> done | failed
    done: int = 0
    error: str | None = None
    result: dict | None = None
    files: dict[str, Path] = field(default_factory=dict)
    client: str = ""
    finished: float | None = None  # time.monotonic() when done or failed


def _clean(value):
    """JSON-safe scalar: NaN/inf -> None, numpy -> Python, floats to 4 significant digits."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return None if not math.isfinite(value) else float(f"{value:.4g}")
    return str(value)


def _format_mb(n: int) -> str:
    return f"{n / 1024 / 1024:.3g} MB"


class _BodyLimit:
    """ASGI middleware: refuse request bodies over `limit` bytes (413) while streaming."""

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT"):
            return await self.app(scope, receive, send)
        message = (f"the upload is too large: at most {_format_mb(self.limit)} in one request")
        for key, value in scope.get("headers", []):
            if key == b"content-length" and value.isdigit() and int(value) > self.limit:
                return await _json_response(send, 413, message)
        received = 0

        async def limited_receive():
            nonlocal received
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > self.limit:
                    raise _TooLarge
            return msg

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await _json_response(send, 413, message)


class _TooLarge(Exception):
    pass


async def _json_response(send, status: int, detail: str) -> None:
    import json

    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def create_app(segmenter=None, classifier=None, *, max_files: int = 20,
               max_bytes: int = 25 * 1024 * 1024, max_pixels: int = 64_000_000,
               max_jobs: int = 100, job_ttl: float = 6 * 3600, workdir=None,
               exclude_border: bool = True, isolate: bool = True, max_queued: int = 20,
               max_per_client: int = 3,
               allowed_hosts=("localhost", "127.0.0.1", "::1", "[::1]")):
    """The utilegen web app (a FastAPI application; run it with uvicorn).

    Parameters
    ----------
    segmenter : StarDist, path, or object with ``predict(image) -> InstanceMask``, optional
        Default: the segmentation model shipped with utilegen (loaded once, here).
    classifier : ShapeClassifier, path, or object with ``predict``, optional
        Shape classes (default: the shipped per-particle classifier; "rules" for the
        morphometry rules alone; see `utilegen.analyze`).
    max_files : int
        Most images in one upload.
    max_bytes : int
        Largest accepted file, in bytes (a request may carry ``max_files`` of them).
    max_pixels : int
        Largest accepted image, in pixels (checked from the header before decoding).
    max_jobs : int
        Finished jobs kept in memory and on disk; the oldest are dropped first.
    job_ttl : float
        Seconds after a job finished after which its results are deleted.
    workdir : path, optional
        Where uploads and results are kept (default: a new temporary folder, removed when
        the app shuts down).
    isolate : bool
        Analyze images in a worker process (default), so that an image that crashes
        native code fails alone and the server keeps serving; False runs them in the
        server's own process (for tests and debugging).
    max_queued : int
        Analyses waiting or running at once; more uploads are answered 503 (busy).
    max_per_client : int
        Analyses one client address may have waiting or running; more are answered 429.
    allowed_hosts : sequence of str
        Host names the server answers to (Starlette's TrustedHostMiddleware), against DNS
        rebinding: by default only localhost. ``("*",)`` accepts any.

    Each upload becomes a job with a random id (uuid4); its results are served only
    under that id, so users never see each other's images or numbers. Uploaded files are
    stored under generated names (never the client's file name) and are accepted only if
    their content decodes as an image.
    """
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
    from starlette.concurrency import run_in_threadpool

    from ..io import unique_names
    from ..pipeline import IsolatedWorker, analyze, load_classifier, load_segmenter

    for name, value in (("max_files", max_files), ("max_bytes", max_bytes),
                        ("max_pixels", max_pixels), ("max_jobs", max_jobs),
                        ("max_queued", max_queued), ("max_per_client", max_per_client)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    model = load_segmenter(segmenter)
    shape_classifier = load_classifier(classifier)
    own_workdir = workdir is None
    root = Path(tempfile.mkdtemp(prefix="utilegen-app-")) if own_workdir else Path(workdir)
    root.mkdir(parents=True, exist_ok=True)
    if own_workdir:  # also when the server stops without a clean shutdown
        import atexit

        atexit.register(shutil.rmtree, root, True)
    jobs: dict[str, Job] = {}
    lock = threading.Lock()
    # One analysis at a time: the model already uses every core.
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="utilegen-analyze")
    # Each image is analyzed in a worker process: a native crash on one uploaded image
    # fails that image alone, never the server (the worker is restarted).
    worker = IsolatedWorker() if isolate else None

    @asynccontextmanager
    async def lifespan(app):
        import asyncio

        async def expire():  # finished jobs expire on a timer, not only at the next upload
            while True:
                await asyncio.sleep(min(60.0, max(0.05, job_ttl / 4)))
                _drop_old_jobs()

        timer = asyncio.create_task(expire())
        try:
            yield
        finally:
            timer.cancel()
            _shutdown()

    closing = threading.Event()
    futures: list = []

    def _shutdown() -> None:
        from concurrent.futures import wait as wait_futures

        closing.set()  # a running analysis stops at its next image and writes nothing
        executor.shutdown(wait=False, cancel_futures=True)
        # cancelled futures never count as done for wait(): only the running one is waited for
        wait_futures([f for f in futures if not f.cancelled()], timeout=60)
        if worker is not None:
            worker.close()
        if own_workdir:
            shutil.rmtree(root, ignore_errors=True)

    app = FastAPI(title="utilegen", description="Particle size and shape from micrographs",
                  lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.jobs = jobs
    app.state.workdir = root
    limits = {"max_files": int(max_files), "max_bytes": int(max_bytes),
              "max_pixels": int(max_pixels), "types": ["PNG", "TIFF", "JPEG", "BMP"],
              "units": list(UNITS)}

    def _drop_old_jobs() -> None:
        now = time.monotonic()
        with lock:
            finished = sorted((j for j in jobs.values() if j.status in ("done", "failed")),
                              key=lambda j: j.created)
            expired = [j for j in finished if now - (j.finished or j.created) > job_ttl]
            excess = max(0, len(jobs) - max_jobs + 1)
            drop = {j.id: j for j in expired + finished[:excess]}
            for job_id in drop:
                jobs.pop(job_id, None)
        for job in drop.values():
            shutil.rmtree(job.folder, ignore_errors=True)

    def _get_job(job_id: str) -> Job:
        try:
            key = str(uuid.UUID(job_id))
        except ValueError:
            raise HTTPException(404, "no such job") from None
        with lock:
            job = jobs.get(key)
        if job is None:
            raise HTTPException(404, "no such job (results are kept for a limited time)")
        return job

    def _run(job: Job, images: list[Path]) -> None:
        job.status = "running"

        def progress(done, total, image_id):
            job.done = done
            if closing.is_set():
                raise RuntimeError("the server is shutting down")

        try:
            report = analyze(images, segmenter=model,
                             # None was "rules" (or a shipped one that failed): False says
                             # rules, where "rules" would be looked up as a folder again
                             classifier=shape_classifier if shape_classifier is not None
                             else False,
                             pixel_size=job.pixel_size, unit=job.unit,
                             exclude_border=exclude_border, ids=job.names, callback=progress,
                             isolate=worker if worker is not None else False)
            if closing.is_set():
                return
            out = report.save(job.folder / "report")
            job.result = _result(job, report, out)
            job.finished = time.monotonic()
            job.status = "done"
        except Exception as exc:  # noqa: BLE001 - shown to the user; the server goes on
            job.error = f"the analysis failed: {exc}"
            job.finished = time.monotonic()
            job.status = "failed"

    def _result(job: Job, report, out: Path) -> dict:
        base = f"/api/jobs/{job.id}"
        files = {"particles.csv": out / "particles.csv", "summary.csv": out / "summary.csv",
                 "psd.png": out / "psd.png"}
        archive = job.folder / "report.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(out.rglob("*")):
                if path.is_file():
                    zf.write(path, Path("utilegen-report") / path.relative_to(out))
        files["report.zip"] = archive
        names = report.file_names()
        images = []
        for index, image_id in enumerate(report.ids):
            files[f"overlay/{index}.png"] = out / "overlays" / f"{names[image_id]}.png"
            table = report.particles[report.particles["image_id"] == image_id]
            columns = [c for c in TABLE_COLUMNS if c in table.columns]
            rows = [[_clean(v) for v in row] for row in table[columns].itertuples(index=False)]
            height, width = report.masks[image_id].shape
            images.append({"index": index, "name": image_id, "particles": len(table),
                           "instances": len(report.masks[image_id]),
                           "image_class": report.classes.get(image_id),
                           "calibration": report.calibration_text(image_id),
                           "width": width, "height": height,
                           "overlay_url": f"{base}/overlay/{index}.png",
                           "columns": columns, "rows": rows})
        job.files = files
        summary = report.summary
        overall = summary.iloc[0].to_dict() if len(summary) else {}
        unit = report.unit
        stats = [{"name": label, "value": _clean(overall.get(key)),
                  "unit": unit if key in _LENGTH_KEYS else ""}
                 for label, key in _SUMMARY_KEYS if key in overall]
        stats += [{"name": f"{key[len('fraction_'):]} fraction",
                   "value": _clean(100 * value) if value is not None else None, "unit": "%"}
                  for key, value in overall.items() if key.startswith("fraction_")]
        per_image = [[_clean(r["image_id"]), _clean(r["particles"]),
                      _clean(r.get("equivalent_diameter_mean")),
                      _clean(r.get("equivalent_diameter_d50")),
                      _clean(r.get("circularity_mean")), _clean(r.get("image_class"))]
                     for r in summary.iloc[1:].to_dict("records")]
        return {"images": images, "particles": len(report.particles), "unit": unit,
                "stats": stats, "per_image": per_image,
                "per_image_columns": ["image", "particles", f"mean diameter ({unit})",
                                      f"D50 ({unit})", "mean circularity", "class"],
                "errors": [{"name": n, "reason": m} for n, m in report.errors],
                "warnings": report.warnings,
                "psd_url": f"{base}/psd.png", "csv_url": f"{base}/particles.csv",
                "summary_csv_url": f"{base}/summary.csv", "zip_url": f"{base}/report.zip"}

    @app.get("/", response_class=HTMLResponse)
    def index():
        return HTMLResponse(INDEX_HTML, headers={"Cache-Control": "no-store"})

    @app.get("/api/config")
    def config():
        return limits

    @app.get("/healthz")
    def health():
        return {"status": "ok"}

    def _check_capacity(client: str, *, locked: bool = False) -> None:
        if not locked:
            with lock:
                return _check_capacity(client, locked=True)
        active = [j for j in jobs.values() if j.status in ("queued", "running")]
        if len(active) >= max_queued:
            raise HTTPException(503, f"the server is busy: {len(active)} analyses are waiting; "
                                     "please try again in a few minutes",
                                headers={"Retry-After": "60"})
        mine = sum(j.client == client for j in active)
        if mine >= max_per_client:
            raise HTTPException(429, f"you already have {mine} analyses waiting or running "
                                     f"(at most {max_per_client}); wait for them to finish",
                                headers={"Retry-After": "30"})

    @app.post("/api/jobs", status_code=202)
    async def create_job(request: Request):
        client = request.client.host if request.client else "unknown"
        _check_capacity(client)  # before reading the body
        try:
            form = await request.form(max_files=max_files * 4 + 10, max_fields=20,
                                      max_part_size=64 * 1024)
        except _TooLarge:
            raise  # answered 413 with its reason by the body limit
        except Exception as exc:  # noqa: BLE001 - malformed multipart bodies
            if isinstance(exc.__cause__ or exc.__context__, _TooLarge):
                raise _TooLarge from None
            raise HTTPException(400, f"the upload could not be read: {exc}") from None
        uploads = [v for k, v in form.multi_items() if k == "files" and hasattr(v, "filename")]
        if not uploads:
            raise HTTPException(400, "no files were uploaded; choose one or more micrographs")
        if len(uploads) > max_files:
            raise HTTPException(400, f"too many files: {len(uploads)} given, at most "
                                     f"{max_files} per upload")
        pixel_size = _parse_pixel_size(form.get("pixel_size"))
        unit = str(form.get("unit") or "nm").strip()
        if unit not in UNITS:
            raise HTTPException(400, f"unit must be one of {', '.join(UNITS)}")
        if unit == "px":
            pixel_size = None  # measure in pixels
        elif pixel_size is None:
            pixel_size = "auto"  # file metadata, else the scale bar, else pixels
        _drop_old_jobs()
        job_id = str(uuid.uuid4())
        folder = root / job_id
        (folder / "uploads").mkdir(parents=True)
        accepted, images, rejected = [], [], []
        try:
            for index, upload in enumerate(uploads):
                name = display_name(upload.filename, index)
                try:
                    image = await _accept(upload, folder / "uploads", index)
                except UploadRejected as exc:
                    rejected.append({"name": upload.filename or name, "reason": str(exc)})
                    continue
                finally:
                    await upload.close()
                accepted.append(name)
                images.append(image)
        except BaseException:  # no half-written job folder is left behind
            shutil.rmtree(folder, ignore_errors=True)
            raise
        if not images:
            shutil.rmtree(folder, ignore_errors=True)
            return JSONResponse({"detail": "none of the files could be used", "rejected": rejected},
                                status_code=400)
        job = Job(id=job_id, folder=folder, names=unique_names(accepted), pixel_size=pixel_size,
                  unit=unit, rejected=rejected, client=client)
        try:
            with lock:  # checked and queued at once: concurrent uploads cannot overshoot
                _check_capacity(client, locked=True)
                jobs[job_id] = job
        except HTTPException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        futures[:] = [f for f in futures if not f.done()] + [executor.submit(_run, job, images)]
        return {"id": job_id, "url": f"/api/jobs/{job_id}", "accepted": job.names,
                "rejected": rejected}

    async def _accept(upload, folder: Path, index: int) -> Path:
        head = await upload.read(16)
        size = getattr(upload, "size", None)  # None when the client did not say; see below
        if size == 0 or not head:
            raise UploadRejected("the file is empty")
        if size is not None and size > max_bytes:
            raise UploadRejected(
                f"the file is {_format_mb(size)}; the limit is {_format_mb(max_bytes)}")
        suffix = sniff_suffix(head)
        if suffix is None:
            raise UploadRejected("not an image: upload PNG, TIFF, JPEG or BMP micrographs")
        # A generated name: the client's file name never becomes a path.
        path = folder / f"upload_{index:03d}{suffix}"
        await upload.seek(0)
        written = 0
        with path.open("wb") as fh:
            while chunk := await upload.read(1024 * 1024):
                written += len(chunk)
                if written > max_bytes:
                    raise UploadRejected(f"the file is larger than {_format_mb(max_bytes)}")
                fh.write(chunk)
        await run_in_threadpool(check_image_file, path, suffix, max_pixels=max_pixels)
        # The checked file, not its pixels, goes to analyze(): a calibrated TIFF then
        # supplies its own pixel size when the form leaves it empty.
        return path

    @app.get("/api/jobs/{job_id}")
    def job_status(job_id: str):
        job = _get_job(job_id)
        body = {"id": job.id, "status": job.status, "done": job.done, "total": len(job.names),
                "names": job.names, "rejected": job.rejected}
        if job.status == "failed":
            body["error"] = job.error
        if job.status == "done":
            body["result"] = job.result
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    def _file(job_id: str, key: str, media_type: str, download: str | None = None):
        job = _get_job(job_id)
        path = job.files.get(key)
        if job.status != "done" or path is None or not path.is_file():
            raise HTTPException(404, "not available (yet)")
        return FileResponse(path, media_type=media_type, filename=download,
                            headers={"Cache-Control": "private, no-store"})

    @app.get("/api/jobs/{job_id}/overlay/{index}.png")
    def overlay_png(job_id: str, index: int):
        return _file(job_id, f"overlay/{index}.png", "image/png")

    @app.get("/api/jobs/{job_id}/psd.png")
    def psd_png(job_id: str):
        return _file(job_id, "psd.png", "image/png")

    @app.get("/api/jobs/{job_id}/particles.csv")
    def particles_csv(job_id: str):
        return _file(job_id, "particles.csv", "text/csv", "particles.csv")

    @app.get("/api/jobs/{job_id}/summary.csv")
    def summary_csv(job_id: str):
        return _file(job_id, "summary.csv", "text/csv", "summary.csv")

    @app.get("/api/jobs/{job_id}/report.zip")
    def report_zip(job_id: str):
        return _file(job_id, "report.zip", "application/zip", "utilegen-report.zip")

    # A request may carry max_files files of max_bytes each, plus form overhead.
    app.add_middleware(_BodyLimit, limit=max_files * max_bytes + 1024 * 1024)
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    return app


def _parse_pixel_size(value) -> float | None:
    from fastapi import HTTPException

    if value is None or str(value).strip() == "":
        return None
    from ..io import check_pixel_size

    try:
        return check_pixel_size(str(value).strip().replace(",", "."), "pixel size")
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
