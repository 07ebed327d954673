"""End to end against a real tritonserver (the one bundled in nvidia-pytriton).

One server for the module: EfficientNet-Lite0 cut after ``_blocks.8``, 8-bit codec, the
Python-backend tail. Every request loop here is bounded in count and time, only loopback
addresses are used, and the fixture always stops the server.
"""

import concurrent.futures as cf
import re
import signal
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from conftest import private_head_cache, running_server, triton_available  # noqa: E402

pytestmark = pytest.mark.triton

if not triton_available():
    pytest.skip("needs nvidia-pytriton (bundled tritonserver) and tritonclient", allow_module_level=True)

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch")

import codec_cupy as cc  # noqa: E402
import codec_cupy as cc  # noqa: E402
from client import ClientError, SplitClient, rawframe  # noqa: E402
from splitwire import models, samples  # noqa: E402
from splitwire.export import export_split  # noqa: E402
from splitwire.serve import resolve_ports  # noqa: E402

MODEL = "effnet"
PRIOR_MODEL = "effnet_prior"          # the same split at 2 bits with a shared prior (fitted on images 10-19)
DCT_PRIOR_MODEL = "effnet_dct_prior"  # ... and with the DCT and a prior over its blocks x frequencies
PROJECTED_MODEL = "effnet_pca"        # ... the DCT and a prior on 28 principal components of the 112 channels


@pytest.fixture(scope="module")
def spec():
    return models.load("efficientnet_lite0")


@pytest.fixture(scope="module")
def repo(spec, tmp_path_factory):
    out = tmp_path_factory.mktemp("model_repository")
    export_split(spec.module, "_blocks.8", out, name=MODEL, input_shape=spec.input_shape, bits=8,
                 preprocess=spec.preprocess, labels=spec.labels, max_batch=8)
    from client.preprocess import load_image
    fit = [load_image(path, spec.preprocess) for path, _ in samples.imagenet_samples()[10:]]
    export_split(spec.module, "_blocks.8", out, name=PRIOR_MODEL, input_shape=spec.input_shape, bits=2,
                 preprocess=spec.preprocess, labels=spec.labels, max_batch=8, prior=fit)
    export_split(spec.module, "_blocks.8", out, name=DCT_PRIOR_MODEL, input_shape=spec.input_shape,
                 transform="dct", block=7, step=0.04, preprocess=spec.preprocess, labels=spec.labels,
                 max_batch=8, prior=fit)
    export_split(spec.module, "_blocks.8", out, name=PROJECTED_MODEL, input_shape=spec.input_shape,
                 transform="dct", block=7, step=0.04, preprocess=spec.preprocess, labels=spec.labels,
                 max_batch=8, prior=fit, projection=fit, components=28)
    return out


@pytest.fixture(scope="module")
def server(repo, tmp_path_factory):
    with running_server(repo, tmp_path_factory) as s:
        yield s


@pytest.fixture(scope="module")
def head_cache(tmp_path_factory):
    with private_head_cache(tmp_path_factory) as path:
        yield path


@pytest.fixture(scope="module")
def client(server, head_cache):
    c = SplitClient(server.url, MODEL, timeout_s=60)
    yield c
    c.close()


@pytest.fixture(scope="module")
def images(client, spec):
    """(name, preprocessed input, unsplit top-1) for foolbox's 20 ImageNet images."""
    out = []
    for path, _label in samples.imagenet_samples():
        x = client.preprocess(path)
        with torch.no_grad():
            out.append((path.name, x, int(spec.module(torch.from_numpy(x)).argmax())))
    return out


def test_split_top1_equals_unsplit_model_on_every_image_at_8_bits(client, images):
    assert len(images) == 20
    mismatches = []
    for name, x, want in images:
        y, t = client.infer_timed(x)
        assert y.shape == (1, 1000)
        assert t.bytes_sent < t.raw_bytes / 3  # the blob, not the float32 features
        if int(y.argmax()) != want:
            mismatches.append(name)
    assert not mismatches


def test_server_publishes_what_the_client_needs(client, server):
    meta = client.meta
    assert meta["input"]["shape"] == [3, 224, 224] and meta["feature_shape"] == [112, 14, 14]
    assert meta["codec"]["bits"] == 8 and len(meta["labels"]) == 1000
    assert meta["preprocess"]["mean"] == [127.0] * 3
    assert client.classify(samples.imagenet_samples()[0][0], k=5)[0][0][0] == "Bullmastiff"


