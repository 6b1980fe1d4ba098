"""`ShapeClassifier`: a timm backbone that tells which kind of particles an image shows."""

from __future__ import annotations

import contextlib
import copy
import difflib
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import __version__
from ..io import atomic_path
from ._config import ClassifierConfig, TrainConfig
from ._data import LabelledImages
from ._metrics import Evaluation
from ._transforms import TrainTransform, eval_tensor

__all__ = ["Prediction", "ShapeClassifier", "create_backbone"]

WEIGHTS = "weights.pt"
CONFIG = "config.json"


def create_backbone(name: str, num_classes: int, pretrained=False, **model_kwargs):
    """``timm.create_model(name, num_classes=...)`` with clear errors and local weights.

    pretrained : bool or path
        False: random initialisation. True: timm's own download (Hugging Face hub / URL),
        which needs a network. A path: weights from that local file (``.pth``, ``.bin``,
        ``.safetensors`` with the backbone's state dict, e.g. downloaded elsewhere), loaded
        by timm's pretrained loader (``pretrained_cfg_overlay={"file": path}``); a
        classifier head of another number of classes is dropped and re-initialised.
    """
    import timm

    if not isinstance(name, str) or not timm.is_model(name):
        names = timm.list_models()
        close = difflib.get_close_matches(str(name), names, n=8, cutoff=0.6)
        hint = f" Did you mean one of: {', '.join(close)}?" if close else ""
        raise ValueError(
            f"unknown backbone {name!r}: not a timm model.{hint} CPU-sized examples: "
            "convnext_atto, convnext_femto, resnet10t, mobilenetv3_small_100, efficientnet_b0; "
            "Xception family: xception41, xception65, legacy_xception. List them all with "
            "timm.list_models(), or a family with timm.list_models('*convnext*').")
    if pretrained is False or pretrained is None:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, **model_kwargs)
    if pretrained is True:
        try:
            return timm.create_model(name, pretrained=True, num_classes=num_classes, **model_kwargs)
        except Exception as exc:  # network/hub errors come in many types
            raise RuntimeError(
                f"could not load pretrained weights for {name!r} from the timm hub "
                f"({type(exc).__name__}: "
                f"{exc}). Without a network, download the weights elsewhere and pass "
                "pretrained='path/to/weights.safetensors'.") from exc
    path = Path(pretrained)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file not found: {path}")
    _check_weights_file(path, name,
                        timm.create_model(name, num_classes=num_classes, **model_kwargs))
    try:
        return timm.create_model(name, pretrained=True, num_classes=num_classes,
                                 pretrained_cfg_overlay={"file": str(path)}, **model_kwargs)
    except RuntimeError as exc:  # wrong architecture: missing/unexpected keys, shape mismatch
        raise ValueError(
            f"pretrained weights file {path} does not fit backbone {name!r}: {exc}") from None


def _check_weights_file(path: Path, name: str, model) -> None:
    """Refuse a file that holds too little of the backbone (timm loads non-strictly when
    the head is replaced, so a wrong file would otherwise load silently as nothing)."""
    from timm.models import load_state_dict

    try:
        state = load_state_dict(str(path))
    except Exception as exc:  # noqa: BLE001 (torch, safetensors and pickle errors alike)
        raise ValueError(f"pretrained weights file {path} could not be read ({exc})") from None
    head = model.default_cfg.get("classifier", "") if hasattr(model, "default_cfg") else ""
    heads = (head,) if isinstance(head, str) else tuple(head)
    wanted = {k: v.shape for k, v in model.state_dict().items()
              if not any(h and k.startswith(h + ".") for h in heads)
              and "num_batches_tracked" not in k}
    fitting = [k for k, shape in wanted.items()
               if k in state and tuple(state[k].shape) == tuple(shape)]
    if len(fitting) < len(wanted):
        missing = [k for k in wanted if k not in fitting]
        raise ValueError(
            f"pretrained weights file {path} does not fit backbone {name!r}: {len(missing)} of its "
            f"{len(wanted)} tensors are missing or of another shape (e.g. {missing[:3]}); "
            "expected a timm state dict of that model")


