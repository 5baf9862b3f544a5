"""Helpers behind the Semantic Segmentation Labs: small modules, one job each.

Data: ``labels`` (class names, palette, ``IGNORE_INDEX``), ``render`` (the procedural scene renderer),
``scenes`` (scene datasets on disk and their cache), ``datasets`` (VOC-layout and Oxford-IIIT Pet loaders),
``transforms`` (joint image/mask transforms); ``data`` re-exports all of them and is the command line.
Training: ``device`` (device choice, AMP), ``loaders`` (``make_loaders``), ``train`` (``fit``), ``evaluate``
(``evaluate``, ``predict``, the number of classes), ``checkpoint`` (save/load), ``metrics`` (confusion matrix,
IoU); ``train`` re-exports what notebooks use.
Pictures: ``colors`` (colour masks, overlays), ``viz`` (figures), ``widgets`` (dataset browser, live plot,
transposed-convolution stepper; ``viz`` re-exports them), ``notebook`` (showing figures in Jupyter).
Notebook support: ``checks`` (visible checks under exercises), ``config`` (every ``SEGLAB_*`` setting).

This package never holds the solution to a graded exercise or a hidden test, and never imports the
instructors' ``seglabs_grading``.
"""

__version__ = "0.1.0"
