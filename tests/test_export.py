"""Splitting, ONNX export with the numeric check, and repository generation (no server)."""

import hashlib
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from splitwire import models, repository  # noqa: E402
from splitwire.export import VerificationError, export_onnx, export_split  # noqa: E402
from splitwire.split import SplitError, split, split_points  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    return models.load("tiny_resnet")


def test_split_any_module_matches_the_whole_model(tiny):
    x = torch.randn(3, *tiny.input_shape)
    for layer in ("stem", "layer1", "layer1.0", "layer2", "layer3", "pool"):
        head, tail, point = split(tiny.module, layer, x[:1])
        with torch.no_grad():
            assert torch.allclose(tail(head(x)), tiny.module(x), atol=1e-5), layer
        assert point.name == layer


def test_cuts_inside_a_residual_block_are_refused_with_the_reason(tiny):
    x = torch.randn(1, *tiny.input_shape)
    with pytest.raises(SplitError, match="residual"):
        split(tiny.module, "layer1.0.bn1", x)
    with pytest.raises(SplitError, match="no module named"):
        split(tiny.module, "layer9", x)
    names = [p.name for p in split_points(tiny.module, x)]
    assert "layer1.0.bn1" not in names and "layer1.0.conv1" not in names
    assert names.index("stem") < names.index("layer1") < names.index("layer2") < names.index("layer3")


def test_shared_module_is_refused():
    class Shared(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 1)
            self.act = torch.nn.ReLU()

        def forward(self, x):
            return self.act(self.conv(self.act(x)))

    with pytest.raises(SplitError, match="more than once"):
        split(Shared(), "act", torch.randn(1, 3, 4, 4))


