"""Matplotlib figures as PNG bytes, for the reports (report_page, report_mcu)."""

import io

from edgeship.deps import require


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display), imported when first needed."""
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    return require("matplotlib.pyplot")


def figure_png(figure) -> bytes:
    """The figure as PNG bytes (90 dpi); the figure is closed."""
    plot = pyplot()
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=90)
    plot.close(figure)
    return buffer.getvalue()
