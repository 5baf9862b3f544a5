"""Notebook plumbing shared by the figures and widgets: is there a kernel, and show a figure once.

Figures are plain :class:`matplotlib.figure.Figure` objects, never registered with ``pyplot``, so they never
pile up in memory; in a notebook they are displayed as PNG images.
"""

from __future__ import annotations

import io
from typing import Any

from matplotlib.figure import Figure

__all__ = ["kernel", "png_bytes", "NotebookFigure", "new_figure", "present"]


def kernel() -> Any:
    """The running IPython kernel shell (Jupyter, Colab), or None in plain Python / a terminal IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return shell if shell is not None and getattr(shell, "kernel", None) is not None else None


def png_bytes(fig: Figure) -> bytes:
    """The figure rendered as PNG."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _display_png(data: bytes, **kwargs: Any) -> Any:
    from IPython.display import Image, display

    return display(Image(data=data, format="png"), **kwargs)


class NotebookFigure(Figure):
    """A Figure shown once in a notebook when drawn; echoing it as the cell's value does not repeat it."""

    _shown_in: int | None = None

    def _ipython_display_(self) -> None:
        shell = kernel()
        if shell is not None and self._shown_in == shell.execution_count:
            return  # already displayed by the call in this very cell
        _display_png(png_bytes(self))


def new_figure(width: float, height: float) -> NotebookFigure:
    """A figure of ``width`` x ``height`` inches at 100 dpi with constrained layout."""
    return NotebookFigure(figsize=(width, height), dpi=100, layout="constrained")


def present(fig: NotebookFigure) -> NotebookFigure:
    """Show ``fig`` now when running in a notebook (and remember it, so echoing it does not repeat it)."""
    shell = kernel()
    if shell is not None:
        _display_png(png_bytes(fig))
        fig._shown_in = shell.execution_count
    return fig
