"""Generation on Dask: byte-identical to a local export, robust to a killed worker."""

import hashlib
import os
import sys
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from utilegen.datasets import sample_pair
from utilegen.synth import (
    BackgroundPool,
    Compositor,
    ParticlePool,
    SyntheticDataset,
    read_zarr_item,
)


@pytest.fixture(scope="module")
def cluster():
    import cloudpickle

    # Workers unpickle this module's classes by value (tests/ is not an installed package).
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        yield cluster, client


def _dataset(length=12, cls=SyntheticDataset, **kw):
    pair = sample_pair((128, 128), particles=12, radius=(6, 12), rng=2)
    return cls(ParticlePool.from_pairs([pair]), BackgroundPool.from_pairs([pair]),
               compositor=Compositor(image_size=96, particles_per_image=(3, 8)), length=length,
               seed=7, **kw)


def _digest(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


class DiesOnce(SyntheticDataset):
    """Kills the worker process the first time it makes item 5 (a crash mid-export)."""

    marker: str = ""

    def sample(self, index):
        if index == 5 and not os.path.exists(self.marker):
            Path(self.marker).write_text("died")
            os._exit(1)
        return super().sample(index)


def test_dask_export_equals_local_export(tmp_path, cluster):
    _, client = cluster
    ds = _dataset()
    ds.export(tmp_path / "local", progress=False)
    ds.export(tmp_path / "dask", client=client, progress=False)
    assert _digest(tmp_path / "dask") == _digest(tmp_path / "local")


def test_killed_worker_loses_nothing(tmp_path, cluster):
    _, client = cluster
    ds = _dataset(cls=DiesOnce)
    ds.marker = str(tmp_path / "died.txt")
    try:
        ds.export(tmp_path / "dask", client=client, progress=False)
    except RuntimeError as exc:
        # Dask may give up on a task whose worker died (KilledWorker, e.g. on a loaded
        # machine); the export then names the missing items, and running it again resumes.
        assert "run the export again" in str(exc)
        ds.export(tmp_path / "dask", client=client, progress=False)
    assert (tmp_path / "died.txt").exists()  # a worker really died mid-export
    reference = _dataset()
    reference.export(tmp_path / "local", progress=False)
    assert _digest(tmp_path / "dask") == _digest(tmp_path / "local")


def test_zarr_layout(tmp_path, cluster):
    _, client = cluster
    ds = _dataset(length=6)
    ds.export(tmp_path / "z", layout="zarr", client=client, progress=False)
    ds.export(tmp_path / "z_local", layout="zarr", progress=False)
    assert _digest(tmp_path / "z") == _digest(tmp_path / "z_local")
    for i in range(6):
        image, mask = read_zarr_item(tmp_path / "z", i)
        s = ds.sample(i)
        assert np.array_equal(image, s.image) and mask == s.mask


def test_dask_analyze_equals_local(tmp_path, cluster):
    import pandas as pd

    from utilegen import analyze
    from utilegen.io import write_image
    from utilegen.segment import ThresholdSegmenter

    _, client = cluster
    paths = []
    for i in range(3):
        image, _ = sample_pair((160, 160), particles=10, radius=(6, 12), rng=i)
        paths.append(write_image(tmp_path / f"img{i}.tif", image))
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"not a tiff")
    inputs = [paths[0], bad, paths[1], paths[2]]
    local = analyze(inputs, segmenter=ThresholdSegmenter(), pixel_size=2.0)
    remote = analyze(inputs, segmenter=ThresholdSegmenter(), pixel_size=2.0, client=client)
    assert remote.ids == local.ids == ["img0", "img1", "img2"]
    # reported, the rest finished
    assert len(remote.errors) == 1 and "broken.tif" in remote.errors[0][0]
    pd.testing.assert_frame_equal(remote.particles, local.particles)
    pd.testing.assert_frame_equal(remote.summary, local.summary)
    for i in local.ids:
        assert remote.masks[i] == local.masks[i]


def test_ddp_training_ranks_end_identical(tmp_path):
    import subprocess

    import torch

    script = Path(__file__).with_name("ddp_train.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node", "2", str(script), str(tmp_path)],
                         capture_output=True, text=True, env=env, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    for name in ("stardist", "classifier"):
        a = torch.load(tmp_path / f"{name}_rank0.pt")
        b = torch.load(tmp_path / f"{name}_rank1.pt")
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}: {key} differs between ranks"
    initial = torch.load(tmp_path / "stardist_initial_rank0.pt")
    trained = torch.load(tmp_path / "stardist_rank0.pt")
    assert any(not torch.equal(initial[k], trained[k]) for k in initial)  # it did train
    assert (tmp_path / "ckpt" / "last.pt").exists()  # written by rank 0
    assert ((tmp_path / "history_rank0.txt").read_text()
            == (tmp_path / "history_rank1.txt").read_text())
