"""Train one of the Fashion-MNIST variants (``splitwire.archs.FMNIST_VARIANTS``) on CPU.

    python -m splitwire.train_fmnist --model fmnist_resnet50            # the committed recipe
    python -m splitwire.train_fmnist --model fmnist_swin_t --epochs 1 --out /tmp/w

Reproducible: fixed seeds, a deterministic data order and augmentation (random 28x28 crop of
the image zero-padded by 2, horizontal flip, both drawn from a seeded generator), AdamW with
a one-cycle schedule, batch 128. Prints loss/accuracy per epoch and writes
``<out>/<model>.pt`` (the state_dict in float16), updates ``<out>/SHA256SUMS`` and
``<out>/train_log.json`` (epochs, seconds, test accuracy on all 10,000 test images, versions).
Needs the full dataset: ``apt-get install dataset-fashion-mnist``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import archs, datasets

# Inputs are (pixel - MEAN) / STD on 0..255 grayscale (the training set's mean and std).
MEAN, STD = 72.94, 90.02
DEFAULT_OUT = Path(__file__).resolve().parent / "weights" / "fmnist"


def to_input(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [N, 28, 28] -> normalized float32 [N, 1, 28, 28]."""
    x = torch.as_tensor(np.asarray(images)).float().unsqueeze(1)
    return (x - MEAN) / STD


def augment(x: torch.Tensor, gen: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Random crop of the zero-padded image (zero = background, before normalization) + h-flip."""
    n, _, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad), value=-MEAN / STD)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None])                     # n, h
    cols = (dx[:, None] + torch.arange(w)[None])                     # n, w
    idx_r = rows[:, :, None].expand(n, h, w + 2 * pad)
    out = torch.gather(xp[:, 0], 1, idx_r)                           # n, h, W+2p
    out = torch.gather(out, 2, cols[:, None, :].expand(n, h, w))     # n, h, w
    flip = torch.rand(n, generator=gen) < 0.5
    out[flip] = out[flip].flip(-1)
    return out[:, None]


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        correct += int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
    return correct / len(x)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _update_sums(out: Path, name: str, digest: str) -> None:
    sums = out / "SHA256SUMS"
    lines = {}
    if sums.exists():
        for line in sums.read_text().splitlines():
            if line.strip():
                h, f = line.split(maxsplit=1)
                lines[f.lstrip("*")] = h
    lines[name] = digest
    sums.write_text("".join(f"{h}  {f}\n" for f, h in sorted(lines.items())))


def train(model_name: str, epochs: int | None = None, out: Path = DEFAULT_OUT, lr: float | None = None,
          batch: int = 128, seed: int = 0, threads: int = 2, limit: int | None = None,
          test_limit: int | None = None) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    np.random.seed(seed)
    variant = archs.FMNIST_VARIANTS[model_name]
    epochs = epochs or variant["epochs"]
    lr = lr or variant["lr"]
    model = archs.fmnist_model(model_name)
    params = archs.count_parameters(model)

    xtr, ytr = datasets.fashion_mnist("train", limit)
    xte, yte = datasets.fashion_mnist("test", test_limit)
    if test_limit is None and len(xte) != 10000:
        raise SystemExit("training needs the full Fashion-MNIST: apt-get install dataset-fashion-mnist")
    xtr, ytr = to_input(xtr), torch.from_numpy(ytr)
    xte, yte = to_input(xte), torch.from_numpy(yte)

    steps = (len(xtr) + batch - 1) // batch
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps, pct_start=0.25)
    gen = torch.Generator().manual_seed(seed)
    print(f"{model_name}: {variant['arch']} {variant['kwargs']}, {params / 1e6:.3f}M parameters, "
          f"{epochs} epochs x {steps} steps, AdamW lr {lr} one-cycle, {threads} threads", flush=True)
    history = []
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(xtr), generator=gen)
        loss_sum, correct, seen = 0.0, 0, 0
        for i in range(steps):
            idx = order[i * batch:(i + 1) * batch]
            xb, yb = augment(xtr[idx], gen), ytr[idx]
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
            seen += len(idx)
            if (i + 1) % 100 == 0:
                print(f"    step {i + 1}/{steps}: loss {loss_sum / seen:.4f}, {time.perf_counter() - t0:.0f} s",
                      flush=True)
        # (the test set is evaluated once, at the end, with the shipped float16 weights: CPU time is scarce)
        rec = {"epoch": epoch + 1, "train_loss": round(loss_sum / seen, 4), "train_acc": round(correct / seen, 4),
               "seconds": round(time.perf_counter() - t0, 1)}
        history.append(rec)
        print(f"  epoch {epoch + 1}/{epochs}: loss {rec['train_loss']:.4f}, train acc {rec['train_acc']:.4f} "
              f"(augmented, while training), {rec['seconds']:.0f} s", flush=True)
    seconds = time.perf_counter() - t0

    out.mkdir(parents=True, exist_ok=True)
    sd = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    path = out / f"{model_name}.pt"
    torch.save(sd, path)
    # The accuracy of what is shipped: the float16 weights loaded back into float32.
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()})
    final = evaluate(model, xte, yte)
    digest = sha256(path)
    _update_sums(out, path.name, digest)
    log_path = out / "train_log.json"
    log = json.loads(log_path.read_text()) if log_path.exists() else {}
    log[model_name] = {
        "arch": variant["arch"], "kwargs": {k: list(v) if isinstance(v, tuple) else v
                                            for k, v in variant["kwargs"].items()},
        "parameters": params, "epochs": epochs, "batch": batch, "lr": lr, "seed": seed,
        "optimizer": "AdamW(weight_decay=0.05) + OneCycleLR(pct_start=0.25)",
        "augmentation": "random crop 28 of zero-padded 32, horizontal flip",
        "train_seconds": round(seconds, 1), "threads": threads,
        "test_accuracy": final, "test_images": len(xte), "history": history,
        "sha256": digest, "bytes": path.stat().st_size,
        "torch": torch.__version__, "python": platform.python_version(),
    }
    log_path.write_text(json.dumps(dict(sorted(log.items())), indent=1) + "\n")
    print(f"{model_name}: test accuracy {final:.4f} on {len(xte)} images (float16 weights), "
          f"{seconds:.0f} s; wrote {path} ({path.stat().st_size / 1e6:.2f} MB, sha256 {digest[:16]}...)",
          flush=True)
    return log[model_name]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, choices=sorted(archs.FMNIST_VARIANTS))
    p.add_argument("--epochs", type=int, default=None, help="default: the committed recipe's")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--limit", type=int, default=None, help="use only the first N training images (smoke tests)")
    p.add_argument("--test-limit", type=int, default=None, help="evaluate on the first N test images only")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    a = p.parse_args(argv)
    train(a.model, a.epochs, a.out, a.lr, a.batch, a.seed, a.threads, a.limit, a.test_limit)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
