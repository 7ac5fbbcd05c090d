"""Pictures of fits: one galaxy's residual panels, and an HTML report of a run.

* :func:`plot_fit` -- data, model, residual, components, a radial profile and
  the fitted values of one galaxy (``galmoss plot``).
* :func:`write_report` -- one self-contained HTML page for a whole run: flag
  counts, parameter distributions, errors against values, a gallery of the worst
  fits, settings and timing (``galmoss report``).

Both read only the files a run wrote (results table, ``run.json``, image
blocks). matplotlib is imported when a figure is drawn, never at import time,
and only its Agg canvas is used, so no display is ever needed.
"""

from .panels import plot_fit
from .report import write_report

__all__ = ["plot_fit", "write_report"]
