"""Load and validate a sweep's YAML file (``configs/eval/*.yaml``) into plain dataclasses.

Every mistake names the key that is wrong and what is allowed, e.g.
``configs/eval/x.yaml: models[0].splits: expected a list of module names or "recommended"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .codecs import CODECS, expand_codec_entry

__all__ = ["ConfigError", "EvalConfig", "ModelEntry", "load_config", "parse_config"]

DATASETS = ("imagenet", "fashion_mnist")
METRICS = ("top1", "agreement")
PHOTO_SOURCES = ("foolbox", "skimage", "sklearn", "debian", "lomiri", "plasma")


class ConfigError(ValueError):
    """A sweep file that cannot be run; the message names the offending key."""


@dataclass
class ModelEntry:
    name: str
    splits: list[str] | str                    # module names, or "recommended" / "default"
    dataset: str = "imagenet"
    metric: str = "agreement"                  # what the 1-point target is judged on
    limit: int | None = None                   # at most this many inputs
    photos: list[str] = field(default_factory=lambda: ["foolbox"])  # imagenet only
    crops: int = 1                             # imagenet photos: 1 (center) or 5 (center + corners)
    batch: int = 32
    optional: bool = False                     # skip (with a note) when the model cannot be loaded
    codecs: str = "default"                    # which named codec set (when ``codecs:`` is a mapping)


@dataclass
class EvalConfig:
    name: str
    models: list[ModelEntry]
    codecs: dict[str, list[dict]]              # set name -> expanded codec points (a plain list = "default")
    tolerance: float = 1.0                     # accuracy points for "within 1 point"
    threads: int = 2
    workers: int = 1                           # processes that encode/decode samples in parallel
    source: str = "<dict>"


def _err(where: str, msg: str) -> ConfigError:
    return ConfigError(f"{where}: {msg}")


def _take(d: dict, key: str, where: str, kind, default=None, required=False):
    if key not in d:
        if required:
            raise _err(where, f"missing required key {key!r}")
        return default
    v = d[key]
    if kind is int and (isinstance(v, bool) or not isinstance(v, int)):
        raise _err(f"{where}.{key}", f"expected an integer, got {v!r}")
    if kind is float and (isinstance(v, bool) or not isinstance(v, (int, float))):
        raise _err(f"{where}.{key}", f"expected a number, got {v!r}")
    if kind is str and not isinstance(v, str):
        raise _err(f"{where}.{key}", f"expected a string, got {v!r}")
    if kind is list and not isinstance(v, list):
        raise _err(f"{where}.{key}", f"expected a list, got {v!r}")
    return float(v) if kind is float else v


def _check_keys(d: dict, allowed: set[str], where: str) -> None:
    if not isinstance(d, dict):
        raise _err(where, f"expected a mapping, got {type(d).__name__}")
    extra = sorted(set(d) - allowed)
    if extra:
        raise _err(where, f"unknown key(s) {', '.join(map(repr, extra))}; allowed: {', '.join(sorted(allowed))}")


def _model(d, where: str) -> ModelEntry:
    if isinstance(d, str):
        d = {"name": d}
    _check_keys(d, {"name", "splits", "dataset", "metric", "limit", "photos", "crops", "batch",
                    "optional", "codecs"}, where)
    name = _take(d, "name", where, str, required=True)
    splits = d.get("splits", "recommended")
    if isinstance(splits, str):
        if splits not in ("recommended", "default"):
            raise _err(f"{where}.splits", f'expected a list of module names or "recommended"/"default", got {splits!r}')
    elif not (isinstance(splits, list) and splits and all(isinstance(s, str) and s for s in splits)):
        raise _err(f"{where}.splits", f'expected a non-empty list of module names or "recommended", got {splits!r}')
    default_ds = "fashion_mnist" if name.startswith("fmnist_") else "imagenet"
    dataset = _take(d, "dataset", where, str, default_ds)
    if dataset not in DATASETS:
        raise _err(f"{where}.dataset", f"{dataset!r} is not one of {DATASETS}")
    metric = _take(d, "metric", where, str, "top1" if dataset == "fashion_mnist" else "agreement")
    if metric not in METRICS:
        raise _err(f"{where}.metric", f"{metric!r} is not one of {METRICS}")
    limit = _take(d, "limit", where, int)
    if limit is not None and limit < 1:
        raise _err(f"{where}.limit", f"must be >= 1, got {limit}")
    photos = _take(d, "photos", where, list, ["foolbox"])
    for p in photos:
        if p not in PHOTO_SOURCES:
            raise _err(f"{where}.photos", f"{p!r} is not one of {PHOTO_SOURCES}")
    crops = _take(d, "crops", where, int, 1)
    if crops not in (1, 5):
        raise _err(f"{where}.crops", f"must be 1 (center crop) or 5 (center + 4 corners), got {crops}")
    batch = _take(d, "batch", where, int, 32)
    if batch < 1:
        raise _err(f"{where}.batch", f"must be >= 1, got {batch}")
    optional = d.get("optional", False)
    if not isinstance(optional, bool):
        raise _err(f"{where}.optional", f"expected true or false, got {optional!r}")
    codecs = _take(d, "codecs", where, str, "default")
    return ModelEntry(name, splits, dataset, metric, limit, photos, crops, batch, optional, codecs)


def parse_config(raw, source: str = "<dict>", name: str | None = None) -> EvalConfig:
    """Validate a loaded YAML document; raises :class:`ConfigError` naming the bad key."""
    where = source
    _check_keys(raw, {"name", "models", "codecs", "tolerance", "threads", "workers"}, where)
    models_raw = _take(raw, "models", where, list, required=True)
    if not models_raw:
        raise _err(f"{where}.models", "needs at least one model")
    models = [_model(m, f"{where}.models[{i}]") for i, m in enumerate(models_raw)]
    if "codecs" not in raw:
        raise _err(where, "missing required key 'codecs'")
    codecs_raw = raw["codecs"]
    if isinstance(codecs_raw, list):
        sets = {"default": codecs_raw}
    elif isinstance(codecs_raw, dict) and codecs_raw:
        sets = codecs_raw
    else:
        raise _err(f"{where}.codecs", f"expected a list of codecs or a mapping of named lists, got {codecs_raw!r}")
    codec_sets = {str(k): _codec_points(v, f"{where}.codecs" + ("" if isinstance(codecs_raw, list) else f".{k}"))
                  for k, v in sets.items()}
    for i, m in enumerate(models):
        if m.codecs not in codec_sets:
            raise _err(f"{where}.models[{i}].codecs", f"no codec set {m.codecs!r}; defined: {', '.join(codec_sets)}")
    tol = _take(raw, "tolerance", where, float, 1.0)
    threads = _take(raw, "threads", where, int, 2)
    workers = _take(raw, "workers", where, int, 1)
    if threads < 1 or workers < 1:
        raise _err(where, f"threads and workers must be >= 1, got {threads} and {workers}")
    nm = _take(raw, "name", where, str, name or Path(source).stem)
    return EvalConfig(nm, models, codec_sets, tol, threads, workers, source)


def _codec_points(codecs_raw, where: str) -> list[dict]:
    if not isinstance(codecs_raw, list) or not codecs_raw:
        raise _err(where, "needs a non-empty list of codecs")
    points: list[dict] = []
    for i, c in enumerate(codecs_raw):
        w = f"{where}[{i}]"
        if not isinstance(c, dict) or "type" not in c:
            raise _err(w, f"expected a mapping with a 'type' (one of {', '.join(CODECS)}), got {c!r}")
        try:
            points.extend(expand_codec_entry(c))
        except (ValueError, TypeError) as e:
            raise _err(w, str(e)) from None
    seen = set()
    for p in points:
        if p["label"] in seen:
            raise _err(where, f"codec point {p['label']!r} appears twice")
        seen.add(p["label"])
    return points


def load_config(path: str | Path) -> EvalConfig:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    return parse_config(raw, str(path), name=path.stem)
