"""Writing a `SyntheticDataset` to disk: TIFF files or chunked Zarr, in one process, a
local process pool, or on a Dask cluster.

Item *i* depends only on ``(seed, i)``, so any partition of the indices over any number
of workers writes the same bytes. Each item is written by an idempotent task: its files go
to temporary names and are renamed, and its JSON record is written last, so an item is
complete exactly when its record exists. A task that dies (a killed worker) leaves no
half-written item under a final name, and running the export again, or Dask retrying the
task elsewhere, completes it.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from .. import __version__
from ..io import atomic_path, read_mask, write_image, write_mask

_FORMAT = "utilegen-synthetic/1"
LAYOUTS = ("tiff", "zarr")
_DATASET = None   # the dataset, set once per local worker process


class _Target:
    """Where the items go; picklable, so it travels to Dask workers with each task."""

    def __init__(self, directory: Path, layout: str, width: int):
        self.directory, self.layout, self.width = Path(directory), layout, width

    def name(self, index: int) -> str:
        return f"{index:0{self.width}d}"

    def record_path(self, index: int) -> Path:
        return self.directory / "records" / f"{self.name(index)}.json"

    def write(self, dataset, index: int) -> int:
        record_path = self.record_path(index)
        if record_path.exists():  # written last: the item is complete
            return index
        s = dataset.sample(index)
        if self.layout == "tiff":
            # An earlier run may have stopped between files: complete what is missing.
            image_path = self.directory / "images" / f"{self.name(index)}.tif"
            mask_path = self.directory / "masks" / f"{self.name(index)}.tif"
            if not image_path.exists():
                write_image(image_path, s.image)
            if not mask_path.exists():
                write_mask(mask_path, s.mask)
        else:
            import zarr

            # One chunk per item: concurrent tasks never write the same chunk.
            images = zarr.open_array(self.directory / "data.zarr" / "images", mode="r+")
            masks = zarr.open_array(self.directory / "data.zarr" / "masks", mode="r+")
            images[index] = s.image
            masks[index] = s.mask.labels.astype(masks.dtype)
        with atomic_path(record_path) as tmp:
            tmp.write_text(json.dumps(s.params))
        return index


def _write_local(target: _Target, index: int) -> int:
    return target.write(_DATASET, index)


def _write_many(dataset, target: _Target, indices) -> list[int]:
    """One Dask task: a run of indices (the dataset arrives once per worker, scattered)."""
    return [target.write(dataset, i) for i in indices]


def _exit_with_parent(parent: int) -> None:
    """End this worker process when the exporting process dies (even by SIGKILL), instead of
    writing on into the folder: the kernel's parent-death signal where there is one (Linux),
    and a watchdog that notices the worker being re-parented."""
    import os
    import signal
    import threading

    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError, TypeError):
        pass

    def watch():
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True, name="utilegen-parent-watch").start()


def _init_worker(dataset, parent: int | None = None):
    global _DATASET
    _DATASET = dataset
    if parent is not None:
        _exit_with_parent(parent)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def environment() -> dict:
    """The versions an export was made with (written into its manifest)."""
    import platform

    import cv2

    return {"utilegen": __version__, "numpy": np.__version__, "opencv": cv2.__version__,
            "python": platform.python_version()}

def _json_dump(path: Path, data, *, overwrite: bool = True):
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(data, indent=1))


def _prepare(dataset, directory: Path, layout: str) -> dict:
    """Check or create the output folder; return the manifest to complete."""
    config = {**dataset.config(), "layout": layout}
    manifest_path = directory / "manifest.json"
    if manifest_path.exists():
        try:
            old = json.loads(manifest_path.read_text())
        except ValueError:
            raise ValueError(
                f"{manifest_path} is not valid JSON; not writing into {directory}") from None
        if old.get("format") != _FORMAT or old.get("config") != json.loads(json.dumps(config)):
            raise ValueError(f"{directory} holds a different dataset "
                             "(its manifest.json has another "
                             "configuration, seed or layout); choose an empty folder")
        # A killed run leaves temporary files of unfinished writes: remove them on resume.
        for sub in ("images", "masks", "records", "."):
            folder = directory / sub
            if folder.is_dir():
                for tmp in folder.glob(".*.part*"):
                    if tmp.is_file():
                        tmp.unlink(missing_ok=True)
    elif directory.exists() and any(directory.iterdir()):
        raise ValueError(
            f"{directory} is not empty and has no manifest.json; choose an empty folder")
    subfolders = ("images", "masks", "records") if layout == "tiff" else ("records",)
    for sub in subfolders:
        (directory / sub).mkdir(parents=True, exist_ok=True)
    if layout == "zarr" and not (directory / "data.zarr").exists():
        _create_zarr(dataset, directory / "data.zarr")
    manifest = {"format": _FORMAT, "config": config, "environment": environment(),
                "complete": False}
    _json_dump(manifest_path, manifest)
    return manifest


def _create_zarr(dataset, path: Path):
    import zarr

    H, W = dataset.compositor.image_size
    n = len(dataset)
    image_dtype = {"uint8": "uint8", "uint16": "uint16", "float32": "float32"}[dataset.dtype]
    mask_dtype = "uint16" if dataset.compositor.particles_per_image[1] < 65535 else "int32"
    tmp = path.with_name(f".{path.name}.part")
    group = zarr.open_group(tmp, mode="w")
    group.create_array("images", shape=(n, H, W), chunks=(1, H, W), dtype=image_dtype, fill_value=0)
    group.create_array("masks", shape=(n, H, W), chunks=(1, H, W), dtype=mask_dtype, fill_value=0)
    tmp.rename(path)


def export(dataset, directory, *, workers: int = 1, coco: bool = False, layout: str = "tiff",
           client=None, progress: bool = True) -> Path:
    """Write every item of a `SyntheticDataset` to `directory`.

    Parameters
    ----------
    layout : {"tiff", "zarr"}
        ``"tiff"``: ``images/00000.tif`` (the image) and ``masks/00000.tif`` (16-bit or
        wider labels). ``"zarr"``: ``data.zarr`` with arrays ``images`` and ``masks`` of
        shape (N, H, W), one chunk per item, for object stores and array tools.
        Both write ``records/00000.json`` (what was drawn for the item) and
        ``manifest.json`` (configuration, seed, versions and all item records).
    workers : int
        Local worker processes (ignored when `client` is given).
    client : dask.distributed.Client, optional
        Run on a Dask cluster: the dataset (with its pools) is scattered to the workers
        once and items are written by tasks of a few indices each. `directory` must be
        reachable from the workers under the same path (a shared or local file system).
    coco : bool
        Also write COCO ``annotations.json``.

    Running the export again on a half-written folder completes it without redoing
    finished items; a folder holding a different dataset is refused rather than mixed.
    """
    from tqdm.auto import tqdm

    directory = Path(directory).absolute()
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if int(workers) != workers or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if coco and layout != "tiff":
        raise ValueError("coco=True needs layout='tiff'")
    manifest = _prepare(dataset, directory, layout)
    n = len(dataset)
    target = _Target(directory, layout, max(5, len(str(max(n - 1, 0)))))
    todo = [i for i in range(n) if not target.record_path(i).exists()]
    bar = tqdm(total=n, initial=n - len(todo), desc="export", unit="img", disable=not progress)
    if client is not None:
        _run_dask(client, dataset, target, todo, bar)
    elif workers == 1:
        for i in todo:
            target.write(dataset, i)
            bar.update()
    else:
        import multiprocessing as mp

        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
        chunk = max(1, min(16, len(todo) // (workers * 4) or 1))
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                 initargs=(dataset, os.getpid())) as pool:
            for _ in pool.map(_write_local, [target] * len(todo), todo, chunksize=chunk):
                bar.update()
    bar.close()

    missing = [i for i in range(n) if not target.record_path(i).exists()]
    if missing:
        raise RuntimeError(f"{len(missing)} items were not written (first: {missing[:5]}); "
                           "run the export again to complete it")
    records = [json.loads(target.record_path(i).read_text()) for i in range(n)]
    files = ((lambda i: {"image": f"images/{target.name(i)}.tif",
                         "mask": f"masks/{target.name(i)}.tif"})
             if layout == "tiff" else (lambda i: {"zarr_index": i}))
    manifest["items"] = [{**files(i), **r} for i, r in enumerate(records)]
    manifest["complete"] = True
    manifest["particles_not_placed"] = int(sum(r["requested"] - r["placed"] for r in records))
    if coco:
        _json_dump(directory / "annotations.json", _coco(target, n))
    _json_dump(directory / "manifest.json", manifest)
    return directory


def _run_dask(client, dataset, target: _Target, todo: list[int], bar) -> None:
    from distributed import as_completed

    if not todo:
        return
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    size = max(1, min(32, len(todo) // (n_workers * 8) or 1))
    runs = [todo[k:k + size] for k in range(0, len(todo), size)]
    [remote] = client.scatter([dataset], broadcast=True)  # pools shipped once, not per task
    futures = client.map(_write_many, [remote] * len(runs), [target] * len(runs), runs,
                         pure=False, retries=2)
    for future in as_completed(futures):
        try:
            bar.update(len(future.result()))
        except Exception as exc:  # noqa: BLE001 - e.g. KilledWorker: the items stay missing
            # and are named by the completeness check, which says to run the export again.
            bar.write(f"export: a task failed ({type(exc).__name__}: {exc})")


def _coco(target: _Target, n: int) -> dict:
    images, annotations = [], []
    for i in range(n):
        name = f"{target.name(i)}.tif"
        doc = read_mask(target.directory / "masks" / name).to_coco(
            image_id=i + 1, first_id=len(annotations) + 1, file_name=f"images/{name}")
        images += doc["images"]
        annotations += doc["annotations"]
    return {"images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "particle"}]}


def read_zarr_item(directory, index: int):
    """(image, InstanceMask) number `index` of a Zarr export."""
    import zarr

    from ..masks import InstanceMask

    group = zarr.open_group(Path(directory) / "data.zarr", mode="r")
    return np.asarray(group["images"][index]), InstanceMask(np.asarray(group["masks"][index]))
