"""splitwire eval: config validation, codec registry round trips, analysis, and the quick sweep end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("yaml")

import codec_cupy as cc  # noqa: E402
from splitwire.evaluation import ConfigError, parse_config  # noqa: E402
from splitwire.evaluation.analysis import dominance, smallest_within  # noqa: E402
from splitwire.evaluation.codecs import (CODECS, FeatureInfo, expand_codec_entry, hevc_available,  # noqa: E402
                                         make_codec, map_block, tile, untile)

ROOT = Path(__file__).resolve().parent.parent
GOOD = {"models": [{"name": "efficientnet_lite0", "splits": ["_blocks.8"]}],
        "codecs": [{"type": "splitwire", "bits": [2, 4]}, {"type": "float16"}]}


def _cfg(**over):
    raw = json.loads(json.dumps(GOOD))
    raw.update(over)
    return raw


def test_config_expands_points():
    cfg = parse_config(_cfg(), "t.yaml")
    assert cfg.name == "t"
    assert [p["label"] for p in cfg.codecs["default"]] == ["splitwire uniform/tensor bits=2", "splitwire uniform/tensor bits=4",
                                                "float16"]
    assert cfg.models[0].metric == "agreement"
    dct = expand_codec_entry({"type": "splitwire", "transform": "dct", "block": 7, "step": [0.02, 0.04]})
    assert [(p["line"], p["label"]) for p in dct] == [("splitwire dct7", "splitwire dct7 step=0.02"),
                                                      ("splitwire dct7", "splitwire dct7 step=0.04")]
    weighted = expand_codec_entry({"type": "splitwire", "transform": "dct", "frequency_weight": 0.25, "step": 0.1})
    assert weighted[0]["label"] == "splitwire dct8 w=0.25 step=0.1"
    fm = parse_config(_cfg(models=["fmnist_resnet50"]), "t.yaml").models[0]
    assert (fm.dataset, fm.metric, fm.splits) == ("fashion_mnist", "top1", "recommended")


@pytest.mark.parametrize("raw, needle", [
    ({"codecs": [{"type": "float16"}]}, "missing required key 'models'"),
    (_cfg(model=[]), "unknown key(s) 'model'"),
    (_cfg(models=[]), "models: needs at least one model"),
    (_cfg(models=[{"name": "x", "splits": "all"}]), "models[0].splits"),
    (_cfg(models=[{"name": "x", "dataset": "cifar"}]), "models[0].dataset"),
    (_cfg(models=[{"name": "x", "limit": 0}]), "models[0].limit"),
    (_cfg(codecs=[{"type": "splitwire", "prior": "yes"}]), "splitwire.prior"),
    (_cfg(codecs=[{"type": "splitwire", "prior": "2fold", "transform": "dct", "bits": 1}]), "bits >= 2"),
    (_cfg(codecs=[{"type": "splitwire", "prior": "2fold", "prior_tables": 0}]), "prior_tables"),
    (_cfg(codecs=[{"type": "splitwire", "pca": 0}]), "splitwire.pca"),
    (_cfg(codecs=[{"type": "splitwire", "pca": 1.5}]), "splitwire.pca"),
    (_cfg(codecs=[{"type": "splitwire", "projection": "fisher"}]), "goes with pca"),
    (_cfg(codecs=[{"type": "splitwire", "pca": 0.5, "projection": "lda"}]), "splitwire.projection"),
    (_cfg(models=[{"name": "x", "photos": ["flickr"]}]), "models[0].photos"),
    (_cfg(codecs=[{"type": "bpg"}]), "unknown codec type 'bpg'"),
    (_cfg(codecs=[{"bits": 4}]), "codecs[0]: expected a mapping with a 'type'"),
    (_cfg(codecs=[{"type": "splitwire", "bits": 9}]), "bits=9"),
    (_cfg(codecs=[{"type": "splitwire", "quantizer": "ecsq", "granularity": "channel"}]), "per tensor"),
    (_cfg(codecs=[{"type": "splitwire", "bitz": 4}]), "unknown key(s) 'bitz'"),
    (_cfg(codecs=[{"type": "jpeg", "quality": [0]}]), "jpeg.quality"),
    (_cfg(codecs=[{"type": "jpeg"}]), "missing required key 'quality'"),
    (_cfg(codecs=[{"type": "hevc", "qp": 60}]), "hevc.qp"),
    (_cfg(codecs=[{"type": "float16"}, {"type": "float16"}]), "appears twice"),
    (_cfg(tolerance="one"), "tolerance"),
    (_cfg(codecs={"a": [{"type": "float16"}]}), "models[0].codecs: no codec set 'default'"),
    (_cfg(codecs={"default": []}), "codecs.default: needs a non-empty list"),
    (_cfg(models=[{"name": "x", "optional": "yes"}]), "models[0].optional"),
])
def test_config_errors_name_the_key(raw, needle):
    with pytest.raises(ConfigError) as e:
        parse_config(raw, "bad.yaml")
    assert needle in str(e.value)
    assert str(e.value).startswith("bad.yaml")


def test_load_config_errors(tmp_path):
    from splitwire.evaluation import load_config

    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("models: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")


def test_shipped_configs_are_valid():
    from splitwire.evaluation import load_config

    names = sorted(p.name for p in (ROOT / "configs" / "eval").glob("*.yaml"))
    assert {"quick.yaml", "default.yaml", "fmnist_10k.yaml"} <= set(names)
    for name in names:
        cfg = load_config(ROOT / "configs" / "eval" / name)
        assert cfg.codecs and cfg.models
        assert all(m.codecs in cfg.codecs for m in cfg.models), name


def test_tile_untile_inverse():
    rng = np.random.default_rng(0)
    for c in (1, 5, 16, 17):
        maps = rng.integers(0, 255, (c, 3, 4), dtype=np.uint8)
        img = tile(maps)
        assert img.ndim == 2
        np.testing.assert_array_equal(untile(img, c, 3, 4), maps)


ENTRIES = [{"type": "splitwire", "bits": 8}, {"type": "splitwire", "bits": 2, "quantizer": "ecsq", "clip": "mse"},
           {"type": "splitwire", "bits": 4, "granularity": "channel"},
           {"type": "splitwire", "transform": "dct", "block": 3, "step": [0.02, 0.1]},
           {"type": "splitwire", "transform": "dct", "block": "map", "frequency_weight": 1.0, "step": 0.05},
           {"type": "float32"}, {"type": "float16"}, {"type": "int8", "entropy": ["zstd", "lz4", "none"]},
           {"type": "png"}, {"type": "jpeg", "quality": 95}, {"type": "webp", "quality": 95},
           {"type": "hevc", "qp": 4}]


@pytest.mark.parametrize("shape, axis", [((1, 6, 5, 7), 1), ((1, 5, 7, 6), 3)])
@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e["type"])
def test_codec_round_trip(entry, shape, axis):
    if entry["type"] == "hevc" and hevc_available():
        pytest.skip(f"no HEVC encoder: {hevc_available()}")
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(np.float32)
    span = float(x.max() - x.min())
    for point in expand_codec_entry(entry):
        codec = make_codec(point, FeatureInfo(shape, axis))
        blob = codec.encode(x)
        assert isinstance(blob, bytes) and len(blob) > 0
        y = codec.decode(blob)
        assert y.shape == x.shape and y.dtype == np.float32
        err = float(np.abs(y - x).max())
        if codec.lossless:
            assert err == 0
        elif point["type"] in ("float16",):
            assert err < 1e-2
        elif point["params"].get("transform") == "dct":
            assert err < span / 2, point["label"]
        elif point["type"] in ("int8", "png") or point["params"].get("bits") == 8:
            assert err <= span / 255 * 0.51 + 1e-6, point["label"]    # 8-bit min-max: half a step
        else:
            assert err < span / 2, point["label"]                      # lossy, but the right tensor back


def test_block_map_tiles_each_split_without_padding():
    assert [map_block(n, n) for n in (14, 7, 4, 3, 2, 56, 28)] == [7, 7, 4, 3, 2, 8, 7]
    assert map_block(1, 1) == 2 and map_block(13, 13) == 8 and map_block(6, 9) == 3
    point, = expand_codec_entry({"type": "splitwire", "transform": "dct", "block": "map", "step": 0.05})
    assert point["line"] == "splitwire dct(map)"
    assert make_codec(point, FeatureInfo((1, 64, 4, 4), 1)).config.block == 4
    with pytest.raises(ValueError, match="needs transform: dct"):
        expand_codec_entry({"type": "splitwire", "bits": 4, "block": "map"})


def test_dct_codes_the_maps_of_channels_last_features():
    # Swin-T's features are N x H x W x C: the DCT must run over H x W, as on the channels-first tensor.
    x = np.random.default_rng(2).standard_normal((1, 8, 8, 6)).astype(np.float32)
    point, = expand_codec_entry({"type": "splitwire", "transform": "dct", "block": "map", "step": 0.05})
    codec = make_codec(point, FeatureInfo(x.shape, 3))
    blob = codec.encode(x)
    first = make_codec(point, FeatureInfo((1, 6, 8, 8), 1))
    assert blob == first.encode(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    info = cc.inspect(blob)
    assert info["shape"] == [1, 6, 8, 8] and info["transform"]["block"] == 8
    np.testing.assert_array_equal(codec.decode(blob), first.decode(blob).transpose(0, 2, 3, 1))


def test_registry_lists_every_codec():
    assert set(CODECS) == {"splitwire", "float32", "float16", "int8", "png", "jpeg", "webp", "hevc"}


def _row(bpe, score, typ="splitwire", label=None):
    return {"bpe": bpe, "kb_per_sample": bpe, "agreement": score, "top1": None, "metric": "agreement",
            "type": typ, "line": typ, "label": label or f"{typ}@{bpe}"}


def test_analysis_smallest_and_dominance():
    sw = [_row(0.5, 97.0), _row(0.8, 99.5), _row(2.0, 100.0)]
    assert smallest_within(sw, 100.0, 1.0)["bpe"] == 0.8
    assert smallest_within(sw, 100.0, 0.1)["bpe"] == 2.0
    assert smallest_within([_row(1, 50.0)], 100.0, 1.0) is None
    base = [_row(0.3, 60.0, "hevc"), _row(0.9, 99.0, "hevc"), _row(1.0, 99.9, "hevc")]
    d = dominance(sw, base)
    assert d["points"] == 3 and d["beaten_or_tied"] == 1
    assert [x["label"] for x in d["lost"]] == ["hevc@0.3", "hevc@1.0"]
    assert not any(x["above_reference"] for x in d["lost"])          # no reference given
    d = dominance(sw, base + [_row(2.5, 100.0, "hevc")], reference=99.8)
    assert [x["above_reference"] for x in d["lost"]] == [False, True]   # 99.9 > 99.8; 100 at 2.5 is tied


def test_report_flags_baseline_points_above_the_unsplit_model():
    """A lost baseline point that scores above the unsplit model is named as such in the report."""
    from splitwire.evaluation.report import render

    def point(typ, bpe, top1):
        return {"model": "m", "split": "s", "type": typ, "line": "HEVC x265 (tiled)" if typ == "hevc" else typ,
                "label": f"{typ}@{bpe}", "bpe": bpe, "kb_per_sample": bpe, "top1": top1, "agreement": None,
                "metric": "top1", "error": None}

    results = {"config": "t", "source": "t.yaml", "tolerance": 1.0, "wall_s": 60.0, "hevc": "x265",
               "machine": {"threads": 1}, "skipped_models": [],
               "models": [{"model": "m", "metric": "top1", "top1": 83.0, "sources": {"fashion_mnist": 10},
                           "inputs": 10, "labelled": 10,
                           "splits": [{"split": "s", "feature_shape": [4, 2, 2], "elements": 16,
                                       "split_top1": 83.0, "split_agreement": 100.0}]}],
               "points": [point("splitwire", 0.5, 82.5), point("splitwire", 2.0, 83.0),
                          point("hevc", 1.0, 82.9), point("hevc", 3.0, 83.4)]}
    text = render(results, {})
    assert "hevc@1.0 at 1.000 bpe scores 82.9 (splitwire best 82.5)\n" in text
    assert "hevc@3.0 at 3.000 bpe scores 83.4 (splitwire best 83.0; above the unsplit model's 83.0)" in text


def test_quick_sweep_end_to_end(tmp_path):
    """`splitwire eval --quick` writes JSON, CSV, plots and a report that agree with each other."""
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("matplotlib")
    if __import__("importlib").util.find_spec("foolbox") is None:
        pytest.skip("foolbox's sample images are not installed")
    from splitwire.cli import main

    out = tmp_path / "quick"
    md = tmp_path / "docs" / "RESULTS.md"
    assert main(["eval", "--quick", "--out", str(out), "--no-progress", "--report", str(md)]) == 0
    res = json.loads((out / "results.json").read_text())
    points = res["points"]
    assert points and not [p for p in points if p["error"] and "skipped" not in p["error"]]
    for p in points:
        if p["error"]:
            continue
        assert p["bytes_per_sample"] > 0
        assert p["bpe"] == pytest.approx(8 * p["bytes_per_sample"] / p["elements"])
        assert 0 <= p["agreement"] <= 100
        assert p["point_s"] >= p["tail_s"] >= 0   # the point's wall time includes its tail run
    f32 = [p for p in points if p["type"] == "float32"]
    assert f32 and all(p["bpe"] == pytest.approx(32.0) and p["agreement"] == 100.0 for p in f32)
    if any(m["model"] == "fmnist_vgg16" for m in res["models"]):      # optional: its point has the runner
        fisher = [p for p in points if "fisher-pca" in p["label"]]     # hand the tail over
        assert fisher and all(not p["error"] for p in fisher)
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(points) and rows[0]["model"] == points[0]["model"]
    for m in res["models"]:
        png = out / "plots" / f"{m['model']}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (md.parent / "results" / f"quick_{m['model']}.png").is_file()
    text = md.read_text()
    assert "# Rate-accuracy results" in text and "Smallest rate within" in text


def test_prior_2fold_codes_each_sample_with_the_prior_of_the_other_fold():
    import codec_cupy as cc

    (point,) = expand_codec_entry({"type": "splitwire", "prior": "2fold", "prior_tables": 8, "bits": 2})
    assert point["line"] == "splitwire uniform/tensor prior(T=8)"
    rng = np.random.default_rng(0)
    keep = rng.uniform(0.05, 0.9, (6, 4, 4))
    feats = np.stack([np.where(rng.random((6, 4, 4)) < keep, rng.exponential(1, (6, 4, 4)), 0)
                      for _ in range(20)]).astype(np.float32)
    codec = make_codec(point, FeatureInfo((1, 6, 4, 4), 1))
    with pytest.raises(RuntimeError, match="prepare"):
        codec.for_sample(0)
    codec.prepare(feats)
    even, odd = codec.for_sample(0), codec.for_sample(1)
    assert even is codec.for_sample(4) and odd is codec.for_sample(7) and even.prior.id != odd.prior.id
    want = cc.fit_prior([feats[i:i + 1] for i in range(1, 20, 2)], cc.CodecConfig(bits=2), tables=8)
    assert even.prior.id == want.id                                   # fitted on the odd samples only
    blob = even.encode(feats[:1])
    assert cc.inspect(blob)["prior"] == f"{want.id:#010x}"
    np.testing.assert_array_equal(even.decode(blob), cc.decode(cc.encode(feats[:1], cc.CodecConfig(bits=2))))
    plain = make_codec(expand_codec_entry({"type": "splitwire", "bits": 2})[0], FeatureInfo((1, 6, 4, 4), 1))
    plain.prepare(feats)
    assert plain.for_sample(3) is plain
    with pytest.raises(ValueError, match="two samples"):
        make_codec(point, FeatureInfo((1, 6, 4, 4), 1)).prepare(feats[:1])


@pytest.mark.parametrize("entry", [
    {"type": "splitwire", "prior": "2fold", "bits": 3},
    {"type": "splitwire", "transform": "dct", "block": "map", "prior": "2fold", "pca": 0.5, "step": 0.05},
])
def test_folds_fitted_in_forked_workers_equal_the_folds_fitted_here(entry, monkeypatch):
    """``prepare(features, workers=2)`` fits the two folds in forked processes (sizes permitting):
    the priors and projections that come back are the ones fitted in this process."""
    from splitwire.evaluation import codecs as ec

    rng = np.random.default_rng(2)
    feats = np.maximum(rng.standard_normal((16, 8, 8, 8)), 0).astype(np.float32)
    (point,) = expand_codec_entry(entry)
    here = make_codec(point, FeatureInfo((1, 8, 8, 8), 1))
    here.prepare(feats, workers=1)
    monkeypatch.setattr(ec, "PARALLEL_FIT_ELEMENTS", 1)
    forked = make_codec(point, FeatureInfo((1, 8, 8, 8), 1))
    forked.prepare(feats, workers=2)
    for i in (0, 1):
        a, b = here.for_sample(i), forked.for_sample(i)
        assert a.encode(feats[i:i + 1]) == b.encode(feats[i:i + 1])
        if "pca" in entry:
            np.testing.assert_array_equal(a.projection.basis, b.projection.basis)
            a, b = a.coder, b.coder
        assert bytes(a.prior.data) == bytes(b.prior.data)


def test_pca_codes_each_fold_on_the_components_of_the_other_fold():
    """``pca: f``: the projection (and a ``prior: 2fold``) of each sample are fitted on the other
    fold; the blob carries ceil(f * C) channels; channels-last features project along their axis."""
    import codec_cupy as cc
    from splitwire.projection import fit_projection

    (point,) = expand_codec_entry({"type": "splitwire", "transform": "dct", "block": "map", "frequency_weight": 0.5,
                                   "prior": "2fold", "pca": 0.25, "step": 0.05})
    assert point["line"] == "splitwire dct(map) w=0.5 pca=0.25 prior"
    rng = np.random.default_rng(1)
    latent = rng.standard_normal((20, 2, 8, 8))
    feats = np.maximum(np.einsum("nrhw,cr->nchw", latent, rng.standard_normal((8, 2))), 0).astype(np.float32)
    codec = make_codec(point, FeatureInfo((1, 8, 8, 8), 1))
    with pytest.raises(RuntimeError, match="prepare"):
        codec.for_sample(0)
    codec.prepare(feats)
    even, odd = codec.for_sample(0), codec.for_sample(1)
    assert even is codec.for_sample(2) and odd is codec.for_sample(3)
    want = fit_projection(feats[1::2], 2)                              # fitted on the odd samples
    np.testing.assert_array_equal(even.projection.basis, want.basis)
    blob = even.encode(feats[:1])
    info = cc.inspect(blob)
    assert info["shape"] == [1, 2, 8, 8] and info["prior"] == f"{even.coder.prior.id:#010x}"
    back = even.decode(blob)
    assert back.shape == (1, 8, 8, 8) and back.min() >= 0
    np.testing.assert_array_equal(back, want.reconstruct(cc.decode(blob, prior=even.coder.prior)))
    assert np.abs(back - feats[:1]).mean() < 0.5 * np.abs(feats[:1]).mean()
    last = np.ascontiguousarray(np.moveaxis(feats, 1, -1))          # Swin-T's layout
    plain = make_codec(expand_codec_entry({"type": "splitwire", "pca": 0.5, "bits": 4})[0], FeatureInfo((1, 8, 8, 8), 3))
    plain.prepare(last)
    blob = plain.for_sample(1).encode(last[1:2])
    assert cc.inspect(blob)["shape"] == [1, 8, 8, 4] and plain.for_sample(1).decode(blob).shape == (1, 8, 8, 8)
    with pytest.raises(ValueError, match="two samples"):
        make_codec(point, FeatureInfo((1, 8, 8, 8), 1)).prepare(feats[:1])


def test_fisher_pca_fits_each_fold_with_the_tail_s_fisher_of_the_other_fold():
    """``projection: fisher``: fold f's projection is the Fisher-weighted PCA of the other fold,
    with the tail's Fisher on that fold, computed once per split (FoldFisher) and shared by points."""
    torch = pytest.importorskip("torch")
    from splitwire.evaluation.codecs import FoldFisher
    from splitwire.projection import channel_fisher, fit_projection

    entry = {"type": "splitwire", "transform": "dct", "block": "map", "prior": "2fold", "pca": 0.25,
             "projection": "fisher", "step": [0.05, 0.07]}
    points = expand_codec_entry(entry)
    assert points[0]["line"] == "splitwire dct(map) fisher-pca=0.25 prior"
    rng = np.random.default_rng(3)
    feats = np.maximum(rng.standard_normal((20, 8, 8, 8)), 0).astype(np.float32)
    torch.manual_seed(0)
    tail = torch.nn.Sequential(torch.nn.Conv2d(8, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 36, 5)).eval()
    with pytest.raises(ValueError, match="tail"):
        make_codec(points[0], FeatureInfo((1, 8, 8, 8), 1))
    fisher = FoldFisher(tail, feats, 1, batch=6)
    codecs = [make_codec(p, FeatureInfo((1, 8, 8, 8), 1, fisher=fisher)) for p in points]
    for c in codecs:
        c.prepare(feats)
    odd = channel_fisher(tail, feats[1::2])
    np.testing.assert_allclose(fisher.of_fold(1, feats), odd, rtol=1e-6)
    assert fisher.of_fold(1, feats) is fisher.of_fold(1, feats)                 # computed once
    want = fit_projection(feats[1::2], 2, fisher=odd)                           # sample 0 is even
    even = codecs[0].for_sample(0)
    np.testing.assert_allclose(even.projection.basis, want.basis, rtol=1e-5, atol=1e-6)
    assert even.projection.method == "fisher"
    assert even.decode(even.encode(feats[:1])).shape == (1, 8, 8, 8)
    with pytest.raises(ValueError, match="not the samples"):
        fisher.of_fold(0, feats[:10])
