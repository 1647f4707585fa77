"""The web dashboard's static files (HTML, JS, CSS); plotly.js comes from the plotly wheel."""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).parent / "static"


def plotly_js() -> Path:
    """plotly.min.js as the plotly wheel ships it: no CDN, nothing fetched at run time."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
