"""Accuracy metrics on logits: top-1 against labels, top-1 agreement with the unsplit model."""

from __future__ import annotations

import numpy as np


def top1(logits: np.ndarray, labels: np.ndarray) -> float | None:
    """Percent of labelled inputs (label >= 0) whose argmax is the label; None when none is labelled."""
    mask = labels >= 0
    if not mask.any():
        return None
    return float((logits[mask].argmax(1) == labels[mask]).mean() * 100.0)


def agreement(logits: np.ndarray, reference_top1: np.ndarray) -> float:
    """Percent of inputs whose argmax equals the unsplit model's argmax."""
    return float((logits.argmax(1) == reference_top1).mean() * 100.0)


def feature_error(x: np.ndarray, y: np.ndarray) -> dict:
    """MSE and PSNR (peak = the tensor's max |x|) of decoded features."""
    d = (x.astype(np.float64) - y.astype(np.float64))
    mse = float(np.mean(d * d))
    peak = float(np.max(np.abs(x))) or 1.0
    psnr = float("inf") if mse == 0 else float(10 * np.log10(peak * peak / mse))
    return {"mse": mse, "psnr_db": psnr}
