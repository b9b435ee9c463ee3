"""camstudy's explanation engine: Grad-CAM, Guided Backprop, Guided Grad-CAM and relatives
(the CAM family: Grad-CAM++, XGrad-CAM, HiResCAM, LayerCAM, Eigen-CAM, Score-CAM; and any
captum attribution as ``"captum:<Class>"``).

Pure torch, no I/O::

    from gradcam import explain
    ex = explain(model, x, targets, layer=None, methods=("gradcam", "guided_backprop", "guided_gradcam"))

See :func:`gradcam.engine.explain` for the contract, :mod:`gradcam.cams` for the CAM
family's math, :mod:`gradcam.layers` for the layer choice and how its output is read,
:mod:`gradcam.captum_adapter` for captum methods and :mod:`gradcam.render` for display.
"""

from gradcam.captum_adapter import CaptumMissing, is_captum
from gradcam.engine import (
    ALL_METHODS,
    CAM_METHODS,
    DEFAULT_METHODS,
    GUIDED_METHODS,
    METHODS,
    PERTURBATION_METHODS,
    Explanation,
    PlainGradientWarning,
    explain,
)
from gradcam.layers import Layout, default_layer

__all__ = [
    "explain",
    "Explanation",
    "METHODS",
    "ALL_METHODS",
    "PERTURBATION_METHODS",
    "DEFAULT_METHODS",
    "CAM_METHODS",
    "GUIDED_METHODS",
    "PlainGradientWarning",
    "CaptumMissing",
    "is_captum",
    "default_layer",
    "Layout",
]
