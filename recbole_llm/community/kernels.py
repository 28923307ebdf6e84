"""Smoothing kernels that turn a distance into a community affinity weight (L³Rec eq. 2).

``K_h(d)`` is zero from ``d >= h`` on.  The paper (after LLORMA and LOCA) uses the
Epanechnikov kernel ``¾·(1 − (d/h)²)·1[d < h]``; uniform ``½·1[d < h]`` and
triangular ``(1 − d/h)·1[d < h]`` are the other usual choices.  LOCA uses a
wider bandwidth for training (0.8) than for inference (0.4); L³Rec's
``train_bandwidth`` / ``test_bandwidth`` default to the one ``bandwidth`` h.
"""
import numpy as np


def epanechnikov(distance, bandwidth):
    u = np.asarray(distance, dtype=np.float32) / bandwidth
    return np.where(u < 1.0, 0.75 * (1.0 - u * u), 0.0).astype(np.float32)


def uniform(distance, bandwidth):
    u = np.asarray(distance, dtype=np.float32) / bandwidth
    return np.where(u < 1.0, 0.5, 0.0).astype(np.float32)


def triangular(distance, bandwidth):
    u = np.asarray(distance, dtype=np.float32) / bandwidth
    return np.where(u < 1.0, 1.0 - u, 0.0).astype(np.float32)


KERNELS = {"epanechnikov": epanechnikov, "uniform": uniform, "triangular": triangular}


def kernel_weights(distance, bandwidth, kernel="epanechnikov"):
    """Affinity weights ``K_h(distance)`` (same shape as ``distance``), zero beyond ``h``."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {sorted(KERNELS)}, got {kernel!r}")
    if not bandwidth > 0:
        raise ValueError(f"bandwidth h must be > 0, got {bandwidth!r}")
    return KERNELS[kernel](distance, float(bandwidth))
