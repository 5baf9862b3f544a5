"""Helpers behind the Semantic Segmentation Labs.

One module per concern: ``data`` (embedded scenes, VOC/Pet loaders, joint transforms), ``metrics``
(confusion matrix, IoU), ``viz`` (plots and widgets), ``train`` (device, fit/evaluate/predict),
``checks`` (visible checks under exercises), ``config`` (the training budget setting).

This package never holds the solution to a graded exercise or a hidden test.
"""

__version__ = "0.1.0"
