"""The inputs a model is evaluated on: preprocessed float32 NCHW batches plus labels (-1 = unlabelled).

ImageNet models (``dataset: imagenet``) see real photos that install offline:

* ``foolbox``: the 20 labelled ImageNet validation images in ``foolbox==3.3.4`` (top-1 vs labels);
* ``skimage``: the photographs in scikit-image's bundled ``skimage/data`` (color and gray; gray
  ones are replicated to RGB); synthetic/diagram images of that folder are left out;
* ``sklearn``: ``china.jpg`` and ``flower.jpg`` of scikit-learn's sample images;
* ``debian``: the nature photos of Debian's ``mate-backgrounds`` package
  (``/usr/share/backgrounds/mate/nature/*.jpg``; ``apt-get install mate-backgrounds``).

Sources that are not installed are skipped and reported (``InputSet.sources``). With ``crops: 5``,
images at least twice the model's input size also give their 4 corner crops (half the shorter
side), each preprocessed like a full image: more distinct views for the agreement metric. With
``limit``, labelled images come first, then full photos, then crops.

Fashion-MNIST models (``dataset: fashion_mnist``) use ``splitwire.datasets.fashion_mnist`` and the
model's own ``preprocess`` (see :func:`_fmnist_inputs`).
"""

from __future__ import annotations

import glob
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# scikit-image's bundled photographs (not its synthetic/diagram images).
SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg",
                  "hubble_deep_field.jpg", "retina.jpg", "ihc.png", "camera.png", "coins.png", "moon.png",
                  "brick.png", "grass.png", "gravel.png", "page.png", "text.png", "clock_motion.png",
                  "cell.png")
DEBIAN_GLOBS = ("/usr/share/backgrounds/mate/nature/*.jpg",)


@dataclass
class InputSet:
    x: np.ndarray                      # float32 [N, ...] model inputs
    labels: np.ndarray                 # int64 [N], -1 where unlabelled
    names: list[str]
    sources: dict[str, int] = field(default_factory=dict)   # source -> images used (0 = not installed)

    @property
    def labelled(self) -> int:
        return int((self.labels >= 0).sum())


def _pkg_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def photo_paths(source: str) -> list[tuple[Path, int]]:
    """[(path, ImageNet label or -1)] for one source; [] when it is not installed."""
    if source == "foolbox":
        try:
            from ..samples import imagenet_samples

            return imagenet_samples()
        except SystemExit:
            return []
    if source == "skimage":
        d = _pkg_dir("skimage")
        return [] if d is None else [(d / "data" / n, -1) for n in SKIMAGE_PHOTOS if (d / "data" / n).is_file()]
    if source == "sklearn":
        d = _pkg_dir("sklearn")
        return [] if d is None else [(p, -1) for p in sorted((d / "datasets" / "images").glob("*.jpg"))]
    if source == "debian":
        return [(Path(p), -1) for g in DEBIAN_GLOBS for p in sorted(glob.glob(g))]
    raise ValueError(f"unknown photo source {source!r}")


def _crops(img, size: int, crops: int):
    """The full image, then (crops == 5, image >= 2x size) its 4 corner squares of half the short side."""
    yield "", img
    if crops == 5 and min(img.size) >= 2 * size:
        w, h = img.size
        s = min(w, h) // 2
        for tag, (l, t) in (("tl", (0, 0)), ("tr", (w - s, 0)), ("bl", (0, h - s)), ("br", (w - s, h - s))):
            yield f"#{tag}", img.crop((l, t, l + s, t + s))


def imagenet_inputs(preprocess: dict, input_shape, photos: list[str], crops: int = 1,
                    limit: int | None = None) -> InputSet:
    from PIL import Image

    from client.preprocess import load_image

    size = int(input_shape[-1])
    xs, labels, names, sources = [], [], [], {}
    for src in photos:
        found = photo_paths(src)
        sources[src] = 0
        for path, label in found:
            with Image.open(path) as im:
                im = im.convert("RGB")
                for tag, view in _crops(im, size, crops):
                    xs.append(load_image(view, preprocess)[0])
                    labels.append(label if not tag else -1)
                    names.append(f"{src}:{path.name}{tag}")
                    sources[src] += 1
    if not xs:
        raise RuntimeError(f"no input images found for sources {photos} (install foolbox==3.3.4 --no-deps)")
    # Labelled images first, then the other full images, then the corner crops: a limit keeps the most
    # distinct content.
    order = sorted(range(len(xs)), key=lambda i: (labels[i] < 0, "#" in names[i]))
    if limit:
        order = order[:limit]
    used = {src: sum(1 for i in order if names[i].startswith(src + ":")) for src in sources}
    return InputSet(np.stack([xs[i] for i in order]).astype(np.float32),
                    np.asarray([labels[i] for i in order], np.int64), [names[i] for i in order], used)


def _fmnist_inputs(spec, limit: int | None) -> InputSet:
    """Fashion-MNIST test images through the model's ``preprocess``.

    The preprocess dict follows client/preprocess.py's keys: ``size`` (resize, bilinear, when not 28),
    ``mean``/``std`` on the 0..255 scale (one value or one per channel), ``color``: "L" (1 channel)
    or "RGB" (gray replicated); a callable ``spec.preprocess_array(uint8 [N,28,28]) -> float32`` wins
    when the model spec has one.
    """
    from .. import datasets

    imgs, labels = datasets.fashion_mnist(split="test", limit=limit)
    fn = getattr(spec, "preprocess_array", None)
    if callable(fn):
        x = np.asarray(fn(imgs), np.float32)
    else:
        x = fmnist_preprocess(imgs, spec.preprocess or {}, spec.input_shape)
    n = len(labels)
    return InputSet(x, np.asarray(labels, np.int64), [f"fashion_mnist:test[{i}]" for i in range(n)],
                    {"fashion_mnist test": n})


def fmnist_preprocess(imgs: np.ndarray, pre: dict, input_shape) -> np.ndarray:
    """uint8 [N, 28, 28] -> float32 [N, C, H, W] following a preprocess dict (see _fmnist_inputs)."""
    c, h, w = (tuple(input_shape) + (28, 28))[:3] if len(input_shape) == 3 else (1, 28, 28)
    x = imgs.astype(np.float32)
    if (h, w) != x.shape[1:]:
        import torch
        import torch.nn.functional as F

        x = F.interpolate(torch.from_numpy(x)[:, None], size=(h, w), mode="bilinear",
                          align_corners=False)[:, 0].numpy()
    x = np.repeat(x[:, None], c, axis=1)
    mean = np.asarray(pre.get("mean", [0.0]), np.float32).reshape(-1)
    std = np.asarray(pre.get("std", [255.0]), np.float32).reshape(-1)
    if mean.size not in (1, c) or std.size not in (1, c):
        raise ValueError(f"preprocess mean/std must have 1 or {c} values, got {mean.size}/{std.size}")
    x = (x - mean.reshape(1, -1, 1, 1)) / std.reshape(1, -1, 1, 1)
    if pre.get("layout", "NCHW") == "NHWC":
        x = x.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x, dtype=np.float32)


def model_inputs(spec, entry) -> InputSet:
    if entry.dataset == "fashion_mnist":
        return _fmnist_inputs(spec, entry.limit)
    return imagenet_inputs(spec.preprocess, spec.input_shape, entry.photos, entry.crops, entry.limit)


def env_threads(n: int) -> None:
    """Cap torch/numba/BLAS threads (the machine is shared)."""
    os.environ.setdefault("NUMBA_NUM_THREADS", str(n))
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:
        pass
