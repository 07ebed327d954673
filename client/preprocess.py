"""Image -> NCHW float32, as the server's published ``preprocess`` says. No torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def load_image(image, preprocess: dict) -> np.ndarray:
    """A path or PIL image -> (1, C, size, size) float32 (C = 1 for ``"color": "L"``).

    Resize so the shorter side is ``size / crop_fraction`` and center-crop ``size`` (the
    usual ImageNet evaluation); an image already ``size x size`` is used as it is.
    """
    from PIL import Image

    img = Image.open(image) if isinstance(image, (str, Path)) else image
    img = img.convert(preprocess.get("color", "RGB"))
    size = int(preprocess.get("size", 224))
    if img.size != (size, size):
        short = round(size / float(preprocess.get("crop_fraction", 0.875)))
        w, h = img.size
        scale = short / min(w, h)
        img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
        w, h = img.size
        left, top = (w - size) // 2, (h - size) // 2
        img = img.crop((left, top, left + size, top + size))
    x = np.asarray(img, dtype=np.float32)                       # H, W, C in 0..255
    if x.ndim == 2:                                             # grayscale ("L"): one channel
        x = x[:, :, None]
    mean = np.asarray(preprocess.get("mean", [0.0] * 3), np.float32)
    std = np.asarray(preprocess.get("std", [1.0] * 3), np.float32)
    x = (x - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])     # 1, C, H, W
