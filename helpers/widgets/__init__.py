"""The labs' interactive widgets, in one place: the dataset browser (lab 01), the live training plot
(``fit``) and the transposed-convolution stepper (lab 03). :mod:`helpers.viz` re-exports all three.

The stepper is a subclass of an ipywidgets box, so its module needs ipywidgets when it loads; it is loaded on
first use, so that ``helpers.viz`` and ``helpers.train`` import where ipywidgets is missing (plain Python on a GPU
machine: ``benchmarks/gpu_check.py``).
"""

from typing import Any

from helpers.widgets.browser import dataset_browser
from helpers.widgets.liveplot import LivePlot

__all__ = ["dataset_browser", "LivePlot", "TransposedConvStepper", "transposed_conv_stepper"]


def transposed_conv_stepper(*args: Any, **kwargs: Any) -> Any:
    """Show the step-by-step transposed-convolution widget (see :mod:`helpers.widgets.stepper`)."""
    from helpers.widgets.stepper import transposed_conv_stepper as stepper

    return stepper(*args, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "TransposedConvStepper":
        from helpers.widgets.stepper import TransposedConvStepper

        return TransposedConvStepper
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