def test_batch_size_crossing_the_cut_is_recomputed():
    class Flat(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.fc = torch.nn.Linear(4 * 6 * 6, 5)

        def forward(self, x):
            bs = x.size(0)  # used after the cut, as EfficientNet's forward does
            return self.fc(self.conv(x).view(bs, -1))

    m = Flat().eval()
    head, tail, _ = split(m, "conv", torch.randn(1, 3, 8, 8))
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(tail(head(x)), m(x), atol=1e-6)


def test_export_onnx_checks_numerically_with_dynamic_batch(tiny, tmp_path):
    head, tail, point, err, out_shape = export_onnx(tiny.module, "layer2", tmp_path, tiny.input_shape)
    assert err < 1e-4 and out_shape == (10,)
    import onnxruntime as ort
    h = ort.InferenceSession(str(head))
    for b in (1, 5):
        f = h.run(None, {"input": np.random.randn(b, *tiny.input_shape).astype(np.float32)})[0]
        assert f.shape == (b, *point.shape[1:])


def test_export_refuses_an_unfaithful_export_before_writing(tiny, tmp_path, monkeypatch):
    import splitwire.export as ex

    real = ex._ort

    class Skewed:
        def __init__(self, s):
            self.s = s

        def run(self, names, feeds):
            return [o + 1.0 for o in self.s.run(names, feeds)]

    monkeypatch.setattr(ex, "_ort", lambda p: Skewed(real(p)) if p.name == "tail.onnx" else real(p))
    out = tmp_path / "repo"
    with pytest.raises(VerificationError, match="differs"):
        export_split(tiny.module, "layer1", out, name="tiny", input_shape=tiny.input_shape)
    assert not out.exists()


def test_repository_layout_and_published_metadata(tiny, tmp_path):
    res = export_split(tiny.module, "layer2", tmp_path, name="tiny", input_shape=tiny.input_shape, bits=6,
                       preprocess=tiny.preprocess, labels=tiny.labels, max_batch=4)
    assert sorted(res.models) == ["tiny", "tiny_decoder", "tiny_head", "tiny_tail"]
    for f in ("tiny/config.pbtxt", "tiny_decoder/1/model.py", "tiny_decoder/1/rawframe.py",
              "tiny_tail/1/model.onnx", "tiny_tail/1/model.py", "tiny_head/1/head.onnx"):
        assert (tmp_path / f).is_file(), f
    ens = (tmp_path / "tiny" / "config.pbtxt").read_text()
    assert 'platform: "ensemble"' in ens and "TYPE_UINT8" in ens and "dims: [ -1 ]" in ens
    meta = json.loads((tmp_path / "tiny" / "splitwire.json").read_text())
    assert meta["codec"]["bits"] == 6 and meta["feature_shape"] == [32, 16, 16]
    assert meta["labels"] == tiny.labels and meta["input"]["shape"] == [3, 64, 64]
    dec = (tmp_path / "tiny_decoder" / "config.pbtxt").read_text()
    assert "KIND_CPU" in dec and "max_batch_size: 0" in dec and str(4 * 32 * 16 * 16) in dec
    tail = (tmp_path / "tiny_tail" / "config.pbtxt").read_text()
    assert 'backend: "python"' in tail and "max_batch_size: 4" in tail and "dynamic_batching" in tail

    export_split(tiny.module, "layer2", tmp_path, name="tiny", input_shape=tiny.input_shape,
                 tail_backend="onnxruntime", device="gpu")
    tail = (tmp_path / "tiny_tail" / "config.pbtxt").read_text()
    assert 'backend: "onnxruntime"' in tail and "KIND_GPU" in tail
    assert not (tmp_path / "tiny_tail" / "1" / "model.py").exists()
    assert "KIND_GPU" in (tmp_path / "tiny_decoder" / "config.pbtxt").read_text()


def test_repository_rejects_bad_names(tmp_path):
    with pytest.raises(ValueError, match="must match"):
        repository.check_name("../evil")


def test_efficientnet_lite0_middle_block_is_a_split_point():
    pytest.importorskip("efficientnet_lite_pytorch")
    spec = models.load("efficientnet_lite0")
    names = [p.name for p in split_points(spec.module, torch.zeros(1, *spec.input_shape))]
    assert "_blocks.8" in names and "_swish" not in names  # _swish runs twice


def test_cli_list_and_export(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "splitwire", "export", "--model", "tiny_resnet", "--list"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "layer1" in r.stdout and "(default)" in r.stdout and "layer1.0.bn1" not in r.stdout
    r = subprocess.run([sys.executable, "-m", "splitwire", "export", "--model", "tiny_resnet", "--split",
                        "layer1.0.bn1", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "residual" in r.stderr and not any(tmp_path.iterdir())
    r = subprocess.run([sys.executable, "-m", "splitwire", "export", "--model", "tiny_resnet", "--split", "layer2",
                        "--bits", "4", "--out", str(tmp_path), "--name", "tr"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "tr" / "config.pbtxt").is_file() and "splitwire serve" in r.stdout
    r = subprocess.run([sys.executable, "-m", "splitwire", "export", "--model", "tiny_resnet", "--split", "layer2",
                        "--transform", "dct", "--block", "1", "--out", str(tmp_path), "--name", "bad"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "block" in r.stderr and not (tmp_path / "bad").exists()


def test_published_dct_settings_reach_the_client_config(tiny, tmp_path):
    import codec_cupy as cc
    from client.split_client import ClientError, codec_config

    export_split(tiny.module, "layer2", tmp_path, name="tiny", input_shape=tiny.input_shape, transform="dct",
                 block=4, step=0.05, frequency_weight=0.25)
    codec = json.loads((tmp_path / "tiny" / "splitwire.json").read_text())["codec"]
    assert codec["transform"] == "dct" and codec["block"] == 4 and codec["step"] == 0.05
    cfg = codec_config(cc, codec)
    assert (cfg.transform, cfg.block, cfg.step, cfg.frequency_weight, cfg.bits) == ("dct", 4, 0.05, 0.25, 8)
    with pytest.raises(ClientError, match="unknown codec setting"):
        codec_config(cc, {**codec, "stepp": 0.1})
    with pytest.raises(ClientError, match="step"):
        codec_config(cc, {**codec, "step": 2.0})


def test_dct_export_of_channels_last_features_is_refused(tmp_path):
    import codec_cupy as cc

    class ToChannelsLast(torch.nn.Module):
        def forward(self, x):
            return x.permute(0, 2, 3, 1)

    class Model(torch.nn.Module):       # Swin-like: the features at the cut are N x H x W x C
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.nhwc = ToChannelsLast()
            self.fc = torch.nn.Linear(4, 5)

        def forward(self, x):
            return self.fc(self.nhwc(self.conv(x)).mean((1, 2)))

    with pytest.raises(cc.ConfigError, match="channels-last"):
        export_split(Model().eval(), "nhwc", tmp_path, name="cl", input_shape=(3, 8, 8), transform="dct",
                     block=4, channel_axis=3)
    assert not (tmp_path / "cl").exists()
    export_split(Model().eval(), "nhwc", tmp_path, name="cl", input_shape=(3, 8, 8), channel_axis=3)
    assert json.loads((tmp_path / "cl" / "splitwire.json").read_text())["codec"]["axis"] == -1


def test_calibrated_export_publishes_the_fixed_entropy_model(tiny, tmp_path):
    import codec_cupy as cc
    from client.split_client import codec_config

    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((1, *tiny.input_shape)).astype(np.float32) for _ in range(3)]
    res = export_split(tiny.module, "layer2", tmp_path, name="cal", input_shape=tiny.input_shape, bits=4,
                       calibration=inputs)
    meta = json.loads((tmp_path / "cal" / "splitwire.json").read_text())
    assert res.codec == meta["codec"]
    codec = meta["codec"]
    assert meta["calibration"] == {"inputs": 3}
    assert {"pack", "tables", "prob_bits"} <= set(codec)
    cfg = codec_config(cc, codec)
    # the same choice as calibrating the exported head's features directly
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "cal_head" / "1" / "head.onnx"), providers=["CPUExecutionProvider"])
    feats = [session.run(None, {"input": x})[0] for x in inputs]
    want = cc.calibrate(feats, cc.CodecConfig(bits=4))
    assert (cfg.pack, cfg.tables, cfg.prob_bits) == (want.pack, want.tables, want.prob_bits)
    with pytest.raises(cc.ConfigError, match="at least one input"):
        export_split(tiny.module, "layer2", tmp_path, name="none", input_shape=tiny.input_shape, calibration=[])
    uncalibrated = export_split(tiny.module, "layer2", tmp_path, name="plain", input_shape=tiny.input_shape)
    plain = json.loads((uncalibrated.repository / "plain" / "splitwire.json").read_text())
    assert "calibration" not in plain and "pack" not in plain["codec"] and "search" not in plain["codec"]
    export_split(tiny.module, "layer2", tmp_path, name="full", input_shape=tiny.input_shape, search="full")
    full = json.loads((tmp_path / "full" / "splitwire.json").read_text())["codec"]
    assert full["search"] == "full" and codec_config(cc, full).search == "full"
    with pytest.raises(cc.ConfigError, match="search"):
        export_split(tiny.module, "layer2", tmp_path, name="bad", input_shape=tiny.input_shape, search="best")


def _image_folder(path, count: int, seed: int):
    """``count`` random 80 x 96 RGB PNGs in a new folder ``path``."""
    from PIL import Image

    path.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)).save(path / f"im{i}.png")
    return path


def test_cli_export_calibrates_on_a_folder_of_images(tmp_path):
    import subprocess
    import sys

    images = _image_folder(tmp_path / "images", 2, seed=1)
    (images / "notes.txt").write_text("not an image")
    out = tmp_path / "repo"
    r = subprocess.run([sys.executable, "-m", "splitwire", "export", "--model", "tiny_resnet", "--split", "layer2",
                        "--bits", "4", "--out", str(out), "--name", "tr", "--calibrate", str(images)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "calibrated the codec on 2 image(s)" in r.stdout
    codec = json.loads((out / "tr" / "splitwire.json").read_text())["codec"]
    assert {"pack", "tables", "prob_bits"} <= set(codec)
    r = subprocess.run([sys.executable, "-m", "splitwire", "export", "--model", "tiny_resnet", "--split", "layer2",
                        "--out", str(out), "--name", "tr2", "--calibrate", str(tmp_path / "missing.png")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "--calibrate" in r.stderr and not (out / "tr2").exists()
    r = subprocess.run([sys.executable, "-m", "splitwire", "export", "--model", "tiny_resnet", "--split", "layer2",
                        "--out", str(out), "--name", "tr3", "--calibrate", str(images / "notes.txt")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "--calibrate" in r.stderr and "notes.txt" in r.stderr and not (out / "tr3").exists()


def test_export_with_a_prior_places_it_beside_the_decoder_and_the_head(tiny, tmp_path):
    import onnxruntime as ort

    import codec_cupy as cc

    rng = np.random.default_rng(2)
    inputs = [rng.standard_normal((1, *tiny.input_shape)).astype(np.float32) for _ in range(6)]
    res = export_split(tiny.module, "layer2", tmp_path, name="pri", input_shape=tiny.input_shape, bits=2,
                       prior=inputs, prior_tables=8)
    meta = json.loads((tmp_path / "pri" / "splitwire.json").read_text())
    assert res.prior == meta["prior"] and meta["prior"]["inputs"] == 6 and meta["prior"]["bits"] == 2
    session = ort.InferenceSession(str(tmp_path / "pri_head" / "1" / "head.onnx"), providers=["CPUExecutionProvider"])
    feats = [session.run(None, {"input": x})[0] for x in inputs]
    want = cc.fit_prior(feats, cc.CodecConfig(bits=2), tables=8)              # the exported head's features
    for model in ("pri_decoder", "pri_head"):
        data = (tmp_path / model / "1" / "prior.swprior").read_bytes()
        assert data == want.to_bytes() and f"{want.id:#010x}" == meta["prior"]["id"]
    assert hashlib.sha256(data).hexdigest() == meta["prior"]["sha256"] and meta["prior"]["bytes"] == len(data)
    assert 'name: "PRIOR"' in (tmp_path / "pri_head" / "config.pbtxt").read_text()
    assert 'key: "codec_axis"' in (tmp_path / "pri_decoder" / "config.pbtxt").read_text()
    with pytest.raises(cc.ConfigError, match="at least one input"):
        export_split(tiny.module, "layer2", tmp_path, name="none", input_shape=tiny.input_shape, prior=[])
    with pytest.raises(cc.ConfigError, match="bits >= 2"):
        export_split(tiny.module, "layer2", tmp_path, name="dct", input_shape=tiny.input_shape, prior=inputs,
                     transform="dct", bits=1)
    assert not (tmp_path / "dct").exists()
    res = export_split(tiny.module, "layer2", tmp_path, name="dct", input_shape=tiny.input_shape, prior=inputs,
                       transform="dct", bits=4, block=4, step=0.1)          # a DCT prior: blocks x frequencies
    prior = cc.Prior.load(tmp_path / "dct_decoder" / "1" / "prior.swprior")
    blob = cc.encode(feats[0], cc.CodecConfig(bits=4, transform="dct", block=4, step=0.1), prior=prior)
    assert blob[4] == 3 and cc.inspect(blob)["transform"]["block"] == 4 and res.prior["id"] == f"{prior.id:#010x}"
    assert (res.prior["transform"], res.prior["block"]) == ("dct", 4)
    assert 'key: "codec_block" value: { string_value: "4" }' in (tmp_path / "dct_decoder" / "config.pbtxt").read_text()
    plain = export_split(tiny.module, "layer2", tmp_path, name="plain", input_shape=tiny.input_shape)
    assert plain.prior is None and not (tmp_path / "plain_decoder" / "1" / "prior.swprior").exists()
    assert "PRIOR" not in (tmp_path / "plain_head" / "config.pbtxt").read_text()


def test_cli_export_fits_a_prior_on_images(tmp_path):
    import subprocess
    import sys

    images = _image_folder(tmp_path / "images", 3, seed=3)
    out = tmp_path / "repo"
    r = subprocess.run([sys.executable, "-m", "splitwire", "export", "--model", "tiny_resnet", "--split", "layer2",
                        "--bits", "2", "--out", str(out), "--name", "tp", "--prior", str(images),
                        "--prior-tables", "4"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "fitted a shared prior on 3 image(s)" in r.stdout and "held out" in r.stdout
    assert json.loads((out / "tp" / "splitwire.json").read_text())["prior"]["tables"] <= 4
    r = subprocess.run([sys.executable, "-m", "splitwire", "export", "--model", "tiny_resnet", "--split", "layer2",
                        "--out", str(out), "--name", "tp2", "--prior", str(tmp_path / "missing")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "--prior" in r.stderr and not (out / "tp2").exists()


def test_export_folds_a_channel_projection_into_the_head_and_the_tail(tiny, tmp_path):
    """The head ONNX ends with the projection (K channels travel), the tail ONNX starts with the
    reconstruction; a prior and the decoder's limits see the projected features."""
    import onnxruntime as ort

    import codec_cupy as cc
    from splitwire.projection import fit_projection

    rng = np.random.default_rng(7)
    inputs = [rng.standard_normal((1, *tiny.input_shape)).astype(np.float32) for _ in range(6)]
    head, tail, point = split(tiny.module, "layer2", torch.from_numpy(inputs[0]))
    channels = point.shape[1]
    res = export_split(tiny.module, "layer2", tmp_path, name="pj", input_shape=tiny.input_shape, bits=4,
                       projection=inputs, components=3, prior=inputs, prior_tables=4)
    meta = json.loads((tmp_path / "pj" / "splitwire.json").read_text())
    assert meta["feature_shape"] == [3, *point.shape[2:]] and res.projection == meta["projection"]
    p = meta["projection"]
    assert (p["method"], p["channels"], p["components"], p["inputs"]) == ("pca", channels, 3, 6)
    assert 0 < p["energy"] <= 1 and p["nonnegative"] and 0 <= p["held_out_agreement"] <= 100
    opts = ["CPUExecutionProvider"]
    h = ort.InferenceSession(str(tmp_path / "pj_head" / "1" / "head.onnx"), providers=opts)
    t = ort.InferenceSession(str(tmp_path / "pj_tail" / "1" / "model.onnx"), providers=opts)
    x = np.concatenate(inputs)
    with torch.no_grad():
        feats = head(torch.from_numpy(x)).numpy()
    want = fit_projection(feats, 3)                                  # the same fit, in NumPy
    y = h.run(None, {"input": x})[0]
    np.testing.assert_allclose(y, want.project(feats), atol=1e-3)
    with torch.no_grad():
        logits = tail(torch.from_numpy(want.reconstruct(y))).numpy()
    np.testing.assert_allclose(t.run(None, {"features": y})[0], logits, atol=1e-3)
    prior = cc.Prior.load(tmp_path / "pj_decoder" / "1" / "prior.swprior")
    assert prior.positions == 3 * int(np.prod(point.shape[2:]))     # fitted on the K projected channels
    shape = json.dumps([3, *point.shape[2:]])
    assert f'key: "feature_shape" value: {{ string_value: "{shape}" }}' in (tmp_path / "pj_decoder" / "config.pbtxt").read_text()
    with pytest.raises(cc.ConfigError, match="both components"):
        export_split(tiny.module, "layer2", tmp_path, name="half", input_shape=tiny.input_shape, components=3)
    with pytest.raises(cc.ConfigError, match="at least one input"):
        export_split(tiny.module, "layer2", tmp_path, name="none", input_shape=tiny.input_shape, projection=[],
                     components=3)
    for bad in (0, -2, 2.5, True):
        with pytest.raises(cc.ConfigError, match="components must be an integer"):
            export_split(tiny.module, "layer2", tmp_path, name="bad", input_shape=tiny.input_shape, projection=inputs,
                         components=bad)
    assert not any((tmp_path / n).exists() for n in ("half", "none", "bad"))


def test_export_folds_a_fisher_weighted_projection(tiny, tmp_path):
    """``projection_weighting="fisher"``: the head ONNX projects on the Fisher-weighted components of
    the tail and the tail ONNX reconstructs through the inverse whitening, as splitwire.projection does."""
    import onnxruntime as ort

    import codec_cupy as cc
    from splitwire.projection import channel_fisher, fit_projection

    rng = np.random.default_rng(8)
    inputs = [rng.standard_normal((1, *tiny.input_shape)).astype(np.float32) for _ in range(6)]
    head, tail, point = split(tiny.module, "layer2", torch.from_numpy(inputs[0]))
    res = export_split(tiny.module, "layer2", tmp_path, name="fp", input_shape=tiny.input_shape, bits=4,
                       projection=inputs, components=3, projection_weighting="fisher")
    assert (res.projection["method"], res.projection["components"]) == ("fisher", 3)
    x = np.concatenate(inputs)
    with torch.no_grad():
        feats = head(torch.from_numpy(x)).numpy()
    want = fit_projection(feats, 3, fisher=channel_fisher(tail, feats))
    opts = ["CPUExecutionProvider"]
    y = ort.InferenceSession(str(tmp_path / "fp_head" / "1" / "head.onnx"), providers=opts).run(None, {"input": x})[0]
    np.testing.assert_allclose(y, want.project(feats), rtol=1e-3, atol=1e-3)
    with torch.no_grad():
        logits = tail(torch.from_numpy(want.reconstruct(y))).numpy()
    t = ort.InferenceSession(str(tmp_path / "fp_tail" / "1" / "model.onnx"), providers=opts)
    np.testing.assert_allclose(t.run(None, {"features": y})[0], logits, rtol=1e-3, atol=1e-3)
    with pytest.raises(cc.ConfigError, match="weighting"):
        export_split(tiny.module, "layer2", tmp_path, name="bad", input_shape=tiny.input_shape, projection=inputs,
                     components=3, projection_weighting="lda")


def test_a_projected_channels_last_split_sends_channels_first_and_takes_the_dct(tmp_path):
    """Swin-T's maps are channels last (N, H, W, C); its projected head emits (N, K, H, W), so the
    DCT (which codes the last two dimensions as the maps) applies where it was refused before."""
    import onnxruntime as ort

    import codec_cupy as cc

    spec = models.load("fmnist_swin_t")
    rng = np.random.default_rng(8)
    inputs = [rng.uniform(-1, 1, (1, *spec.input_shape)).astype(np.float32) for _ in range(6)]
    with pytest.raises(cc.ConfigError, match="channels-first"):
        export_split(spec.module, "features.1", tmp_path, name="sw", input_shape=spec.input_shape,
                     channel_axis=spec.channel_axis, transform="dct", block=7)
    res = export_split(spec.module, "features.1", tmp_path, name="sw", input_shape=spec.input_shape,
                       channel_axis=spec.channel_axis, transform="dct", block=7, step=0.05,
                       projection=inputs, components=6)
    meta = json.loads((tmp_path / "sw" / "splitwire.json").read_text())
    assert meta["feature_shape"] == [6, 14, 14] and meta["codec"]["axis"] == 1 and res.projection["channels"] == 24
    opts = ["CPUExecutionProvider"]
    h = ort.InferenceSession(str(tmp_path / "sw_head" / "1" / "head.onnx"), providers=opts)
    t = ort.InferenceSession(str(tmp_path / "sw_tail" / "1" / "model.onnx"), providers=opts)
    x = np.concatenate(inputs)
    y = h.run(None, {"input": x})[0]
    assert y.shape == (6, 6, 14, 14)
    blob = cc.encode(y[:1], cc.CodecConfig(transform="dct", block=7, step=0.05))
    assert t.run(None, {"features": cc.decode(blob)})[0].shape == (1, 10)
    with torch.no_grad():
        want = spec.module(torch.from_numpy(x)).numpy()
    assert t.run(None, {"features": y})[0].shape == want.shape


def test_cli_export_projects_on_principal_components(tmp_path):
    import subprocess
    import sys

    images = _image_folder(tmp_path / "images", 4, seed=5)
    out = tmp_path / "repo"
    r = subprocess.run([sys.executable, "-m", "splitwire", "export", "--model", "tiny_resnet", "--split", "layer2",
                        "--out", str(out), "--name", "pc", "--components", "2", "--project", str(images)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "projected on 2 of" in r.stdout and "held out" in r.stdout
    assert json.loads((out / "pc" / "splitwire.json").read_text())["feature_shape"][0] == 2
    r = subprocess.run([sys.executable, "-m", "splitwire", "export", "--model", "tiny_resnet", "--split", "layer2",
                        "--out", str(out), "--name", "pf", "--components", "2", "--project", str(images),
                        "--projection-weighting", "fisher"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "projected on 2 of" in r.stdout and "Fisher-weighted principal components" in r.stdout
    assert json.loads((out / "pf" / "splitwire.json").read_text())["projection"]["method"] == "fisher"
    r = subprocess.run([sys.executable, "-m", "splitwire", "export", "--model", "tiny_resnet", "--split", "layer2",
                        "--out", str(out), "--name", "pc2", "--components", "2"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 2 and "--project" in r.stderr and not (out / "pc2").exists()
    r = subprocess.run([sys.executable, "-m", "splitwire", "export", "--model", "tiny_resnet", "--split", "layer2",
                        "--out", str(out), "--name", "pc3", "--components", "0", "--project", str(images)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "components must be an integer >= 1" in r.stderr and not (out / "pc3").exists()


def test_client_uses_a_prior_only_with_the_settings_it_was_fitted_for():
    """A prior's positions depend on the bit depth and, with a transform, on the block size: the
    client codes with it only under those settings (and where the export's held-out gain says so)."""
    import codec_cupy as cc
    from client.split_client import ClientError, SplitClient

    c = SplitClient.__new__(SplitClient)
    c.model = "m"
    c.meta = {"prior": {"bits": 8, "transform": "dct", "block": 7, "held_out": {"ratio": 0.7}}}
    c.codec_config = cc.CodecConfig(transform="dct", block=7)
    assert c._wants_prior(None) and not c._wants_prior(False)
    c.codec_config = cc.CodecConfig(transform="dct", block=8)
    assert not c._wants_prior(None)
    with pytest.raises(ClientError, match="blocks of 7"):
        c._wants_prior(True)
    c.codec_config = cc.CodecConfig(bits=8)
    assert not c._wants_prior(None)
    c.meta = {"prior": {"bits": 8, "held_out": {"ratio": 1.2}}}
    assert not c._wants_prior(None) and c._wants_prior(True)
    with pytest.raises(ClientError, match="without a transform"):
        c.codec_config = cc.CodecConfig(transform="dct")
        c._wants_prior(True)