def _infer_raw(server, array, dtype):
    import tritonclient.http as th

    c = th.InferenceServerClient(server.url, network_timeout=60)
    try:
        inp = th.InferInput("BLOB", list(array.shape), dtype)
        inp.set_data_from_numpy(array)
        return c.infer(MODEL, [inp]).as_numpy("LOGITS")
    finally:
        c.close()


def _status(exc) -> str:
    return str(exc.status())


def test_hostile_payloads_get_a_4xx_naming_the_problem_and_the_server_goes_on(server, client, images):
    from tritonclient.utils import InferenceServerException

    x = images[0][1]
    blob = np.frombuffer(client.encode(client.head(x)), np.uint8)
    crc_bad = blob.copy()
    crc_bad[len(blob) // 2] ^= 0xFF
    bomb = np.frombuffer(cc.encode(np.zeros((1, 112, 14, 14 * 64), np.float32), cc.CodecConfig(bits=8)), np.uint8)
    cases = {
        "truncated": (blob[: len(blob) - 37], "UINT8", r"truncated|CRC"),
        "corrupted": (crc_bad, "UINT8", r"checksum.*CRC32C"),
        "oversized": (bomb, "UINT8", r"too_large.*elements"),
        "wrong dtype": (blob[:64].astype(np.float32), "FP32", r"data-type is 'FP32'.*expects 'UINT8'"),
        "not a blob": (np.frombuffer(b"hello world, not a codec blob", np.uint8), "UINT8", r"not_a_blob"),
    }
    good = _infer_raw(server, blob, "UINT8")
    for what, (payload, dtype, pattern) in cases.items():
        with pytest.raises(InferenceServerException) as e:
            _infer_raw(server, payload, dtype)
        assert _status(e.value) == "400", (what, e.value)
        assert re.search(pattern, e.value.message()), (what, e.value.message())
        # The next valid request is answered, with the same result as before.
        np.testing.assert_array_equal(_infer_raw(server, blob, "UINT8"), good)


def test_hostile_payload_over_grpc_is_invalid_argument(server, head_cache):
    from tritonclient.utils import InferenceServerException

    c = SplitClient(server.grpc_url, MODEL, protocol="grpc")
    try:
        with pytest.raises(InferenceServerException) as e:
            c.send(np.frombuffer(b"SPWC" + bytes(40), np.uint8))
        assert "INVALID_ARG" in str(e.value.status()), e.value
        assert c.infer(np.zeros((1, 3, 224, 224), np.float32)).shape == (1, 1000)
    finally:
        c.close()


def test_eight_concurrent_clients_all_get_correct_answers(server, images, head_cache):
    deadline = time.monotonic() + 120

    def worker(k):
        # Half over HTTP, half over gRPC; one client per thread (tritonclient's are not thread-safe).
        c = SplitClient(server.grpc_url, MODEL, protocol="grpc") if k % 2 else SplitClient(server.url, MODEL)
        wrong = 0
        try:
            for i in range(5):  # bounded: 5 requests per client
                if time.monotonic() > deadline:
                    raise TimeoutError("concurrent test ran past its deadline")
                name, x, want = images[(k * 5 + i) % len(images)]
                wrong += int(c.infer(x).argmax()) != want
        finally:
            c.close()
        return wrong

    with cf.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(worker, range(8), timeout=150))
    assert results == [0] * 8


def test_one_blob_may_carry_a_batch(client, images):
    x = np.concatenate([im[1] for im in images[:3]])
    y = client.infer(x)
    assert y.shape == (3, 1000)
    assert [int(v) for v in y.argmax(1)] == [im[2] for im in images[:3]]


