"""Where the per-image work runs besides this process: a Dask cluster, or an isolated
worker process that a native crash cannot take the caller down with."""

from __future__ import annotations

from pathlib import Path

from ._per_image import _analyze_one


def _map_on_dask(client, id_list, sources, model, shape_classifier, settings):
    """Yield `_analyze_one` outcomes computed on a Dask cluster, as they finish.

    The models are scattered to the workers once; a task whose worker dies is retried
    elsewhere, and an image that fails is reported like in a local run.
    """
    try:
        from distributed import as_completed
    except ImportError:
        raise ValueError("client= needs Dask: pip install 'utilegen[distributed]'") from None
    remote_model, remote_classifier = client.scatter([model, shape_classifier], broadcast=True)
    futures = client.map(_analyze_one, id_list, sources, [remote_model] * len(sources),
                         [remote_classifier] * len(sources), pure=False, retries=2, **settings)
    for future in as_completed(futures):
        yield future.result()


class IsolatedWorker:
    """A worker process that runs `analyze` one image at a time, restarted after a crash.

    Native code (NMS, OpenCV, image decoders) can abort the whole process on a bad input;
    no Python ``try`` catches that. In the worker such a crash fails only the image it
    was on: `map` reports it as that image's error, starts a new worker and goes on. The
    worker keeps the models it was last sent, so a server pays for starting it (a few
    seconds) once, not per request. Not thread-safe: one `map` at a time.
    """

    def __init__(self):
        self._pool = None
        self._models = None

    def _start(self, model, shape_classifier):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        # spawn: a fresh interpreter (a fork of a threaded server, torch included, can hang)
        self._pool = ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"),
                                         initializer=_worker_init,
                                         initargs=(model, shape_classifier))
        self._models = (model, shape_classifier)

    def map(self, id_list, sources, model, shape_classifier, settings):
        """Yield `_analyze_one` outcomes in input order, each computed in the worker."""
        from concurrent.futures.process import BrokenProcessPool

        for image_id, source in zip(id_list, sources):
            if self._pool is None or self._models is None or \
                    self._models[0] is not model or self._models[1] is not shape_classifier:
                self.close()
                self._start(model, shape_classifier)
            try:
                yield self._pool.submit(_worker_analyze, image_id, source, settings).result()
            except BrokenProcessPool:
                self.close()
                name = str(source) if isinstance(source, Path) else image_id
                yield {"id": image_id, "name": name,
                       "error": "the analysis of this image crashed its worker process (a "
                                "native error); the other images are not affected"}

    def close(self) -> None:
        """Stop the worker process (a later `map` starts a new one)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = self._models = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_WORKER_MODELS: tuple = (None, None)


def _worker_init(model, shape_classifier) -> None:
    global _WORKER_MODELS
    _WORKER_MODELS = (model, shape_classifier)


def _worker_analyze(image_id, source, settings) -> dict:
    return _analyze_one(image_id, source, *_WORKER_MODELS, **settings)
