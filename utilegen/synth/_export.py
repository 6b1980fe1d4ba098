from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from ..io import atomic_path, read_mask, write_image, write_mask

_FORMAT = "utilegen-synthetic/1"
_DATASET = None  # the dataset, set once per worker process


def _item_paths(directory: Path, index: int, width: int):
    name = f"{index:0{width}d}"
    return (directory / "images" / f"{name}.tif", directory / "masks" / f"{name}.tif",
            directory / "records" / f"{name}.json")


def _write_item(directory: Path, index: int, width: int) -> int:
    image_path, mask_path, record_path = _item_paths(directory, index, width)
    if record_path.exists():  # the record is written last: the item is complete
        return index
    s = _DATASET.sample(index)
    # An earlier run may have stopped between files: complete what is missing.
    if not image_path.exists():
        write_image(image_path, s.image)
    if not mask_path.exists():
        write_mask(mask_path, s.mask)
    with atomic_path(record_path) as tmp:
        tmp.write_text(json.dumps(s.params))
    return index


def _init_worker(dataset):
    global _DATASET
    _DATASET = dataset
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def _json_dump(path: Path, data, *, overwrite: bool = True):
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(data, indent=1))


def export(dataset, directory, *, workers: int = 1, coco: bool = False, progress: bool = True) -> Path:
    """Write a `SyntheticDataset` to `directory`.

    Layout: ``images/00000.tif`` (the image), ``masks/00000.tif`` (16-bit or wider labels),
    ``records/00000.json`` (what was drawn for that item), ``manifest.json`` (configuration,
    seed, versions, and all item records) and, with ``coco=True``, ``annotations.json``.

    Every file is written atomically. Running the export again on a half-written folder
    completes it without redoing finished items; a folder holding a different dataset
    (other configuration or seed) is refused rather than mixed.
    """
    from tqdm.auto import tqdm

    from ._dataset import environment

    global _DATASET
    directory = Path(directory)
    if int(workers) != workers or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    config = dataset.config()
    manifest_path = directory / "manifest.json"
    if manifest_path.exists():
        try:
            old = json.loads(manifest_path.read_text())
        except ValueError:
            raise ValueError(f"{manifest_path} is not valid JSON; not writing into {directory}") from None
        if old.get("format") != _FORMAT or old.get("config") != json.loads(json.dumps(config)):
            raise ValueError(f"{directory} holds a different dataset (its manifest.json has another "
                             "configuration or seed); choose an empty folder")
    elif directory.exists() and any(directory.iterdir()):
        raise ValueError(f"{directory} is not empty and has no manifest.json; choose an empty folder")
    for sub in ("images", "masks", "records"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    manifest = {"format": _FORMAT, "config": config, "environment": environment(), "complete": False}
    _json_dump(manifest_path, manifest)

    n = len(dataset)
    width = max(5, len(str(n - 1)))
    bar = tqdm(total=n, desc="export", unit="img", disable=not progress)
    if workers == 1:
        previous, _DATASET = _DATASET, dataset
        try:
            for i in range(n):
                _write_item(directory, i, width)
                bar.update()
        finally:
            _DATASET = previous
    else:
        import multiprocessing as mp

        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
        chunk = max(1, min(16, n // (workers * 4) or 1))
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                 initargs=(dataset,)) as pool:
            for _ in pool.map(_write_item, [directory] * n, range(n), [width] * n, chunksize=chunk):
                bar.update()
    bar.close()

    records = [json.loads(_item_paths(directory, i, width)[2].read_text()) for i in range(n)]
    manifest["items"] = [{"image": f"images/{i:0{width}d}.tif", "mask": f"masks/{i:0{width}d}.tif",
                          **r} for i, r in enumerate(records)]
    manifest["complete"] = True
    shortfall = sum(r["requested"] - r["placed"] for r in records)
    manifest["particles_not_placed"] = int(shortfall)
    if coco:
        _json_dump(directory / "annotations.json", _coco(directory, n, width))
    _json_dump(manifest_path, manifest)
    return directory


def _coco(directory: Path, n: int, width: int) -> dict:
    images, annotations = [], []
    for i in range(n):
        name = f"{i:0{width}d}.tif"
        doc = read_mask(directory / "masks" / name).to_coco(
            image_id=i + 1, first_id=len(annotations) + 1, file_name=f"images/{name}")
        images += doc["images"]
        annotations += doc["annotations"]
    return {"images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "particle"}]}