def test_dct_blobs_decode_on_the_same_server(server, client, images, head_cache):
    """Format version 2 (transform="dct") needs nothing on the server: the decoder reads any valid blob."""
    from tritonclient.utils import InferenceServerException

    c = SplitClient(server.url, MODEL, codec={"transform": "dct", "block": 7, "step": 0.02})
    try:
        for name, x, want in images[:4]:
            features = c.head(x)
            blob = c.encode(features)
            assert blob[4] == 2 and len(blob) < 0.8 * len(client.encode(features))   # vs the 8-bit default
            y = c.send(np.frombuffer(blob, np.uint8))
            assert int(y.argmax()) == want, name
        bad = bytearray(blob)
        bad[len(bad) // 2] ^= 0x10
        with pytest.raises(InferenceServerException, match="checksum"):
            _infer_raw(server, np.frombuffer(bytes(bad), np.uint8), "UINT8")
        assert int(client.infer(images[0][1]).argmax()) == images[0][2]          # still serving
    finally:
        c.close()


def test_a_calibrated_client_sends_ordinary_blobs(server, images, head_cache):
    """``SplitClient.calibrate`` only fixes the encoder's modeling choices: same reconstruction, and
    the server decodes the blobs like any other."""
    c = SplitClient(server.url, MODEL, bits=4)
    try:
        default = c.codec_config
        cfg = c.calibrate([x for _, x, _ in images[10:14]])
        assert cfg is c.codec_config and cfg.bits == 4 and "auto" not in (cfg.pack, cfg.tables, cfg.prob_bits)
        for name, x, want in images[:3]:
            features = c.head(x)
            blob = c.encode(features)
            np.testing.assert_array_equal(cc.decode(blob), cc.decode(cc.encode(features, default)))
            assert int(c.send(np.frombuffer(blob, np.uint8)).argmax()) == int(c.infer(x).argmax()), name
        with pytest.raises(ClientError, match="at least one input"):
            c.calibrate([])
    finally:
        c.close()


def test_a_prior_model_takes_blobs_without_tables(server, client, images, head_cache):
    """``export --prior``: the client fetches the prior with the head and sends version-3 blobs;
    the decoder reads them (and self-contained ones) to the same features; a blob coded with another
    prior, or sent to a model without one, is a 400 naming the prior, and the server keeps serving."""
    from tritonclient.utils import InferenceServerException

    c = SplitClient(server.url, PRIOR_MODEL, prior=True)
    plain = SplitClient(server.url, PRIOR_MODEL, prior=False)
    default = SplitClient(server.url, PRIOR_MODEL)
    try:
        assert c.prior is not None and plain.prior is None
        assert f"{c.prior.id:#010x}" == c.meta["prior"]["id"]
        # Lite0's signed 112 x 14 x 14 maps, 10 images to fit on: the export measured that the prior
        # does not pay here, and a default client leaves it alone
        held_out = c.meta["prior"]["held_out"]
        assert held_out["bytes_with_prior"] > 0 and (default.prior is None) == (held_out["ratio"] >= 1)
        for name, x, _ in images[:4]:
            f = c.head(x)
            blob, own = c.encode(f), plain.encode(f)
            assert cc.inspect(blob)["prior"] == c.meta["prior"]["id"] and cc.inspect(own)["prior"] is None
            np.testing.assert_array_equal(cc.decode(blob, prior=c.prior), cc.decode(own))
            np.testing.assert_array_equal(c.send(blob), plain.send(own))
        other = cc.fit_prior([c.head(x) for _, x, _ in images[:3]], c.codec_config)
        stranger = cc.encode(c.head(images[0][1]), c.codec_config, prior=other)
        for target in (c, client):
            with pytest.raises(InferenceServerException, match="prior"):
                target.send(stranger)
        assert int(c.infer(images[0][1]).argmax()) == int(plain.infer(images[0][1]).argmax())   # still serving
        with pytest.raises(ClientError, match="publishes no prior"):
            SplitClient(server.url, MODEL, prior=True)
        with pytest.raises(ClientError, match="cannot use it"):
            SplitClient(server.url, PRIOR_MODEL, prior=True, bits=4)
    finally:
        c.close()
        plain.close()
        default.close()


def test_a_dct_prior_model_takes_version_3_transform_blobs(server, images, head_cache):
    """``export --transform dct --prior``: the client codes the DCT coefficients with the model's
    prior (format version 3 with TRANSFORM); the server decodes them to the self-contained DCT blob's
    features, so the logits are the same."""
    c = SplitClient(server.url, DCT_PRIOR_MODEL, prior=True)
    plain = SplitClient(server.url, DCT_PRIOR_MODEL, prior=False)
    try:
        assert (c.meta["prior"]["transform"], c.meta["prior"]["block"]) == ("dct", 7)
        for name, x, _ in images[:3]:
            f = c.head(x)
            blob, own = c.encode(f), plain.encode(f)
            assert blob[4] == 3 and cc.inspect(blob)["transform"]["block"] == 7 and own[4] == 2
            np.testing.assert_array_equal(cc.decode(blob, prior=c.prior), cc.decode(own))
            np.testing.assert_array_equal(c.send(blob), plain.send(own))
    finally:
        c.close()
        plain.close()


def test_a_projected_model_sends_principal_components_and_the_tail_reconstructs(server, repo, images, head_cache):
    """``export --components``: the head ends with the channel projection, so the client codes 28
    channels instead of 112, and the tail model starts with the reconstruction: the server's logits
    are the exported tail's on the decoded components."""
    import onnxruntime as ort

    c = SplitClient(server.url, PROJECTED_MODEL, prior=True)
    tail = ort.InferenceSession(str(repo / f"{PROJECTED_MODEL}_tail" / "1" / "model.onnx"),
                                providers=["CPUExecutionProvider"])
    try:
        assert c.meta["feature_shape"] == [28, 14, 14] and c.meta["projection"]["channels"] == 112
        for name, x, _ in images[:3]:
            f = c.head(x)
            assert f.shape == (1, 28, 14, 14)
            blob = c.encode(f)
            assert blob[4] == 3 and cc.inspect(blob)["shape"] == [1, 28, 14, 14]
            want = tail.run(None, {"features": cc.decode(blob, prior=c.prior)})[0]
            np.testing.assert_allclose(c.send(blob), want, rtol=1e-4, atol=1e-4)
    finally:
        c.close()


@pytest.mark.parametrize("payload", ["raw", "fp16"])
def test_uncompressed_baselines_go_through_the_same_ensemble(server, images, payload, head_cache):
    c = SplitClient(server.url, MODEL, payload=payload)
    try:
        name, x, want = images[1]
        y, t = c.infer_timed(x)
        assert int(y.argmax()) == want
        assert t.bytes_sent == len(rawframe.encode(np.zeros((1, 112, 14, 14), np.float16 if payload == "fp16"
                                                            else np.float32)))
    finally:
        c.close()


def test_decoder_metrics_sit_next_to_tritons(server, client, images):
    client.infer(images[0][1])
    with pytest.raises(Exception):
        client.send(np.frombuffer(b"SPWC" + bytes(60), np.uint8))
    text = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
    assert "nv_inference_request_success" in text

    def value(metric, **labels):
        for line in text.splitlines():
            if line.startswith(metric + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
        return None

    assert value("splitwire_decoder_payload_bytes_total", model=f"{MODEL}_decoder") > 1000
    assert value("splitwire_decoder_decode_seconds_total", model=f"{MODEL}_decoder") > 0
    rejected = [ln for ln in text.splitlines() if ln.startswith("splitwire_decoder_rejected_total{")]
    assert rejected, "no rejected_total samples"


def test_send_cli_prints_top5_bytes_and_latency(server, head_cache):
    path = str(samples.imagenet_samples()[4][0])
    r = subprocess.run([sys.executable, "-m", "splitwire", "send", "--url", server.url, "--model", MODEL, path],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "strawberry" in r.stdout
    assert re.search(r"sent [\d.]+ KB \(splitwire\) vs 85\.8 KB raw float32", r.stdout), r.stdout
    assert "round trip" in r.stdout


def test_serve_cli_prints_ports_and_stops_on_sigterm(repo):
    http, grpc, metrics = resolve_ports(0, 0, 0)
    p = subprocess.Popen([sys.executable, "-m", "splitwire", "serve", str(repo), "--http-port", str(http),
                          "--grpc-port", str(grpc), "--metrics-port", str(metrics)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        line = ""
        while time.monotonic() < deadline:
            line = p.stdout.readline()
            if "ready" in line or not line:
                break
        assert f"HTTP 127.0.0.1:{http}" in line and f"gRPC 127.0.0.1:{grpc}" in line, line
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=60) == 0
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=2)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)


def test_edge_client_runs_without_torch(server, head_cache):
    code = (
        "import sys, numpy as np\n"
        "sys.modules['torch'] = None  # any import of torch now fails\n"
        "from client import SplitClient\n"
        f"c = SplitClient({server.url!r}, {MODEL!r})\n"
        "print(c.infer(np.zeros((1, 3, 224, 224), np.float32)).shape)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "(1, 1000)" in r.stdout