@dataclass(frozen=True)
class Prediction:
    """Predicted classes of N images: ``labels`` (N,) and ``probabilities`` (N, C)."""

    classes: tuple
    labels: tuple
    probabilities: np.ndarray
    names: tuple = ()

    def __len__(self) -> int:
        return len(self.labels)

    def to_frame(self):
        """A pandas DataFrame: name, label, and one probability column per class."""
        import pandas as pd

        df = pd.DataFrame(self.probabilities, columns=[f"p_{c}" for c in self.classes])
        df.insert(0, "label", list(self.labels))
        df.insert(0, "name", list(self.names) if self.names else list(range(len(self))))
        return df


@contextlib.contextmanager
def _seeded(seed: int):
    """Seed torch, `random` and NumPy's global generator; restore all three afterwards.

    timm's RandAugment and Mixup draw from Python's and NumPy's global generators.
    """
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def _as_items(images) -> LabelledImages:
    """Anything `predict` accepts -> LabelledImages (labels unused)."""
    if isinstance(images, LabelledImages):
        return images
    if isinstance(images, (str, Path)) or (isinstance(images, np.ndarray) and images.ndim == 2):
        images = [images]
    elif isinstance(images, np.ndarray) and images.ndim == 3 and images.shape[-1] in (3, 4):
        images = [images]  # one RGB image
    return LabelledImages(list(images), "?")


