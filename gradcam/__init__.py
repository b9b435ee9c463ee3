"""camstudy's explanation engine: Grad-CAM, Guided Backprop, Guided Grad-CAM and relatives.

Pure torch, no I/O::

    from gradcam import explain
    ex = explain(model, x, targets, layer=None, methods=("gradcam", "guided_backprop", "guided_gradcam"))

See :func:`gradcam.engine.explain` for the contract, :mod:`gradcam.layers` for the layer
choice and how its output is read, and :mod:`gradcam.render` for display.
"""

from gradcam.engine import DEFAULT_METHODS, METHODS, Explanation, explain
from gradcam.layers import Layout, default_layer

__all__ = ["explain", "Explanation", "METHODS", "DEFAULT_METHODS", "default_layer", "Layout"]
