"""The 20 labelled ImageNet images foolbox ships (``foolbox/data/imagenet_NN_LABEL.jpg``)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

_NAME = re.compile(r"^imagenet_(\d+)_(\d+)\.(?:jpg|png)$")


def imagenet_samples() -> list[tuple[Path, int]]:
    """[(path, ImageNet class index)], sorted; needs ``pip install foolbox==3.3.4 --no-deps``."""
    spec = importlib.util.find_spec("foolbox")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the sample images come with foolbox: pip install foolbox==3.3.4 --no-deps")
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    found = []
    for p in sorted(data.iterdir()):
        m = _NAME.match(p.name)
        if m:
            found.append((p, int(m.group(2))))
    if not found:
        raise SystemExit(f"no imagenet_*.jpg in {data}; reinstall foolbox==3.3.4")
    return found
