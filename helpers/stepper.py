"""The lab 03 transposed-convolution stepper; it lives in :mod:`helpers.widgets.stepper` with the other widgets."""

from helpers.widgets.stepper import TransposedConvStepper, transposed_conv_stepper

__all__ = ["TransposedConvStepper", "transposed_conv_stepper"]
