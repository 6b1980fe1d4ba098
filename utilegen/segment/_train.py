"""The training loop (imports torch): StarDist2D's loss, Adam, reduce-on-plateau, checkpoints."""

from __future__ import annotations

import copy
import queue
import threading
import time
from pathlib import Path

import numpy as np
import torch

from .._distributed import any_rank, mean_over_ranks, shard, sync_buffers, world, wrap
from ._data import PatchSampler, load_pairs, worker_batch, worker_init
from ._net import autocast


class _Logits(torch.nn.Module):
    """The network's training output (logits) as `forward`, so DistributedDataParallel's
    gradient hooks see it."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.logits(x)


def stardist_loss(prob_logit, dist_pred, prob_true, dist_true, *, dist_weight: float,
                  background_reg: float):
    """StarDist2D's loss: BCE(prob) + w * masked MAE(dist) (+ background L1 on dist).

    The distance error of each pixel is weighted by its true object probability and the
    sum normalized by the mean weight; `prob_logit` is the probability head before its
    sigmoid (`stardist.models.base.masked_loss_mae`); distances predicted on background get
    a small L1 penalty (``train_background_reg``).
    Returns ``(total, prob_loss, dist_loss)`` tensors.
    """
    prob_loss = torch.nn.functional.binary_cross_entropy_with_logits(prob_logit, prob_true)
    mask = prob_true  # (B, 1, h, w), broadcast over rays
    per_pixel = (mask * (dist_true - dist_pred).abs()).mean(dim=1, keepdim=True)
    dist_loss = per_pixel.mean() / (mask.mean() + 1e-7)
    if background_reg > 0:
        dist_loss = dist_loss + background_reg * ((1 - mask) * dist_pred.abs()).mean()
    return prob_loss + dist_weight * dist_loss, prob_loss, dist_loss


def _to_torch(batch, device=None):
    x, prob, dist = (torch.from_numpy(a) for a in batch)
    if device is not None and device.type != "cpu":
        x, prob, dist = (t.to(device, non_blocking=True) for t in (x, prob, dist))
    return x.contiguous(memory_format=torch.channels_last), prob, dist


def resolve_device(device) -> torch.device:
    """`device` as a torch.device: None is the CPU, "auto" a CUDA GPU when there is one."""
    if device is None:
        return torch.device("cpu")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device must be None, 'auto', 'cpu' or 'cuda[:N]', got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: no CUDA GPU is available here")
    return dev


def _prefetch(sampler, rng, batch_size: int, n: int, stop: threading.Event):
    """Make `n` batches in a background thread (numpy/C++ work overlaps the torch step).

    One producer draws from `rng` in order, so the batches and the generator's state after
    the epoch are the same as without the thread.
    """
    q: queue.Queue = queue.Queue(maxsize=3)

    def work():
        try:
            for _ in range(n):
                if stop.is_set():
                    return
                q.put(sampler.batch(rng, batch_size))
        except Exception as exc:  # noqa: BLE001 -- re-raised in the consuming thread
            q.put(exc)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        for _ in range(n):
            item = q.get()
            if isinstance(item, Exception):
                raise item
            yield item
    finally:  # unblock and finish the producer, also when the epoch stops early
        stop.set()
        while thread.is_alive():
            try:
                q.get(timeout=0.05)
            except queue.Empty:
                pass


def _parallel(pool, seed: int, epoch: int, batch_size: int, n: int, window: int):
    """Make `n` batches in worker processes, at most `window` ahead of the consumer.

    Batch k of an epoch is drawn from ``default_rng([seed, epoch, k])``: the same batches
    whatever the number of workers.
    """
    from collections import deque

    pending: deque = deque()
    for step in range(n):
        pending.append(pool.apply_async(worker_batch, ((seed, epoch, step, batch_size),)))
        if len(pending) >= window:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


class _Average:
    """An exponential moving average of `net`'s weights (and float buffers), kept in a
    copy of the network: ``decay_t = min(decay, (1 + t) / (10 + t))`` at update ``t``.
    (Not `torch.optim.swa_utils.AveragedModel`: that one starts from the weights after the
    first step, and its decay is fixed.)"""

    def __init__(self, net, decay: float):
        self.net = copy.deepcopy(net)
        self.net.requires_grad_(False)
        self.decay, self.updates = float(decay), 0
        # the tensors themselves (load_state_dict copies into them): matched once, not per step
        pairs = list(zip(self.net.state_dict().values(), net.state_dict().values()))
        self._float = [list(t) for t in zip(*[p for p in pairs if p[0].dtype.is_floating_point])]
        self._other = [p for p in pairs if not p[0].dtype.is_floating_point]

    @torch.no_grad()
    def update(self) -> None:
        """One step of the average, after an optimizer step of the source network."""
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        if self._float:
            torch._foreach_lerp_(self._float[0], self._float[1], 1 - d)
        for mine, theirs in self._other:
            mine.copy_(theirs)

    def state_dict(self) -> dict:
        return {"network": self.net.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["network"])
        self.updates = int(state["updates"])


def fit(model, train, val, *, epochs: int, steps_per_epoch: int, batch_size: int | None,
        time_limit: float | None, seed, checkpoint_dir, resume, progress: bool,
        n_val_patches: int | None, callback=None, device=None, workers: int = 0,
        synthetic=None, synthetic_share: float = 0.0):
    t0 = time.monotonic()  # time_limit counts reading the data and validation patches too
    cfg = model.config
    dev = resolve_device(device)
    net = model.network.to(dev, memory_format=torch.channels_last)
    rank, world_size = world()
    main = rank == 0
    progress = progress and main
    rng = np.random.default_rng(seed)
    torch.manual_seed(int(rng.integers(2**31)))
    if world_size > 1:
        # Each rank draws its own patches (disjoint shares of every global batch).
        rng = np.random.default_rng([int(rng.integers(2**31)), rank])
    train_pairs = load_pairs(train, cfg, what="train", progress=progress)
    val_pairs = (load_pairs(val, cfg, what="validation", progress=progress) if val is not None
                 else None)
    sampler = PatchSampler(train_pairs, cfg, synthetic=synthetic, synthetic_share=synthetic_share)
    # A fixed set of validation patches (as StarDist2D): same patches every epoch.
    val_batches = []
    if val_pairs is not None:
        vs = PatchSampler(val_pairs, cfg)
        vrng = np.random.default_rng(20230)  # independent of the training seed
        n_val = n_val_patches or min(max(len(val_pairs), 8), 64)
        for i in range(0, n_val, cfg.batch_size):
            val_batches.append(_to_torch(vs.batch(vrng, min(cfg.batch_size, n_val - i),
                                                  augment=False),
                                         dev))

    train_net = wrap(_Logits(net), world_size)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=cfg.lr_factor,
                                                       patience=cfg.lr_patience, threshold=0)
    history: list[dict] = []
    start_epoch, best = 0, np.inf
    best_state = None
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if resume is not None:
        state = torch.load(Path(resume), map_location=dev, weights_only=False)
        from ._config import StarDistConfig

        if StarDistConfig.from_dict(state["config"]) != cfg:
            raise ValueError(f"resume: checkpoint {resume} was made with a different config")
        net.load_state_dict(state["network"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"].cpu())
        start_epoch, best, history = state["epoch"], state["best"], state["history"]
        best_state = state.get("best_network")
    # the weights validated, kept as best and returned: the network's own, or their moving
    # average (`ema_decay`) in a copy of the network
    ema = _Average(net, cfg.ema_decay) if cfg.ema_decay > 0 else None
    if ema is not None and resume is not None and state.get("ema") is not None:
        ema.load_state_dict(state["ema"])
    scored = net if ema is None else ema.net

    def evaluate_val() -> float:
        scored.eval()
        total, n = 0.0, 0
        with torch.inference_mode():
            for x, pt, dt in val_batches:
                with autocast(cfg.mixed_precision, dev.type):
                    pp, dp = scored.logits(x)
                loss, _, _ = stardist_loss(pp, dp, pt, dt, dist_weight=cfg.dist_loss_weight,
                                           background_reg=cfg.background_reg)
                total += float(loss) * len(x)
                n += len(x)
        return total / max(n, 1)

    from tqdm.auto import tqdm

    stop = False
    bs = shard(batch_size or cfg.batch_size, world_size)
    pool = None
    if workers > 0:  # patch targets (star distances) are CPU-bound C++: spread them out
        import multiprocessing as mp

        # spawn, not fork: a fork after OpenMP (stardist's C++) or torch threads can hang
        pool = mp.get_context("spawn").Pool(workers, initializer=worker_init,
                                            initargs=(sampler,))
        worker_seed = int(rng.integers(2**31))
    for epoch in range(start_epoch, epochs):
        net.train()
        sums = np.zeros(3)
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{epochs}",
                   disable=not progress, leave=False)
        steps_done = 0
        stop_event = threading.Event()
        if pool is not None:
            batches = _parallel(pool, worker_seed, epoch, bs, steps_per_epoch, 2 * workers + 2)
        else:
            batches = _prefetch(sampler, rng, bs, steps_per_epoch, stop_event)
        for _ in bar:
            x, pt, dt = _to_torch(next(batches), dev)
            with autocast(cfg.mixed_precision, dev.type):
                pp, dp = train_net(x)
            loss, lp, ld = stardist_loss(pp, dp, pt, dt, dist_weight=cfg.dist_loss_weight,
                                         background_reg=cfg.background_reg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if ema is not None:
                ema.update()
            sums += (loss.item(), lp.item(), ld.item())
            steps_done += 1
            bar.set_postfix(loss=f"{sums[0] / steps_done:.4f}", prob=f"{sums[1] / steps_done:.4f}",
                            dist=f"{sums[2] / steps_done:.3f}")
            if time_limit is not None and any_rank(time.monotonic() - t0 > time_limit, world_size):
                stop = True
                break
        stop_event.set()
        batches.close()
        bar.close()
        sums = np.array(mean_over_ranks(sums, world_size))
        record = {"epoch": epoch + 1, "steps": steps_done,
                  "loss": float(sums[0]) / max(steps_done, 1),
                  "prob_loss": float(sums[1]) / max(steps_done, 1),
                  "dist_loss": float(sums[2]) / max(steps_done, 1),
                  "lr": opt.param_groups[0]["lr"], "seconds": time.monotonic() - t0}
        monitor = record["loss"]
        if val_batches:
            record["val_loss"] = monitor = mean_over_ranks([evaluate_val()], world_size)[0]
        history.append(record)
        sched.step(monitor)
        if monitor < best:
            best = monitor
            best_state = {k: v.detach().clone() for k, v in scored.state_dict().items()}
        if progress:
            tqdm.write("epoch {epoch}: loss {loss:.4f} (prob {prob_loss:.4f}, "
                       "dist {dist_loss:.3f})".format(**record)
                       + (f", val_loss {record['val_loss']:.4f}" if "val_loss" in record else "")
                       + f", lr {record['lr']:.2g}, {record['seconds'] / 60:.1f} min")
        if ckpt_dir is not None and main:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            state = {"config": cfg.to_dict(), "network": net.state_dict(),
                     "optimizer": opt.state_dict(),
                     "scheduler": sched.state_dict(), "rng": rng.bit_generator.state,
                     "torch_rng": torch.get_rng_state(), "epoch": epoch + 1, "best": best,
                     "history": history, "best_network": best_state,
                     "ema": None if ema is None else ema.state_dict()}
            from ..io import atomic_path

            with atomic_path(ckpt_dir / "last.pt", overwrite=True) as tmp:
                torch.save(state, tmp)
        if callback is not None and main:
            callback(record, model, best_state)
        if stop:
            break
    if pool is not None:
        pool.terminate()
    if best_state is not None:
        net.load_state_dict(best_state)
    sync_buffers(net, world_size)  # ranks may have kept their own BatchNorm stats
    net.to("cpu")  # prediction runs on the CPU
    net.eval()
    return history
