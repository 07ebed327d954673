"""The inputs a model is evaluated on: preprocessed float32 NCHW batches plus labels (-1 = unlabelled).

ImageNet models (``dataset: imagenet``) see real photos that install offline:

* ``foolbox``: the 20 labelled ImageNet validation images in ``foolbox==3.3.4`` (top-1 vs labels);
* ``skimage``: the photographs in scikit-image's bundled ``skimage/data`` (color and gray; gray
  ones are replicated to RGB); synthetic/diagram images of that folder are left out;
* ``sklearn``: ``china.jpg`` and ``flower.jpg`` of scikit-learn's sample images;
* ``debian``: the nature photos of Debian's ``mate-backgrounds`` package
  (``/usr/share/backgrounds/mate/nature/*.jpg``; ``apt-get install mate-backgrounds``);
* ``lomiri``: the photographs among Debian's ``lomiri-wallpapers-16.04`` (the Ubuntu 16.04 community
  wallpapers, ``/usr/share/backgrounds``; its two abstract images are left out);
* ``plasma``: the photographs among Debian's ``plasma-workspace-wallpapers`` (KDE's wallpapers, most
  of them drawings, which are left out), each at its largest resolution.

``bash scripts/photos.sh`` installs the three Debian packages (best effort, as root).

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
# The photographs of lomiri-wallpapers-16.04 (analogpattern and umang are abstract images).
LOMIRI_PHOTOS = ("Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Picture_0B_by_freespace",
                 "Picture_1A_by_freespace", "Wine_by_Jakkub_Mede", "aitzgorri_by_Aitzol_Berasategi",
                 "free_by_Peter_Nerlich", "friends_by_Aitzol_Berasategi", "greentock_by_Peter_Nerlich",
                 "life_by_Aitzol_Berasategi", "picosdeeuropa_by_Aitzol_Berasategi",
                 "seeding_by_Clements_Engelhardt", "sunset_by_Aitzol_Berasategi")
LOMIRI_DIR = "/usr/share/backgrounds"
# The photographs of plasma-workspace-wallpapers (its other 19 wallpapers are drawings and renders).
PLASMA_PHOTOS = ("BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey",
                 "Kite", "OneStandsOut", "Path", "summer_1am")
PLASMA_DIR = "/usr/share/wallpapers"


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
    if source == "lomiri":
        paths = (Path(LOMIRI_DIR) / f"{n}.jpg" for n in LOMIRI_PHOTOS)
        return [(p, -1) for p in paths if p.is_file()]
    if source == "plasma":
        found = (_largest_image(Path(PLASMA_DIR) / n / "contents" / "images") for n in PLASMA_PHOTOS)
        return [(p, -1) for p in found if p is not None]
    raise ValueError(f"unknown photo source {source!r}")


def _largest_image(folder: Path) -> Path | None:
    """The highest-resolution file of a KDE wallpaper's ``contents/images`` (named WIDTHxHEIGHT.ext)."""
    def area(p: Path) -> int:
        w, _, h = p.stem.partition("x")
        return int(w) * int(h) if w.isdigit() and h.isdigit() else -1

    files = sorted((p for p in folder.glob("*") if area(p) > 0), key=lambda p: (area(p), p.name))
    return files[-1] if files else None


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
    """Fashion-MNIST test images through the model's published ``preprocess``, with the edge client's
    own code (client/preprocess.py), so the evaluation sees exactly what a deployed client sends."""
    from PIL import Image

    from client.preprocess import load_image

    from .. import datasets

    imgs, labels = datasets.fashion_mnist(split="test", limit=limit)
    pre = spec.preprocess or {}
    x = np.concatenate([load_image(Image.fromarray(img), pre) for img in imgs]) if len(imgs) else \
        np.zeros((0,) + tuple(spec.input_shape), np.float32)
    n = len(labels)
    return InputSet(x.astype(np.float32, copy=False), np.asarray(labels, np.int64),
                    [f"fashion_mnist:test[{i}]" for i in range(n)], {"fashion_mnist test": n})


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
