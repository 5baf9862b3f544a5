"""The labs' interactive widgets, in one place: the dataset browser (lab 01), the live training plot
(``fit``) and the transposed-convolution stepper (lab 03). :mod:`helpers.viz` re-exports all three."""

from helpers.widgets.browser import dataset_browser
from helpers.widgets.liveplot import LivePlot
from helpers.widgets.stepper import TransposedConvStepper, transposed_conv_stepper

__all__ = ["dataset_browser", "LivePlot", "TransposedConvStepper", "transposed_conv_stepper"]
