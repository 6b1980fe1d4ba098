"""Run by tests/test_distributed.py under torchrun: train a tiny StarDist and a tiny
ShapeClassifier for a few steps with DDP (gloo, CPU); each rank saves its final weights."""

import sys
from pathlib import Path

import torch

from utilegen._distributed import world
from utilegen.classify import LabelledImages, ShapeClassifier
from utilegen.datasets import sample_pair
from utilegen.segment import StarDist, StarDistConfig

out = Path(sys.argv[1])
torch.set_num_threads(1)
rank, world_size = world()
assert world_size == 2, world_size

pairs = [sample_pair((96, 96), particles=8, radius=(6, 10), rng=i) for i in range(2)]
model = StarDist(StarDistConfig(base_filters=8, feature_channels=16, patch_size=64, unet_depth=2,
                                n_rays=16, batch_size=4), seed=0)
initial = {k: v.clone() for k, v in model.network.state_dict().items()}
torch.save(initial, out / f"stardist_initial_rank{rank}.pt")
history = model.fit(pairs, pairs[:1], epochs=2, steps_per_epoch=3, seed=0, progress=False,
                    checkpoint_dir=out / "ckpt")
torch.save(model.network.state_dict(), out / f"stardist_rank{rank}.pt")

images = [sample_pair((48, 48), particles=3, radius=(4, 6), rng=i)[0] for i in range(8)]
labels = ["a", "b"] * 4
clf = ShapeClassifier("resnet10t", classes=("a", "b"), image_size=32, seed=0)
clf.fit(LabelledImages(images, labels), steps=3, batch_size=4, progress=False)
torch.save(clf.model.state_dict(), out / f"classifier_rank{rank}.pt")
(out / f"history_rank{rank}.txt").write_text(repr([round(h["loss"], 6) for h in history]))
