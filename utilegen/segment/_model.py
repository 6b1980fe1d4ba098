"""`StarDist`: a star-convex polygon instance segmenter in PyTorch (torch imported lazily)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .._image import as_gray, percentile_normalize
from ..masks import InstanceMask
from ._config import StarDistConfig

_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
PRETRAINED = {"emps": "stardist_emps"}
# scale="sweep": the network runs at config.scale times each factor and the surest result
# wins (the first on ties)
AUTO_FACTORS = (1.0, 0.5, 2.0)
# scale="auto": passes at config.scale times each of these factors, coarsest first, until
# one finds particles to measure; then one pass at the scale that brings their width to
# AUTO_WIDTH network pixels, clipped to AUTO_RANGE x config.scale (see `choose_scale`)
AUTO_LADDER = (0.5, 1.0, 2.0)
AUTO_RANGE = (0.5, 2.0)
#: Particle width (px after resizing) `scale="auto"` aims at; with the coarse pass's
#: minimum particle count and its "large enough to trust" width, chosen on 33 of the
#: shipped model's training images (benchmarks/RESULTS.md, "One pass at the right scale").
AUTO_WIDTH = 40.0
AUTO_MIN_COUNT = 3
#: `optimize_thresholds` keeps, per image and scale, every candidate above half the highest
#: probability and at most this many more (NMS on them is what the search costs).
CANDIDATE_CAP = 10_000
AUTO_TRUSTED_WIDTH = 40.0


class StarDist:
    """StarDist (star-convex polygons) instance segmentation with a PyTorch U-Net.

    Parameters
    ----------
    config : StarDistConfig, optional
        Network and training settings (StarDist2D's defaults).
    seed : int, optional
        Seed of the weight initialization.

    Examples
    --------
    >>> from utilegen.segment import StarDist, StarDistConfig
    >>> model = StarDist(StarDistConfig(base_filters=8))             # doctest: +SKIP
    >>> model.fit(train_pairs, val_pairs, epochs=10, steps_per_epoch=50)  # doctest: +SKIP
    >>> model.optimize_thresholds(val_pairs)                         # doctest: +SKIP
    >>> mask = model.predict(image)                                  # doctest: +SKIP
    """

    def __init__(self, config: StarDistConfig | None = None, *, seed: int | None = 0):
        if config is None:
            config = StarDistConfig()
        if isinstance(config, dict):
            config = StarDistConfig.from_dict(config)
        if not isinstance(config, StarDistConfig):
            raise ValueError(  # noqa: TRY004 -- the project reports bad arguments as ValueError
                f"config must be a StarDistConfig or a dict, got {type(config).__name__}")
        import torch

        from ._net import StarDistNet

        self.config = config
        if seed is not None:
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                self.network = StarDistNet(config)
        else:
            self.network = StarDistNet(config)
        self.network.eval()
        self.thresholds = {"prob": 0.5, "nms": 0.4}
        # what `predict` does without a `scale` argument: None = config.scale, or "auto"
        self.predict_scale: str | float | None = None
        # particle width (px after resizing) scale="auto" aims at: where this network is
        # surest, i.e. about the widths it was trained on (saved with the thresholds)
        self.auto_width: float = AUTO_WIDTH
        # what `predict` does without a `tta` argument (not saved: a choice of each run)
        self.predict_tta: bool = False
        self.history: list[dict] = []
        self.info: dict = {}

    def __repr__(self) -> str:
        return (f"StarDist(n_rays={self.config.n_rays}, grid={self.config.grid}, "
                f"base_filters={self.config.base_filters}, thresholds={self.thresholds}, "
                "scale="
                f"{self.config.scale if self.predict_scale is None else self.predict_scale!r})")

    # ----------------------------------------------------------------- training
    def fit(self, train, val=None, *, epochs: int = 20, steps_per_epoch: int = 100,
            batch_size: int | None = None, time_limit: float | None = None, seed=0,
            checkpoint_dir=None, resume=None, progress: bool = True,
            n_val_patches: int | None = None, callback=None, device=None,
            workers: int = 0, synthetic=None, synthetic_share: float = 0.0) -> list[dict]:
        """Train on `train` (any dataset of ``(image, InstanceMask)`` items) and keep the best.

        Parameters
        ----------
        train, val : dataset
            `PairedFolder`, `SyntheticDataset`, their `ConcatDataset`/`Subset`, or a list of
            ``(image, mask)`` tuples; read once through `utilegen.datasets.get_pair`. `val`
            gives a fixed set of validation patches whose loss selects the best weights and
            drives the reduce-on-plateau schedule (the training loss does without it).
        epochs, steps_per_epoch : int
            Training length; one step is one batch of random augmented patches.
        batch_size : int, optional
            Patches per step (default ``config.batch_size``).
        time_limit : float, optional
            Stop after this many seconds from the call (reading the data included), at the
            end of the current step.
        seed : int or None
            Seeds patch sampling, augmentation and torch.
        checkpoint_dir : path, optional
            Write ``last.pt`` (weights, optimizer, random state, best weights) after every
            epoch; pass it back as `resume` to continue an interrupted run.
        resume : path, optional
            A ``last.pt`` written by an earlier `fit` with the same config.
        callback : callable, optional
            Called after every epoch as ``callback(record, model, best_state)`` (e.g. to save
            the best weights so far: ``best_state`` is a network state dict or None).
        device : str, optional
            Where to train: None (the CPU), ``"auto"`` (a CUDA GPU when there is one),
            ``"cpu"`` or ``"cuda[:N]"``. The trained network is returned on the CPU.
        workers : int
            Worker processes that make training patches (their star-distance targets are
            CPU-bound); 0 makes them in a background thread. Use several with a GPU,
            which otherwise waits for patches. Batch k of epoch e is then drawn from
            ``(seed, e, k)``, the same for any number of workers.
        synthetic, synthetic_share : dataset, float
            Synthetic pairs composed on the fly while the network trains (e.g. a
            `SyntheticDataset` of any length, or `segment.synthetic_like`): that share of
            the training patches comes each from a new synthetic pair, made in the process
            that makes the batch, instead of from `train`. Unlike pairs generated before
            training, no two patches share a synthetic image.

        Returns the history: one dict per epoch with losses, learning rate and time.
        """
        for name, v in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch)):
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if batch_size is not None and (not isinstance(batch_size, (int, np.integer))
                                       or batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if time_limit is not None and not time_limit > 0:
            raise ValueError(f"time_limit must be a positive number of seconds, got {time_limit!r}")
        from ._train import fit as _fit

        self.history = _fit(self, train, val, epochs=int(epochs),
                            steps_per_epoch=int(steps_per_epoch),
                            batch_size=batch_size, time_limit=time_limit, seed=seed,
                            checkpoint_dir=checkpoint_dir, resume=resume, progress=progress,
                            n_val_patches=n_val_patches, callback=callback, device=device,
                            workers=int(workers), synthetic=synthetic,
                            synthetic_share=float(synthetic_share))
        return self.history

    # --------------------------------------------------------------- prediction
    def _check_image(self, image) -> np.ndarray:
        return as_gray(image, min_size=2)

    def _thresholds(self, prob_thresh, nms_thresh):
        p = self.thresholds["prob"] if prob_thresh is None else float(prob_thresh)
        n = self.thresholds["nms"] if nms_thresh is None else float(nms_thresh)
        if not 0 <= p < 1:
            raise ValueError(f"prob_thresh must be in [0, 1), got {p}")
        if not 0 <= n <= 1:
            raise ValueError(f"nms_thresh must be in [0, 1], got {n}")
        return p, n

    def _scales(self, scale) -> list[float]:
        """The resize factors `predict` tries for a `scale` argument (see `predict`)."""
        scale = self.predict_scale if scale is None else scale
        if scale is None:
            return [self.config.scale]
        if isinstance(scale, str):
            if scale not in ("auto", "sweep"):
                raise ValueError(f"scale must be a number, 'auto', 'sweep' or None, got {scale!r}")
            # dict.fromkeys: a factor clipped onto another is not run twice
            factors = AUTO_FACTORS if scale == "sweep" else AUTO_LADDER
            return list(dict.fromkeys(min(4.0, max(0.05, self.config.scale * f))
                                      for f in factors))
        if (isinstance(scale, (bool, np.bool_))
                or not isinstance(scale, (int, float, np.integer, np.floating))
                or not 0.05 <= scale <= 4):
            raise ValueError(f"scale must be in [0.05, 4], 'auto', 'sweep' or None, got {scale!r}")
        return [float(scale)]

    def _auto(self, x, *, prob_thresh: float, nms_thresh: float, tile_size: int = 1024,
              context: int = 64, keep_prob: bool = False, tta: bool = False):
        """`scale="auto"` on a normalized image: coarse passes until particles are found,
        then one pass at the scale their width asks for (with `tta`, only the passes whose
        particles are kept are augmented; those that choose the scale are not).

        Returns ``(scale, kept, prob_map, choice)``: the NMS result at the chosen scale
        (``(points, probs, dists)`` in resized coordinates) and a dict that says why.
        """
        from ._predict import suppress

        ladder = self._scales("auto")
        lo, hi = (min(4.0, max(0.05, self.config.scale * f)) for f in AUTO_RANGE)
        runs = []
        for s in ladder:
            points, probs, dists, prob_map = self.predict_candidates(
                x, prob_thresh=prob_thresh, scale=s, tile_size=tile_size, context=context,
                keep_prob=keep_prob, _normalized=True)
            kept = suppress(points, probs, dists, prob_thresh=prob_thresh, nms_thresh=nms_thresh)
            runs.append((s, kept, prob_map))
            widths = _widths(kept[2])
            if len(widths) == 0:
                continue
            width = float(np.median(widths))  # px after resizing by s
            if len(widths) < AUTO_MIN_COUNT and width < AUTO_TRUSTED_WIDTH:
                continue  # one or two blobs may be clusters of particles too small to see
            target = choose_scale(width / s, target=self.auto_width, lo=lo, hi=hi)
            seen = kept  # the particles of this pass, for the second-population probe
            choice = {"mode": "auto", "width_px": round(width / s, 2), "n_seen": len(widths),
                      "seen_at": s}
            if abs(np.log(target / s)) <= np.log(1.2):
                if tta:  # this pass is kept: run it again, augmented
                    points, probs, dists, prob_map = self.predict_candidates(
                        x, prob_thresh=prob_thresh, scale=s, tile_size=tile_size,
                        context=context, keep_prob=keep_prob, _normalized=True, tta=True)
                    kept = suppress(points, probs, dists, prob_thresh=prob_thresh,
                                    nms_thresh=nms_thresh)
                result = (s, kept, prob_map, {**choice, "scale": s,
                                              "passes": len(runs) + tta,
                                              "reason": f"particles {width / s:.0f} px wide at "
                                                        f"scale {s:g}: kept that pass"})
            else:
                points, probs, dists, prob_map = self.predict_candidates(
                    x, prob_thresh=prob_thresh, scale=target, tile_size=tile_size,
                    context=context, keep_prob=keep_prob, _normalized=True, tta=tta)
                kept = suppress(points, probs, dists, prob_thresh=prob_thresh,
                                nms_thresh=nms_thresh)
                result = (target, kept, prob_map, {
                    **choice, "scale": target, "passes": len(runs) + 1,
                    "reason": f"particles {width / s:.0f} px wide (seen at scale {s:g}): one "
                              f"pass at {target:g}, where they are {width / s * target:.0f} px "
                              f"wide (aim {self.auto_width:.0f})"})
            # a second, smaller population, too small for this pass to see: probe the
            # window with the most uncovered ground at twice the scale, and if it holds
            # particles under half this width, add a pass at the scale they ask for
            second, probed = self._second_population(x, seen, s, width / s, result[0], lo, hi,
                                                     prob_thresh, nms_thresh)
            result[3]["probe"] = probed  # a window at twice the scale (not a full pass)
            if second is not None:
                s2, width2 = second
                points, probs, dists, _ = self.predict_candidates(
                    x, prob_thresh=prob_thresh, scale=s2, tile_size=tile_size,
                    context=context, _normalized=True, tta=tta)
                extra = suppress(points, probs, dists, prob_thresh=prob_thresh,
                                 nms_thresh=nms_thresh)
                c = result[3]
                c = {**c, "passes": c["passes"] + 1, "second_population": {
                         "width_px": round(width2, 2), "scale": s2},
                     "reason": c["reason"] + f"; a probe at {2 * s:g} found smaller particles "
                               f"({width2:.0f} px wide) between them: added from a pass at "
                               f"{s2:g}"}
                return (*result[:3], c, (s2, extra))
            return result
        k = _surest([(s, kept) for s, kept, _ in runs])  # no particles to measure anywhere
        s, kept, prob_map = runs[k]
        if tta:  # this pass is kept: run it again, augmented
            points, probs, dists, prob_map = self.predict_candidates(
                x, prob_thresh=prob_thresh, scale=s, tile_size=tile_size, context=context,
                keep_prob=keep_prob, _normalized=True, tta=True)
            kept = suppress(points, probs, dists, prob_thresh=prob_thresh, nms_thresh=nms_thresh)
        prob_map = prob_map if keep_prob else None
        return s, kept, prob_map, {"mode": "auto", "scale": s, "passes": len(runs) + tta,
                                   "width_px": None, "n_seen": len(kept[1]),
                                   "reason": "too few particles to measure at any scale: "
                                             "the surest pass"}

    def _second_population(self, x, kept, s, width, chosen, lo, hi, prob_thresh, nms_thresh,
                           window: int = 384):
        """``((scale, width) or None, probed)``: a population of particles under half
        `width` (original px) that the pass at `s` could not see, and whether a probe ran.

        Probes, at ``2 s``, the `window`-sized square of the image least covered by the
        pass's particles; counts the particles found there outside them.
        """
        from stardist.geometry import dist_to_coord

        from ._predict import rasterize, suppress
        from ._targets import resize_image

        if chosen * 1.5 > hi or s * 2 > hi:
            return None, False  # no finer scale left to add
        h, w = x.shape
        small = resize_image(np.zeros((h, w), np.float32), s).shape
        points, _, dists = kept
        covered = (rasterize(dist_to_coord(dists, points), small) > 0 if len(points)
                   else np.zeros(small, bool))
        # the window (in resized px) with the most uncovered ground, by an integral image
        k = max(1, min(round(window * s), *small))
        ii = np.pad((~covered).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        sums = ii[k:, k:] - ii[:-k, k:] - ii[k:, :-k] + ii[:-k, :-k]
        r, c = np.unravel_index(int(np.argmax(sums)), sums.shape)
        r0, c0 = int(r / s), int(c / s)
        r1, c1 = min(h, r0 + int(k / s)), min(w, c0 + int(k / s))
        crop = x[r0:r1, c0:c1]
        if min(crop.shape) < 32:
            return None, False
        probe = 2 * s
        cand = self.predict_candidates(crop, prob_thresh=prob_thresh, scale=probe,
                                       _normalized=True)[:3]
        pts, _, dst = suppress(*cand, prob_thresh=prob_thresh, nms_thresh=nms_thresh)
        if len(pts) == 0:
            return None, True
        # probe particles whose centre lies on ground the first pass left uncovered
        rows = np.clip(((pts[:, 0] / probe + r0) * s).astype(int), 0, small[0] - 1)
        cols = np.clip(((pts[:, 1] / probe + c0) * s).astype(int), 0, small[1] - 1)
        new = ~covered[rows, cols]
        widths = _widths(dst[new]) / probe
        if len(widths) < AUTO_MIN_COUNT or np.median(widths) > 0.5 * width:
            return None, True
        width2 = float(np.median(widths))
        return (choose_scale(width2, target=self.auto_width, lo=lo, hi=hi), width2), True

    def predict_candidates(self, image, *, prob_thresh: float, scale: float | None = None,
                           tile_size: int = 1024, context: int = 64, keep_prob: bool = False,
                           _normalized: bool = False, tta: bool = False):
        """Normalize `image` and return its candidate polygons above `prob_thresh`.

        ``(points (K, 2), prob (K,), dist (K, n_rays), prob_map or None)``, in the
        coordinates of the image resized by `scale` (default ``config.scale``); see `predict`.
        """
        from ._predict import candidates
        from ._targets import resize_image

        if isinstance(scale, str):
            raise ValueError(  # noqa: TRY004 - the CLI reports ValueError as a usage error
                f"scale must be a number here (one network pass), got {scale!r}")
        (scale,) = self._scales(self.config.scale if scale is None else scale)
        if not _normalized:
            image = percentile_normalize(self._check_image(image), self.config.normalize_low,
                              self.config.normalize_high)
        x = resize_image(image, scale)
        return candidates(self.network, self.config, x, prob_thresh=prob_thresh,
                          tile_size=tile_size, context=context, keep_prob=keep_prob, tta=tta)

    def predict(self, image, *, prob_thresh: float | None = None, nms_thresh: float | None = None,
                scale: float | str | None = None, tile_size: int = 1024, context: int = 64,
                tta: bool | None = None, return_details: bool = False):
        """Instance segmentation of one 2-D image.

        Parameters
        ----------
        image : (M, N) array
            Grayscale micrograph (RGB is converted); normalized by its 1 / 99.8 percentiles.
        prob_thresh, nms_thresh : float, optional
            Override ``self.thresholds``.
        scale : float, "auto" or "sweep", optional
            Resize factor before the network (default ``self.predict_scale``, which is
            ``config.scale`` unless set). ``"auto"`` chooses the scale per image before
            the expensive pass: a coarse pass at ``config.scale / 2`` (a quarter of the
            pixels) measures the particles' width (the narrowest pair of opposite rays, so
            thin rods count as thin), then one pass runs at the scale that brings that
            width to ``self.auto_width`` px (default `AUTO_WIDTH`, measured for the shipped
            model; set it to the width the model was trained on), within
            ``config.scale`` x [1/2, 2]. The coarse pass
            is kept when it already is at that scale. When it sees fewer than 3 particles
            (and none large), which is what clusters of particles too small to resolve
            look like, the next finer scale is tried. ``details["scale_choice"]`` says
            what was chosen and why. ``"sweep"`` runs at ``config.scale`` times 1, 1/2
            and 2 and keeps the surest result (highest mean probability; three passes).
        tile_size, context : int
            Images larger than `tile_size` pixels per side (after resizing) are predicted in
            tiles with `context` pixels of overlap (multiples of ``config.divisor``), in
            bounded memory.
        tta : bool, optional
            Test-time augmentation (default ``self.predict_tta``, False): the network's
            outputs are averaged over the 8 flips and quarter turns of the image before NMS
            (fewer when `n_rays` is not a multiple of 4: only those that map rays onto
            rays). Every pass of a fixed scale or ``"sweep"`` is augmented; under
            ``"auto"`` the passes that only choose the scale are not, and the kept pass is
            run again augmented (counted in ``passes``). The thresholds stay those chosen
            without it, so mean probabilities, and the low-confidence warning, read lower.
            On the shipped model's validation images it gains F1@0.7 0.57 -> 0.65 (better
            outlines) at about 4.5x the time (RESULTS.md).
        return_details : bool
            Also return a dict with the polygons (``coord`` (K, 2, n_rays), ``points``,
            ``prob`` per instance, label k+1 = entry k), ``prob_map`` (the object
            probability at grid resolution of the resized image), ``scale`` (the resize
            factor used) and ``scale_choice`` (mode, passes run, particle width seen, and
            the reason in words).

        Returns
        -------
        InstanceMask, or (InstanceMask, dict) with `return_details`.
        """
        from ._predict import render, suppress

        p, n = self._thresholds(prob_thresh, nms_thresh)
        scales = self._scales(scale)
        tta = bool(self.predict_tta if tta is None else tta)
        image = self._check_image(image)
        x = percentile_normalize(image, self.config.normalize_low, self.config.normalize_high)
        extra = None
        if (self.predict_scale if scale is None else scale) == "auto":
            s, kept, prob_map, choice, *extra = self._auto(
                x, prob_thresh=p, nms_thresh=n, tile_size=tile_size, context=context,
                keep_prob=return_details, tta=tta)
        else:
            runs = []
            for s in scales:
                points, probs, dists, prob_map = self.predict_candidates(
                    x, prob_thresh=p, scale=s, tile_size=tile_size, context=context,
                    keep_prob=return_details, _normalized=True, tta=tta)
                runs.append((s, suppress(points, probs, dists, prob_thresh=p, nms_thresh=n),
                             prob_map))
            s, kept, prob_map = runs[_surest([r[:2] for r in runs])]
            choice = ({"mode": "sweep", "scale": s, "passes": len(runs),
                       "reason": "the surest of passes at " + ", ".join(f"{r[0]:g}" for r in runs)}
                      if len(runs) > 1 else
                      {"mode": "fixed", "scale": s, "passes": 1, "reason": "fixed scale"})
        labels, details = render(*kept, image.shape, scale=s)  # only the chosen scale drawn
        if extra:  # a second population: its particles where the first pass has none
            s2, kept2 = extra[0]
            labels, details = _add_population(labels, details,
                                              *render(*kept2, image.shape, scale=s2))
        details = {**details, "prob_map": prob_map if return_details else None, "scale": s,
                   "scale_choice": choice, "tta": tta}
        mask = InstanceMask(labels)
        return (mask, details) if return_details else mask

    def predict_many(self, images, *, progress: bool = False, **kwargs) -> list[InstanceMask]:
        """`predict` for each image of a sequence (or any dataset of pairs: images are used)."""
        from tqdm.auto import tqdm

        out = []
        for i in tqdm(range(len(images)), desc="predicting", disable=not progress):
            item = images[i] if not hasattr(images, "pair") else images.pair(i)
            if isinstance(item, tuple):
                item = item[0]
            out.append(self.predict(item, **kwargs))
        return out

    def trust_warnings(self, mask, details) -> list[str]:
        """Reasons not to trust one prediction (`predict(..., return_details=True)`).

        - low confidence: the mean probability of the found instances is in the lowest
          quarter of the range between the probability threshold and 1;
        - particle size: the median equivalent diameter of the found particles is more
          than 2-fold outside the 10th-90th percentile range of the annotations the model
          was trained on (``info["trained_diameter_px"]``, in original-image pixels);
        - nothing found.
        """
        out = []
        probs = np.asarray(details.get("prob", []))
        if not len(probs):
            return [("no particles found; if the image has some, the model does not know "
                     "them (adapt it: utilegen segment train)")]
        p = self.thresholds["prob"]
        confidence = float(probs.mean())
        if confidence < p + 0.25 * (1 - p):
            out.append(f"low detection confidence (mean probability {confidence:.2f}, threshold "
                       f"{p:.2f}): the images may differ from the training data")
        trained = self.info.get("trained_diameter_px")
        if trained and mask.count:
            counts = np.bincount(mask.labels.ravel())[1:]
            median = float(np.median(np.sqrt(4 * counts[counts > 0] / np.pi)))
            lo, hi = float(trained[0]), float(trained[1])
            if not lo / 2 <= median <= 2 * hi:
                out.append(f"particle size {median:.0f} px is far outside the trained range "
                           f"{lo:.0f}-{hi:.0f} px: sizes may be wrong (adapt the model to "
                           "these images: utilegen segment train)")
        return out

    # --------------------------------------------------------------- thresholds
    def optimize_thresholds(self, val, *, nms_threshs=(0.3, 0.4, 0.5),
                            iou_threshs=(0.3, 0.5, 0.7), measure: str = "accuracy",
                            scale: float | str | None = None, prior: float | None = None,
                            tolerance_particles: float = 0.0, progress: bool = False) -> dict:
        """Choose the probability and NMS thresholds that maximize `measure` on `val`.

        For each NMS threshold, `measure` (averaged over `iou_threshs`, as in
        `stardist.utils.optimize_threshold`) is computed for probability thresholds on a
        grid from 0.05 to the highest candidate probability (step 0.05), then refined
        (step 0.01) around the best one. To bound the cost, at most `CANDIDATE_CAP`
        candidates below half the highest probability are kept per image and scale; where
        that drops some, the grid starts at the lowest probability kept (on dense images
        at a large scale, about StarDist's ``max_prob / 2``). Where several thresholds
        score the best (few validation particles make the score flat), the middle of that
        range is taken, not one end: with 2-5 held-out particles the old golden-section search in
        StarDist's bracket ``[max_prob / 2, max_prob]`` settled at 0.68-0.73, and new
        images of the same material then lost half their particles (benchmarks/RESULTS.md,
        "Thresholds from a few held-out particles"). The network runs once per image
        (and `scale`, as in `predict`), and NMS once per image and NMS threshold: greedy
        NMS at a higher probability threshold keeps exactly the candidates above it of
        the run at the lowest one, so each probability tried costs only rendering and
        matching. Sets and returns ``self.thresholds``; a `scale` given here also becomes
        ``self.predict_scale``, since the thresholds were chosen for it.

        With a `prior` probability threshold (one known to work on such images), the
        probability threshold nearest it is taken among those that score within
        `tolerance_particles` validation particles of the best (a tolerance of
        ``tolerance_particles / n`` in `measure`, for n validation particles): few
        validation particles then move the threshold only as far as they have evidence
        for. `adapt` passes its `FLAT_TOP_THRESHOLD` with no tolerance: where several
        thresholds score the best, the one nearest 0.3, not the middle
        (benchmarks/RESULTS.md, "Where held-out particles cannot choose the threshold").
        """
        from stardist.matching import matching_dataset

        from ..datasets import get_pair
        from ._data import as_image_and_labels
        from ._predict import above, render, suppress

        valid = {"accuracy", "f1", "precision", "recall", "panoptic_quality", "mean_matched_score"}
        if measure not in valid:
            raise ValueError(f"measure must be one of {sorted(valid)}, got {measure!r}")
        if len(val) == 0:
            raise ValueError("val is empty")
        if prior is not None and not 0 < prior < 1:
            raise ValueError(f"prior must be a probability threshold in (0, 1), got {prior!r}")
        if tolerance_particles < 0:
            raise ValueError(f"tolerance_particles must be >= 0, got {tolerance_particles!r}")
        mode = self.predict_scale if scale is None else scale
        scales = self._scales(scale)
        truths, cands = [], []
        for i in range(len(val)):
            image, labels = as_image_and_labels(*get_pair(val, i), name=f"val item {i}")
            truths.append(labels)
            x = percentile_normalize(image, self.config.normalize_low, self.config.normalize_high)
            if mode == "auto":  # the scale is chosen per image once, with the current thresholds
                p0, n0 = self._thresholds(None, None)
                scales = [self._auto(x, prob_thresh=p0, nms_thresh=n0)[0]]
            # candidates below 0.05 are never chosen, and would cost memory at 3 scales
            cands.append([(s, self.predict_candidates(x, prob_thresh=0.05, scale=s,
                                                      _normalized=True)[:3]) for s in scales])
        max_prob = max((float(c[1].max()) if len(c[1]) else 0.0) for cs in cands for _, c in cs)
        n_true = max(1, sum(len(np.unique(y[y > 0])) for y in truths))
        if max_prob <= 0:
            raise ValueError("the model predicts no foreground on the validation images")
        # Bound the cost: NMS on dense candidates at low thresholds takes minutes (1.3 M
        # candidates above 0.05 on one EMPS image at scale 4, 100 s per NMS run). Per image
        # and scale, every candidate above half the highest probability (StarDist's bracket)
        # is kept, and below that at most CANDIDATE_CAP more, the surest. The search then
        # starts at the highest such cut, where every score is still exact.
        capped = [[(s, *_cap_candidates(c, max_prob / 2, CANDIDATE_CAP)) for s, c in cs]
                  for cs in cands]
        cands = [[(s, c) for s, c, _ in cs] for cs in capped]
        lowest = max([0.05] + [cut for cs in capped for _, _, cut in cs])

        best = (-np.inf, None, None)
        for nms in nms_threshs:
            kept = [[(s, suppress(*c, prob_thresh=lowest, nms_thresh=nms)) for s, c in cs]
                    for cs in cands]
            cache: dict = {}

            def score(t, cache=cache, kept=kept):
                t = round(float(np.clip(t, lowest, max_prob)), 6)
                if t not in cache:  # as `predict`: the scale with the surest instances
                    preds = []
                    for ks, y in zip(kept, truths):
                        chosen = [(s, above(k, t)) for s, k in ks]
                        s, k = chosen[_surest(chosen)]
                        preds.append(render(*k, y.shape, scale=s)[0])
                    stats = matching_dataset(truths, preds, thresh=list(iou_threshs),
                                             show_progress=False)
                    cache[t] = float(np.mean([getattr(s, measure) for s in stats]))
                return cache[t]

            t, value = _flat_top_argmax(score, lowest, max_prob, prior=prior,
                                        tolerance=tolerance_particles / n_true)
            if progress:
                print(f"nms {nms}: prob {t:.3f} -> {measure} {value:.4f}")
            if value > best[0]:
                best = (value, t, float(nms))
        self.thresholds = {"prob": round(best[1], 6), "nms": best[2]}
        if scale is not None:  # the thresholds belong to this way of predicting
            self.predict_scale = scale
        self.info["threshold_" + measure] = round(best[0], 6)
        return dict(self.thresholds)

    # -------------------------------------------------------------- persistence
    def save(self, directory, *, overwrite: bool = False, half: bool = False) -> Path:
        """Write ``weights.pt``, ``config.json`` and ``thresholds.json`` (and ``info.json``).

        `half` stores the weights as float16 (half the size; loaded back as float32).
        """
        import torch

        from ..io import atomic_path

        directory = Path(directory)
        if directory.exists() and not directory.is_dir():
            raise ValueError(f"directory {directory} exists and is not a folder")
        files = ["weights.pt", "config.json", "thresholds.json", "info.json"]
        if not overwrite and any((directory / f).exists() for f in files):
            raise FileExistsError(f"{directory} already holds a model; pass overwrite=True")
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: (v.half() if half and v.is_floating_point() else v)
                 for k, v in self.network.state_dict().items()}
        with atomic_path(directory / "weights.pt", overwrite=True) as tmp:
            torch.save(state, tmp)
        from .. import __version__

        info = {**self.info, "kind": "stardist", "utilegen_version": __version__,
                "history": self.history}
        for name, obj in (("config.json", self.config.to_dict()),
                          ("thresholds.json", {**self.thresholds, "scale": self.predict_scale,
                                               "auto_width": self.auto_width}),
                          ("info.json", info)):
            with atomic_path(directory / name, overwrite=True) as tmp:
                tmp.write_text(json.dumps(obj, indent=2, default=float) + "\n")
        return directory

    @classmethod
    def load(cls, directory) -> StarDist:
        """A model saved by `save` (a folder with weights.pt, config.json, thresholds.json)."""
        import torch

        directory = Path(directory)
        for f in ("weights.pt", "config.json"):
            if not (directory / f).is_file():
                raise FileNotFoundError(f"{directory} is not a saved StarDist model: no {f}")
        config = StarDistConfig.from_dict(json.loads((directory / "config.json").read_text()))
        model = cls(config, seed=None)
        state = torch.load(directory / "weights.pt", map_location="cpu", weights_only=True)
        model.network.load_state_dict({k: v.float() if v.is_floating_point() else v
                                       for k, v in state.items()})
        model.network.eval()
        if (directory / "thresholds.json").is_file():
            t = json.loads((directory / "thresholds.json").read_text())
            model.thresholds = {"prob": float(t["prob"]), "nms": float(t["nms"])}
            model.predict_scale = t.get("scale")
            model.auto_width = float(t.get("auto_width", AUTO_WIDTH))
            try:  # a bad value in the file fails here, not at prediction
                model._scales(None)
            except ValueError as exc:
                raise ValueError(f"{directory / 'thresholds.json'}: {exc}") from None
        if (directory / "info.json").is_file():
            info = json.loads((directory / "info.json").read_text())
            model.history = info.pop("history", [])
            model.info = info
        return model

    def fine_tune(self, pairs, **kwargs) -> StarDist:
        """A new model adapted from this one to `pairs` (your annotated micrographs).

        Synthetic pairs matched to the annotations, a scale chosen from the annotated
        particle sizes, held-out validation, a wall-clock budget: see
        `utilegen.segment.adapt` for the keyword arguments. This model is left unchanged.

        >>> mine = StarDist.pretrained("emps").fine_tune(my_pairs, minutes=10)  # doctest: +SKIP
        >>> mine.info["adaptation"]["validation"]                           # doctest: +SKIP
        """
        from ._adapt import adapt

        if "init" in kwargs:
            raise ValueError("fine_tune starts from this model; use segment.adapt(init=...) "
                             "for another start")
        return adapt(pairs, init=self, **kwargs)

    @classmethod
    def pretrained(cls, name: str = "emps") -> StarDist:
        """A model shipped with utilegen: ``"emps"`` (EMPS micrographs, real + synthetic)."""
        if name not in PRETRAINED:
            raise ValueError(f"unknown pretrained model {name!r}; known: {sorted(PRETRAINED)}")
        path = _MODELS_DIR / PRETRAINED[name]
        if not (path / "weights.pt").is_file():
            raise FileNotFoundError(f"the pretrained model {name!r} is missing from {path}; "
                                    "reinstall utilegen")
        return cls.load(path)


def _add_population(labels, details, labels2, details2, max_overlap: float = 0.2):
    """`labels` with the instances of `labels2` that it does not already have (at most
    `max_overlap` of their pixels on its instances), numbered after its own."""
    n, k2 = len(details["prob"]), len(details2["prob"])
    # per instance of labels2: its area, and how much of it lies on labels' instances
    area = np.bincount(labels2.ravel(), minlength=k2 + 1)[1:k2 + 1]
    on = np.bincount(labels2[labels > 0].ravel(), minlength=k2 + 1)[1:k2 + 1]
    keep = np.flatnonzero((area > 0) & (on <= max_overlap * area))
    lut = np.zeros(k2 + 1, labels.dtype)
    lut[keep + 1] = n + 1 + np.arange(len(keep))  # kept ones numbered after labels' own
    added = lut[labels2]
    new = np.where((labels == 0) & (added > 0), added, labels)
    if len(keep) == 0:
        return labels, details
    merged = dict(details)
    for key in ("coord", "points", "prob"):
        merged[key] = np.concatenate([details[key], details2[key][keep]])
    return new, merged


def _widths(dists: np.ndarray) -> np.ndarray:
    """Width of each star polygon (K, n_rays): its narrowest pair of opposite rays."""
    dists = np.asarray(dists)
    if len(dists) == 0 or dists.shape[1] % 2:
        return np.zeros(0)
    half = dists.shape[1] // 2
    return np.min(dists[:, :half] + dists[:, half:], axis=1)


def choose_scale(width: float, *, target: float = AUTO_WIDTH, lo: float = 0.25,
                 hi: float = 1.0) -> float:
    """The resize factor that brings particles `width` px wide to `target` px, clipped to
    [`lo`, `hi`] and rounded to two significant digits."""
    if not (np.isfinite(width) and width > 0):
        raise ValueError(f"width must be a positive number, got {width!r}")
    return float(f"{float(np.clip(target / width, lo, hi)):.2g}")


def _cap_candidates(candidates, sure: float, cap: int):
    """``(points, probs, dists)`` with every candidate of probability >= `sure` and at most
    `cap` of the others, the most probable ones; and the cut: the lowest probability kept
    when some were dropped (above it the kept ones are all there are), else 0."""
    points, probs, dists = candidates
    n = int(np.count_nonzero(probs >= sure)) + cap
    if len(probs) <= n:
        return candidates, 0.0
    keep = np.argpartition(-probs, n - 1)[:n]
    return (points[keep], probs[keep], dists[keep]), float(probs[keep].min())


def _flat_top_argmax(score, lo: float, hi: float, *, coarse: float = 0.05,
                     fine: float = 0.01, prior: float | None = None,
                     tolerance: float = 0.0) -> tuple[float, float]:
    """The threshold in ``[lo, hi]`` that maximizes ``score(t)``, and its score.

    A grid of step `coarse`, then one of step `fine` within a coarse step either side of
    the best. Where the best score is reached over a range (a flat top, as with few
    validation particles), the middle of the widest such run of grid points is returned,
    if it scores as well; else the best point nearest that middle.

    With a `prior` (a threshold known to work on such data, as `adapt`'s 0.3), every grid
    point scoring within `tolerance` of the best counts as best, and the one nearest the
    prior is returned (the prior itself where it scores that well): the held-out data
    move the threshold away from the prior only as far as they have evidence for.
    """
    def top(grid):  # the best score on `grid`, and the widest run of grid indices reaching it
        values = np.array([score(t) for t in grid])
        best = values.max()
        on = np.flatnonzero(values >= best - 1e-12)
        return best, max(np.split(on, np.flatnonzero(np.diff(on) > 1) + 1), key=len)

    def closer(t0):  # a fine grid within a coarse step either side of t0
        return np.unique(np.clip(np.arange(t0 - coarse, t0 + coarse + fine / 2, fine), lo, hi))

    grid = np.unique(np.append(np.arange(lo, hi, coarse), hi))
    if prior is not None:
        prior = float(np.clip(prior, lo, hi))
        points = {float(t): score(t) for t in np.unique(np.append(grid, prior))}
        t0 = max(points, key=points.get)  # the best, looked at closer as below
        for t in closer(t0):
            points.setdefault(float(t), score(t))
        enough = max(points.values()) - tolerance - 1e-12
        t = min((u for u, v in points.items() if v >= enough), key=lambda u: abs(u - prior))
        step = fine if t < prior else -fine  # then as near the prior as scores that well
        for u in np.arange(t + step, prior, step):
            if score(u) < enough:
                break
            t = float(u)
        return t, float(score(t))
    best, run = top(grid)
    if len(run) == 1:  # a single peak: look closer around it
        grid = closer(grid[run[0]])
        best, run = top(grid)
    middle = (grid[run[0]] + grid[run[-1]]) / 2
    if score(middle) >= best - 1e-12:
        return float(middle), float(best)
    t = grid[run[np.argmin(np.abs(grid[run] - middle))]]
    return float(t), float(best)


def _surest(kept) -> int:
    """Index of the ``(scale, (points, probs, dists))`` NMS result whose instances have the
    highest mean probability (-1 for none); the first one on ties."""
    return max(range(len(kept)), key=lambda i: float(np.mean(kept[i][1][1]))
               if len(kept[i][1][1]) else -1.0)


def list_pretrained() -> list[str]:
    """Names of the segmentation models shipped with utilegen (for `load` / `--model`)."""
    return sorted(PRETRAINED)


def load(name_or_path) -> StarDist:
    """A segmentation model by shipped name (``"emps"``) or saved folder.

    An existing folder wins over a shipped name of the same spelling; an unknown name
    says both which folder was looked for and which names exist.
    """
    path = Path(name_or_path)
    if path.is_dir():
        return StarDist.load(path)
    name = str(name_or_path)
    if name in PRETRAINED:
        return StarDist.pretrained(name)
    shipped = ", ".join(list_pretrained())
    if "/" in name or "\\" in name:  # written as a path: a folder was meant
        raise FileNotFoundError(f"model folder not found: {path} (nor a shipped model; "
                                f"shipped: {shipped})")
    raise FileNotFoundError(f"no model folder {name!r} and no shipped model of that name "
                            f"(shipped: {shipped})")
