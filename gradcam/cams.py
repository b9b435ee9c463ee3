"""The CAM family at the layer's resolution: pure functions of ``A`` and ``dS/dA``.

``A`` is the layer's output read as ``(N, C, h, w)`` and ``G = dS/dA`` the ordinary
gradient of the score ``S`` (a pre-softmax logit, or a callable's score) at ``A``, both
from the one forward and the one backward pass that Grad-CAM uses. Sums ``sum_ij`` run over
the ``h x w`` positions, ``sum_k`` over the ``C`` channels. Every map is returned before
any display normalization, after the final ReLU, as ``(N, h, w)``.

==============  ==============================================================================
method          layer map
==============  ==============================================================================
Grad-CAM        ``ReLU(sum_k w_k A_k)``, ``w_k = mean_ij G_k``  (Selvaraju et al. 2017)
Grad-CAM++      ``ReLU(sum_k w_k A_k)``, ``w_k = sum_ij a_kij ReLU(G_kij)``, with
                ``a = G^2 / (2 G^2 + (sum_ij A_k) G^3 + 1e-6)`` where ``G != 0``, else 0
                (Chattopadhay et al. 2018, eq. 19 with ``S = exp(logit)``: its second and
                third derivatives are ``exp(logit) G^2`` and ``exp(logit) G^3``, and the
                factor ``exp(logit)``, positive, is dropped)
XGrad-CAM       ``ReLU(sum_k w_k A_k)``, ``w_k = sum_ij G_kij A_kij / (sum_ij A_kij + 1e-7)``
                (Fu et al. 2020)
HiResCAM        ``ReLU(sum_k G_k * A_k)`` (element-wise; Draelos & Carin 2020)
LayerCAM        ``ReLU(sum_k ReLU(G_k) * A_k)`` (Jiang et al. 2021)
Eigen-CAM       ``ReLU(p)``, ``p`` the projection of the centred activations on their first
                principal component (no gradient, no class; Muhammad & Yeasin 2020)
Score-CAM       ``ReLU(sum_k w_k A_k)``, ``w = softmax_k S(x * M_k)``, ``M_k`` the min-max
                normalized, upsampled ``A_k`` (Wang et al. 2020): see :func:`score_masks`
==============  ==============================================================================

The epsilons are pytorch-grad-cam 1.5.7's (``grad_cam_plusplus.py``, ``xgrad_cam.py``),
so these maps equal its ``get_cam_image`` followed by its ``np.maximum(cam, 0)``
(tests/gradcam/test_cam_family.py, to 1e-4; docs/engine.md lists the observed errors).
Grad-CAM++'s ``1e-6`` is not scale-free: where ``G^2`` is small against it (gradients of a
few 1e-4, as at the last layer of random-weight networks), the weights tend to
``sum_ij ReLU(G)^3 / 1e-6``. Eigen-CAM's sign, which an SVD leaves open, is fixed so that
``p`` correlates positively with the centred channel sum ``sum_k A_k`` (docs/engine.md).
"""

from __future__ import annotations

import torch

GRADPP_EPS = 1e-6
XGRAD_EPS = 1e-7
SCORE_EPS = 1e-8

# The methods computed from A and dS/dA alone.
GRADIENT_CAMS = ("gradcam", "counterfactual", "gradcam_pp", "xgradcam", "hirescam", "layercam")