class ShapeClassifier:
    """Whole-image shape classification (sphere / cube / rod, ...) on any timm backbone.

    Parameters
    ----------
    backbone : str
        A timm model name (``timm.list_models()``); unknown names raise a ValueError that
        lists close names.
    classes : sequence of str
        Class names (network output order).
    pretrained : bool or path
        False (default), True (timm hub download, needs a network) or a local weights file.
    image_size : int
        Network input side in pixels (the paper's models use 224/299; 128 is CPU-friendly).
    seed : int
        Seeds the initialisation of the new classifier head (and the whole model when not
        pretrained).
    model_kwargs : dict, optional
        Extra ``timm.create_model`` arguments.
    level : {"image", "particle"}
        Whole micrographs (default) or single-particle crops (`particle_crops`), which
        `analyze` then classifies particle by particle.

    See the `utilegen.classify` module docs for the image policy (grayscale replicated to
    3 channels, whole-image resize for prediction, random-resized crops for training).

    >>> clf = ShapeClassifier("convnext_atto", image_size=128)             # doctest: +SKIP
    >>> clf.fit(train, val, epochs=20, augment="randaugment+mixup")       # doctest: +SKIP
    >>> print(clf.evaluate(test)); clf.save("models/shape")               # doctest: +SKIP
    """

    def __init__(self, backbone: str = "xception41", classes=("sphere", "cube", "rod"),
                 pretrained=False, image_size: int = 224, *, seed: int = 0,
                 model_kwargs: dict | None = None, level: str = "image",
                 _config: ClassifierConfig | None = None):
        if _config is None:
            _config = ClassifierConfig(backbone=backbone, classes=classes, image_size=image_size,
                                       model_kwargs=dict(model_kwargs or {}), level=level)
        with _seeded(seed):
            self.model = create_backbone(_config.backbone, len(_config.classes), pretrained,
                                         **_config.model_kwargs)
        if pretrained is not False and pretrained is not None:
            # Normalise as the weights were trained.
            cfg = getattr(self.model, "pretrained_cfg", {}) or {}
            if "mean" in cfg and "std" in cfg:
                _config = ClassifierConfig(**{**_config.to_dict(),
                                              "mean": cfg["mean"], "std": cfg["std"]})
        self.config = _config
        self.pretrained = str(pretrained) if pretrained not in (False, None) else None
        self.train_config: TrainConfig | None = None
        self.history: list[dict] = []
        self.model.eval()

    @property
    def classes(self) -> tuple:
        return self.config.classes

    @property
    def level(self) -> str:
        """"image" (whole micrographs) or "particle" (single-particle crops)."""
        return self.config.level

    def __repr__(self) -> str:
        level = ", level='particle'" if self.level == "particle" else ""
        return (f"ShapeClassifier({self.config.backbone!r}, classes={self.classes}, "
                f"image_size={self.config.image_size}{level})")

    # ------------------------------------------------------------------ training
    def _check_data(self, data, what: str) -> LabelledImages:
        if not isinstance(data, LabelledImages):
            raise TypeError(f"{what} must be LabelledImages (see utilegen.classify.from_emps, "
                            f"LabelledImages), got {type(data).__name__}")
        if len(data) == 0:
            raise ValueError(f"{what} is empty")
        unknown = sorted(set(data.labels) - set(self.classes))
        if unknown:
            raise ValueError(f"{what} has labels {unknown} that are not among the classifier's "
                             f"classes {list(self.classes)}")
        return data

    def fit(self, train: LabelledImages, val: LabelledImages | None = None, *, epochs: int = 10,
            steps: int | None = None, augment: str = "standard", batch_size: int = 16,
            learning_rate: float = 1e-3, checkpoint=None, progress: bool = True,
            **options) -> list[dict]:
        """Train on `train`, keep the weights with the best accuracy on `val`.

        Parameters
        ----------
        train, val : LabelledImages
            Real, synthetic (`synthetic_for_class`) or both (``real + synthetic``).
            Images of any size (see the module docs for the resize/crop policy).
        epochs, steps, augment, batch_size, learning_rate, **options
            `TrainConfig` fields (``weight_decay``, ``randaugment``, ``mixup_alpha``,
            ``eval_every``, ``seed``, ...). ``steps`` fixes the number of optimizer steps.
        checkpoint : path, optional
            Folder to `save` the best model to whenever it improves.
        progress : bool
            Show a tqdm progress bar.

        Returns
        -------
        list of dict
            The history: one row per validation (step, epoch, train_loss, val_loss,
            val_accuracy, seconds). Without `val` the final weights are kept.
        """
        from tqdm.auto import tqdm

        from .._distributed import mean_over_ranks, shard, sync_buffers, world, wrap

        rank, world_size = world()
        progress = progress and rank == 0
        cfg = TrainConfig(epochs=epochs, steps=steps, augment=augment, batch_size=batch_size,
                          learning_rate=learning_rate, **options)
        train = self._check_data(train, "train")
        if val is not None:
            val = self._check_data(val, "val")
        mixup = cfg.augment == "randaugment+mixup" and (cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0)
        local_batch = shard(cfg.batch_size, world_size)  # each rank trains on its share
        if mixup and local_batch % 2:
            raise ValueError(f"batch_size must be even for MixUp (pairs are mixed), "
                             f"got {cfg.batch_size}"
                             + (f" ({local_batch} per process)" if world_size > 1 else ""))
        steps_per_epoch = max(1, math.ceil(len(train) / cfg.batch_size))
        total = cfg.steps if cfg.steps is not None else cfg.epochs * steps_per_epoch
        eval_every = cfg.eval_every or (steps_per_epoch if cfg.steps is None
                                        else max(1, total // 10))
        c = self.config
        transform = TrainTransform(c.image_size, c.mean, c.std, crop_scale=cfg.crop_scale,
                                   randaugment=(cfg.randaugment if cfg.augment != "standard"
                                                else None))
        index = {name: i for i, name in enumerate(self.classes)}
        targets = torch.tensor([index[lab] for lab in train.labels])
        mixer = None
        if mixup:
            from timm.data import Mixup

            mixer = Mixup(mixup_alpha=cfg.mixup_alpha, cutmix_alpha=cfg.cutmix_alpha,
                          label_smoothing=cfg.label_smoothing, num_classes=len(self.classes))
        val_x = val_y = None
        if val is not None:
            val_x = torch.stack([eval_tensor(im, c.image_size, c.mean, c.std) for im, _ in val])
            val_y = torch.tensor([index[lab] for lab in val.labels])

        model = self.model
        train_model = wrap(model, world_size)
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate,
                                      weight_decay=cfg.weight_decay)
        warmup = max(1, round(0.05 * total))
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(
            (s + 1) / warmup, 0.5 * (1 + math.cos(math.pi * min(s, total) / total))))
        history: list[dict] = []
        best = (-1.0, -math.inf)  # (accuracy, -loss)
        best_state = None
        start = time.perf_counter()
        running, seen = 0.0, 0
        # The batch order is the same on every rank; augmentation draws differ per rank.
        order_rng = torch.Generator().manual_seed(cfg.seed)
        with _seeded(cfg.seed + 1_000_003 * rank):
            order = torch.empty(0, dtype=torch.long)
            bar = tqdm(range(total), desc=f"train {c.backbone}", disable=not progress, leave=False)
            for step in bar:
                # A stream of shuffled epochs: every batch is full (MixUp needs even batches).
                while len(order) < cfg.batch_size:
                    order = torch.cat([order, torch.randperm(len(train), generator=order_rng)])
                batch, order = order[:cfg.batch_size], order[cfg.batch_size:]
                batch = batch[rank * local_batch:(rank + 1) * local_batch]
                model.train()
                x = torch.stack([transform(train.image(int(i))) for i in batch])
                y = targets[batch]
                if mixer is not None:
                    x, soft = mixer(x, y)
                    loss = torch.sum(-soft * F.log_softmax(train_model(x), dim=-1), dim=-1).mean()
                else:
                    loss = F.cross_entropy(train_model(x), y, label_smoothing=cfg.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                running += float(loss.detach()) * len(batch)
                seen += len(batch)
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
                if (step + 1) % eval_every == 0 or step + 1 == total:
                    row = {"step": step + 1, "epoch": round((step + 1) / steps_per_epoch, 3),
                           "train_loss": mean_over_ranks([running / seen], world_size)[0],
                           "lr": schedule.get_last_lr()[0]}
                    running, seen = 0.0, 0
                    if val_x is not None:
                        vloss, vacc = self._score(val_x, val_y)
                        row.update(val_loss=vloss, val_accuracy=vacc)
                        if (vacc, -vloss) > best:
                            best = (vacc, -vloss)
                            best_state = copy.deepcopy(model.state_dict())
                            row["best"] = True
                            if checkpoint is not None and rank == 0:
                                self.train_config, self.history = cfg, history + [row]
                                self.save(checkpoint, overwrite=True)
                    row["seconds"] = round(time.perf_counter() - start, 2)
                    history.append(row)
                    bar.set_postfix(loss=f"{row['train_loss']:.3f}",
                                    val_acc=f"{row.get('val_accuracy', float('nan')):.2f}")
            bar.close()
        if best_state is not None:
            model.load_state_dict(best_state)
        sync_buffers(model, world_size)  # ranks may have kept their own BatchNorm stats
        model.eval()
        self.train_config, self.history = cfg, history
        return history

    @torch.no_grad()
    def _score(self, x: torch.Tensor, y: torch.Tensor, batch: int = 32) -> tuple[float, float]:
        self.model.eval()
        logits = torch.cat([self.model(x[i:i + batch]) for i in range(0, len(x), batch)])
        return float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean())

    # ---------------------------------------------------------------- inference
    @torch.no_grad()
    def predict_proba(self, images, *, batch_size: int = 32) -> np.ndarray:
        """(N, C) class probabilities of `images` (see `predict`)."""
        items = _as_items(images)
        c = self.config
        self.model.eval()
        out = []
        for start in range(0, len(items), batch_size):
            x = torch.stack([eval_tensor(items.image(i), c.image_size, c.mean, c.std)
                             for i in range(start, min(start + batch_size, len(items)))])
            out.append(torch.softmax(self.model(x).float(), dim=1))
        return torch.cat(out).numpy() if out else np.zeros((0, len(self.classes)), np.float32)

    def predict(self, images, *, batch_size: int = 32) -> Prediction:
        """Class and probabilities of each image.

        Parameters
        ----------
        images : image, path, sequence of images/paths, or LabelledImages
            2-D grayscale (or RGB) arrays of any size and dtype, or image files.
        """
        items = _as_items(images)
        proba = self.predict_proba(items, batch_size=batch_size)
        labels = tuple(self.classes[i] for i in proba.argmax(axis=1))
        return Prediction(self.classes, labels, proba, tuple(items.names))

    def evaluate(self, data: LabelledImages, *, batch_size: int = 32) -> Evaluation:
        """Accuracy, per-class precision/recall and confusion matrix on labelled `data`."""
        data = self._check_data(data, "data")
        pred = self.predict(data, batch_size=batch_size)
        return Evaluation.from_labels(data.labels, pred.labels, self.classes, names=data.names,
                                      probabilities=pred.probabilities)

    # ------------------------------------------------------------- persistence
    def save(self, directory, *, overwrite: bool = False, half: bool = False) -> Path:
        """Write ``weights.pt`` and ``config.json`` (configuration, training, history).

        half : bool
            Store floating-point weights as float16 (half the file; `load` restores
            float32). For shipping small models; the predictions move by ~1e-3.
        """
        directory = Path(directory)
        if (directory / CONFIG).exists() and not overwrite:
            raise FileExistsError(
                f"{directory} already holds a model; pass overwrite=True to replace it")
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"utilegen": __version__, "kind": "ShapeClassifier",
                "classifier": self.config.to_dict(), "pretrained": self.pretrained,
                "training": self.train_config.to_dict() if self.train_config else None,
                "history": self.history}
        state = self.model.state_dict()
        if half:
            state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        with atomic_path(directory / WEIGHTS, overwrite=True) as tmp:
            torch.save(state, tmp)
        with atomic_path(directory / CONFIG, overwrite=True) as tmp:
            tmp.write_text(json.dumps(meta, indent=2))
        return directory

    @classmethod
    def pretrained(cls, name: str = "emps") -> ShapeClassifier:
        """A classifier shipped with utilegen (offline): ``"emps"``, the per-particle
        sphere / cube / rod / other model that `analyze` uses by default."""
        from ._registry import _MODELS_DIR, PRETRAINED

        if name not in PRETRAINED:
            raise ValueError(f"unknown pretrained classifier {name!r}; known: {sorted(PRETRAINED)}")
        path = _MODELS_DIR / PRETRAINED[name]
        if not (path / WEIGHTS).is_file():
            raise FileNotFoundError(f"the pretrained classifier {name!r} is missing from {path}; "
                                    "reinstall utilegen")
        return cls.load(path)

    @classmethod
    def load(cls, directory) -> ShapeClassifier:
        """A classifier saved with `save`."""
        directory = Path(directory)
        for name in (CONFIG, WEIGHTS):
            if not (directory / name).is_file():
                raise FileNotFoundError(
                    f"{directory / name} not found: not a saved ShapeClassifier folder")
        try:
            meta = json.loads((directory / CONFIG).read_text())
            config = ClassifierConfig.from_dict(meta["classifier"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(
                f"{directory / CONFIG} is not a ShapeClassifier config ({exc})") from None
        clf = cls(None, _config=config)
        state = torch.load(directory / WEIGHTS, map_location="cpu", weights_only=True)
        clf.model.load_state_dict(state)
        clf.model.eval()
        clf.pretrained = meta.get("pretrained")
        if meta.get("training"):
            clf.train_config = TrainConfig.from_dict(meta["training"])
        clf.history = list(meta.get("history") or [])
        return clf
