"""The end-to-end pipeline: micrographs in, particle sizes, shapes and distributions out.

>>> import utilegen
>>> report = utilegen.analyze("micrographs/*.tif", pixel_size=0.5, unit="nm")  # doctest: +SKIP
>>> report.particles.head()                                   # doctest: +SKIP
>>> report.save("report/")                                    # doctest: +SKIP

`analyze` segments every image (StarDist, tiled for large images), measures every
particle (`utilegen.morphometry.measure`), classifies the images when a shape classifier
is available, and gathers it all in a `Report`. A file that cannot be read or segmented is
recorded in ``report.errors`` and skipped; it never aborts the batch.

One job per module:

=================== ===============================================================
``_models``         `load_segmenter`, `load_classifier`, reading classifier results
``_inputs``         folders / globs / paths / arrays -> sources -> 2-D images
``_calibration``    the pixel size and unit of each image
``_overlay``        `overlay`: outlines and ids drawn on the micrograph
``_files``          safe file names, atomic PNG / text writes
``_report``         `Report`: table, distributions, summary, `save`
``_per_image``      one image: segment, measure, classify (errors returned)
``_workers``        Dask mapping and `IsolatedWorker` (a crash fails one image)
``_analyze``        `analyze`: the batch orchestrator
=================== ===============================================================
"""

from ._analyze import analyze
from ._models import load_classifier, load_segmenter
from ._overlay import overlay
from ._report import DISTRIBUTION_COLUMNS, SIZE_COLUMN, Report
from ._workers import IsolatedWorker

__all__ = [
    "DISTRIBUTION_COLUMNS",
    "SIZE_COLUMN",
    "IsolatedWorker",
    "Report",
    "analyze",
    "load_classifier",
    "load_segmenter",
    "overlay",
]
