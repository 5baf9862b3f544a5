"""The lab 03 transposed-convolution stepper; it lives in :mod:`helpers.widgets.stepper` with the other widgets."""

from helpers.widgets import transposed_conv_stepper
from helpers.widgets.stepper import TransposedConvStepper

__all__ = ["TransposedConvStepper", "transposed_conv_stepper"]