def gradient_cams(a: torch.Tensor, g: torch.Tensor, wanted) -> dict[str, torch.Tensor]:
    """The layer maps of the ``wanted`` gradient CAMs for one class per image.

    Args:
        a: ``(N, C, h, w)`` activations.
        g: ``(N, C, h, w)`` their gradient ``dS/dA``.
        wanted: method names among :data:`GRADIENT_CAMS`; ``"gradcam"`` is always computed.

    Returns:
        ``{method: (N, h, w)}``, after ReLU.
    """
    out: dict[str, torch.Tensor] = {}
    lin = torch.einsum("nc,nchw->nhw", g.mean(dim=(-2, -1)), a)
    out["gradcam"] = lin.clamp(min=0)
    if "counterfactual" in wanted:
        out["counterfactual"] = (-lin).clamp(min=0)
    if "gradcam_pp" in wanted or "xgradcam" in wanted:
        sum_a = a.sum(dim=(-2, -1), keepdim=True)  # (N, C, 1, 1)
    if "gradcam_pp" in wanted:
        g2 = g * g
        alpha = g2 / (2 * g2 + sum_a * g2 * g + GRADPP_EPS)
        alpha = torch.where(g != 0, alpha, torch.zeros_like(alpha))
        w = (g.clamp(min=0) * alpha).sum(dim=(-2, -1))
        out["gradcam_pp"] = torch.einsum("nc,nchw->nhw", w, a).clamp(min=0)
    if "xgradcam" in wanted:
        w = (g * a / (sum_a + XGRAD_EPS)).sum(dim=(-2, -1))
        out["xgradcam"] = torch.einsum("nc,nchw->nhw", w, a).clamp(min=0)
    if "hirescam" in wanted:
        out["hirescam"] = (g * a).sum(dim=1).clamp(min=0)
    if "layercam" in wanted:
        out["layercam"] = (g.clamp(min=0) * a).sum(dim=1).clamp(min=0)
    return out


def eigen_projection(a: torch.Tensor) -> torch.Tensor:
    """``(N, h, w)``: each image's activations projected on their first principal component.

    Per image the ``h*w`` positions are the samples and the ``C`` channels the features:
    ``M = A^T - mean`` (``(h*w, C)``, centred per channel, as pytorch-grad-cam's
    ``get_2d_projection``), ``p = M v`` with ``v`` the top right singular vector of ``M``.
    Computed in float64 from the eigen-decomposition of the smaller of ``M M^T`` and
    ``M^T M``. The sign is chosen so that ``p . (M 1) >= 0``: ``p`` is large where the
    centred activations summed over channels are large (``p . M 1 = s_1^2 (v . 1)``, so
    this is the sign that makes ``v``'s loadings sum to a non-negative number).
    Before ReLU; a constant map gives zeros.
    """
    n, c, h, w = a.shape
    m = a.reshape(n, c, h * w).transpose(1, 2).to(torch.float64)  # (N, P, C)
    m = m - m.mean(dim=1, keepdim=True)
    if h * w <= c:
        evals, evecs = torch.linalg.eigh(m @ m.transpose(1, 2))  # (N, P, P), ascending
        p = evecs[..., -1] * evals[..., -1].clamp(min=0).sqrt()[:, None]
    else:
        _, evecs = torch.linalg.eigh(m.transpose(1, 2) @ m)  # (N, C, C)
        p = (m @ evecs[..., -1:])[..., 0]
    sign = torch.where((p * m.sum(dim=-1)).sum(dim=-1, keepdim=True) < 0, -1.0, 1.0)
    return (p * sign).reshape(n, h, w).to(a.dtype)


def score_masks(a: torch.Tensor, size) -> torch.Tensor:
    """Score-CAM's masks: ``(N, C, H, W)`` of ``a`` ``(N, C, h, w)``, each channel
    upsampled bilinearly to ``size`` with ``align_corners=True`` and min-max normalized
    per image and channel as ``(M - min) / (max - min + 1e-8)`` (pytorch-grad-cam's
    ``UpsamplingBilinear2d`` and epsilon). Call it on a few channels at a time: the
    result holds ``C`` input-sized maps per image."""
    up = torch.nn.functional.interpolate(a, size=tuple(size), mode="bilinear", align_corners=True)
    flat = up.flatten(-2)
    lo = flat.amin(-1, keepdim=True)
    hi = flat.amax(-1, keepdim=True)
    return ((flat - lo) / (hi - lo + SCORE_EPS)).view_as(up)
