"""Particle morphometry: size and shape of every instance, and size distributions.

>>> from utilegen.morphometry import measure, SizeDistribution
>>> table = measure(mask, image, pixel_size=0.5, unit="nm")       # doctest: +SKIP
>>> psd = SizeDistribution.from_table(table, "equivalent_diameter")  # doctest: +SKIP
>>> psd.summary(); psd.plot().savefig("psd.png")                    # doctest: +SKIP

Every column of `measure`'s table (formula and unit) is documented once, in `COLUMNS`;
``print(describe_columns())`` shows them.
"""

from ._columns import COLUMNS, column_unit, describe_columns
from ._distribution import Fit, SizeDistribution
from ._measure import CONVENTIONS, measure, measure_many

__all__ = [
           "COLUMNS",
           "CONVENTIONS",
           "Fit",
           "SizeDistribution",
           "column_unit",
           "describe_columns",
           "measure",
           "measure_many",
]
