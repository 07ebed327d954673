"""Fashion-MNIST from the Debian package ``dataset-fashion-mnist`` (no download).

``apt-get install dataset-fashion-mnist`` puts the four gzip'd IDX files in
``/usr/share/datasets/fashion-mnist/`` (``SPLITWIRE_FMNIST_DIR`` points elsewhere). Without
them, the test split falls back to the first 1000 test images committed with splitwire
(``splitwire/data/fmnist_test_1000.npz``), and a warning says so.
"""

from __future__ import annotations

import gzip
import os
import struct
import warnings
from importlib import resources
from pathlib import Path

import numpy as np

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
          "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
SUBSET = "fmnist_test_1000.npz"
_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def _read_idx(path: Path, limit: int | None) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        zero, dtype, ndim = struct.unpack(">HBB", f.read(4))
        if zero != 0 or dtype != 0x08:
            raise ValueError(f"{path} is not an unsigned-byte IDX file")
        shape = list(struct.unpack(f">{ndim}I", f.read(4 * ndim)))
        if limit is not None:
            shape[0] = min(shape[0], limit)
        n = int(np.prod(shape))
        data = np.frombuffer(f.read(n), np.uint8).copy()
    if data.size != n:
        raise ValueError(f"{path} is truncated")
    return data.reshape(shape)


def data_dir() -> Path:
    return Path(os.environ.get("SPLITWIRE_FMNIST_DIR", DEBIAN_DIR))


def available(split: str = "test") -> bool:
    """Whether the full split is on disk (the Debian package or ``SPLITWIRE_FMNIST_DIR``)."""
    return all((data_dir() / f).is_file() for f in _FILES[split])


def subset(limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The committed subset: the first 1000 test images and labels."""
    with resources.files("splitwire").joinpath("data", SUBSET).open("rb") as f:
        z = np.load(f)
        x, y = z["images"], z["labels"].astype(np.int64)
    return x[:limit], y[:limit]


def fashion_mnist(split: str = "test", limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 28, 28], labels int64 [N]) in the dataset's order; the first ``limit``."""
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if available(split):
        img, lab = (data_dir() / f for f in _FILES[split])
        x, y = _read_idx(img, limit), _read_idx(lab, limit).astype(np.int64)
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"{img} and {lab} disagree on the number of items")
        return x, y
    fix = "apt-get install dataset-fashion-mnist (or set SPLITWIRE_FMNIST_DIR)"
    if split == "train":
        raise FileNotFoundError(f"Fashion-MNIST training images not found in {data_dir()}: {fix}")
    if limit is None or limit > 1000:
        warnings.warn(f"Fashion-MNIST not found in {data_dir()}; using the committed first 1000 test "
                      f"images only ({fix} for all 10,000)", stacklevel=2)
    return subset(limit)
