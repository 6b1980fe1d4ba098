"""The EMPS data set (Yildirim & Cole 2021): a `PairedFolder` over its images and
segmentation maps, with its shape labels, and an optional download."""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from ._paired import PairedFolder

# Public repository of the EMPS dataset (Yildirim & Cole, J. Chem. Inf. Model. 2021, MIT licence).
EMPS_URL = "https://github.com/by256/emps/archive/HEAD.zip"


def _default_root() -> Path:
    base = os.environ.get("UTILEGEN_DATA") or Path.home() / ".cache" / "utilegen"
    return Path(base) / "emps"


class EMPS(PairedFolder):
    """The EMPS dataset: micrographs in ``images/``, uint16 instance masks in ``segmaps/``.

    ``shapes`` maps image id to its dominant particle shape when a ``shapes.csv`` is present
    (``filename,shape`` rows); ``split`` is the list of ids in ``train.csv`` / ``test.csv``.
    """

    def __init__(self, root, *, split: str | None = None, ids=None):
        root = Path(root)
        if ids is None and split is not None:
            split_file = root / f"{split}.csv"
            if not split_file.is_file():
                raise FileNotFoundError(f"EMPS split file not found: {split_file}")
            with open(split_file, newline="") as f:
                ids = [row[0].strip().removesuffix(".png") for row in csv.reader(f)
                       if row and row[0].strip()]
        super().__init__(root, images="images", masks="segmaps", ids=ids, strict=False)
        self.split = split
        self.shapes: dict[str, str] | None = None
        shapes_file = root / "shapes.csv"
        if shapes_file.is_file():
            with open(shapes_file, newline="") as f:
                reader = csv.DictReader(f)
                if reader.fieldnames is None or not {"filename", "shape"} <= set(reader.fieldnames):
                    raise ValueError(f"{shapes_file} must have the columns 'filename,shape'")
                self.shapes = {Path(r["filename"]).stem: r["shape"].strip() for r in reader}

    def with_shape(self, *shapes: str) -> EMPS:
        """The images whose dominant shape (``shapes.csv``) is one of `shapes`."""
        if self.shapes is None:
            raise ValueError(f"no shapes.csv in {self.root}: shape labels are unknown")
        return EMPS(self.root, ids=[i for i in self.ids if self.shapes.get(i) in shapes])

    def subset(self, ids) -> EMPS:
        return EMPS(self.root, ids=ids)


def download_emps(root, *, url: str = EMPS_URL, progress: bool = True) -> Path:
    """Download and unpack the EMPS repository archive into `root` (atomically)."""
    root = Path(root)
    if root.exists() and not _is_empty_dir(root):
        raise FileExistsError(f"{root} exists and is not an empty folder; not downloading into it")
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent, prefix=".emps-download-") as tmp:
        archive = Path(tmp) / "emps.zip"
        try:
            _fetch(url, archive, progress=progress)
        except OSError as exc:
            raise RuntimeError(
                f"could not download EMPS from {url} ({exc}); download it by hand and pass "
                "root= pointing at the folder with images/ and segmaps/") from None
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(Path(tmp) / "unpacked")
        found = [p.parent for p in (Path(tmp) / "unpacked").rglob("segmaps") if p.is_dir()]
        if not found or not (found[0] / "images").is_dir():
            raise RuntimeError(f"the archive from {url} has no images/ and segmaps/ folders")
        if root.exists():
            if not _is_empty_dir(root):
                raise FileExistsError(f"{root} appeared during the download; not replacing it")
            root.rmdir()  # an empty folder made beforehand (shutil.move would nest into it)
        shutil.move(str(found[0]), root)
    return root


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def _fetch(url: str, dest: Path, *, progress: bool) -> None:
    from tqdm.auto import tqdm

    with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc="EMPS", disable=not progress) as bar:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))


def emps(root=None, download: bool = False, *, split: str | None = None,
         url: str = EMPS_URL) -> EMPS:
    """The EMPS dataset (Yildirim & Cole 2021) as image/mask pairs.

    Parameters
    ----------
    root : path, optional
        A local copy (a folder with ``images/`` and ``segmaps/``). Default:
        ``$UTILEGEN_DATA/emps`` or ``~/.cache/utilegen/emps``.
    download : bool
        Download the dataset from its public repository if `root` does not hold it.
    split : {"train", "test"}, optional
        Keep only the ids listed in ``<root>/<split>.csv``.
    """
    root = Path(root) if root is not None else _default_root()
    if not (root / "segmaps").is_dir():
        if not download:
            raise FileNotFoundError(
                f"EMPS not found in {root} (no segmaps/ folder); pass root= to a local copy "
                "or download=True to fetch it from " + url)
        download_emps(root, url=url)
    return EMPS(root, split=split)
