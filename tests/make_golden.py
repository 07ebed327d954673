"""Regenerate tests/golden/ (only when the format changes on purpose!).

    python tests/make_golden.py

Each case stores the input tensor (.npy), the config (.json), the reference engine's blob (.spwc) and
its decoded output (.out.npy). A prior case (format version 3) also stores the samples its prior is
fitted on (.fit.npy) and the prior (.swprior). tests/test_golden.py pins every engine to these bytes.
"""

import json
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import codec_cupy as cc  # noqa: E402
from conftest import relu_features, signed_features, smooth_features  # noqa: E402

GOLDEN = pathlib.Path(__file__).parent / "golden"


def cases():
    rng = np.random.default_rng(20261122)
    yield "relu_b4_default", relu_features(rng, (1, 24, 6, 5)), dict(bits=4)
    yield "signed_b8_channel", signed_features(rng, (2, 8, 5, 3)), dict(bits=8, granularity="channel")
    yield "relu_b3_ecsq", relu_features(rng, (1, 12, 4, 4)), dict(bits=3, quantizer="ecsq", sparse="on")
    yield "relu_b2_pack4_streams", relu_features(rng, (2, 10, 3, 7)), dict(bits=2, pack=4, tables=2, streams=5,
                                                                                    sparse="on")
    yield "signed_f16_b6_mse", signed_features(rng, (3, 4, 9)).astype(np.float16), dict(bits=6, clip="mse")
    yield "vector_b1", rng.standard_normal(50).astype(np.float32), dict(bits=1, axis=None, prob_bits=9)
    yield "zeros_b8", np.zeros((1, 4, 2, 2), np.float32), dict(bits=8)
    yield "scalar_b5", np.array(-2.5, np.float32), dict(bits=5)
    # format version 2: DCT blocks (tensor maps not multiples of the block, a zero-masked frequency)
    yield "smooth_dct8", smooth_features(rng, (1, 3, 11, 13)), dict(transform="dct", block=8, step=0.03)
    yield "smooth_dct3_b5", smooth_features(rng, (2, 2, 5, 7)), dict(transform="dct", block=3, step=0.05, bits=5,
                                                                      sparse="on")


def prior_cases():
    """Format version 3: (name, fit samples (n, ...), tensor, config, fit_prior keywords)."""
    rng = np.random.default_rng(20261124)
    keep = rng.uniform(0.05, 0.9, (1, 6, 3, 4))
    fit = np.stack([relu_features(rng, (1, 6, 3, 4), ()) * (rng.random((1, 6, 3, 4)) < keep) for _ in range(24)])
    yield "prior_b2", fit[:20].astype(np.float32), np.concatenate(fit[20:23]).astype(np.float32), \
        dict(bits=2, streams=3), dict(tables=5, prob_bits=10)
    yield "prior_b4_channel", fit[:20].astype(np.float32), fit[23].astype(np.float32), \
        dict(bits=4, granularity="channel"), dict()
    # signed features: zero points differ from sample to sample and channel to channel, so the
    # symbols are coded relative to them (FORMAT.md section 9)
    signed = np.stack([signed_features(rng, (1, 5, 2, 3)) for _ in range(16)])
    yield "prior_signed_b3_channel", signed[:15], signed[15], dict(bits=3, granularity="channel"), dict(tables=6)
    yield "prior_signed_b2_ecsq", signed[:15], signed[15], dict(bits=2, quantizer="ecsq"), dict(prob_bits=9)
    # DCT coefficients with a prior: positions are a sample's blocks x frequencies, the compact
    # quantizer section (padded blocks: 9 x 10 maps, block 4)
    smooth = np.stack([smooth_features(rng, (1, 3, 9, 10)) for _ in range(13)])
    yield "prior_dct4_b6", smooth[:12], smooth[12], \
        dict(transform="dct", block=4, step=0.04, bits=6, frequency_weight=0.5), dict(tables=6)


def main():
    GOLDEN.mkdir(exist_ok=True)
    for name, x, kw in cases():
        blob = cc.encode(x, cc.CodecConfig(**kw), engine="reference")
        np.save(GOLDEN / f"{name}.npy", x)
        (GOLDEN / f"{name}.json").write_text(json.dumps(kw, sort_keys=True) + "\n")
        (GOLDEN / f"{name}.spwc").write_bytes(blob)
        np.save(GOLDEN / f"{name}.out.npy", cc.decode(blob, engine="reference"))
        print(f"{name}: {len(blob)} bytes")
    for name, fit, x, kw, fit_kw in prior_cases():
        prior = cc.fit_prior(list(fit), cc.CodecConfig(**kw), **fit_kw)
        blob = cc.encode(x, cc.CodecConfig(**kw), engine="reference", prior=prior)
        np.save(GOLDEN / f"{name}.npy", x)
        np.save(GOLDEN / f"{name}.fit.npy", fit)
        (GOLDEN / f"{name}.json").write_text(json.dumps({**kw, "fit_prior": fit_kw}, sort_keys=True) + "\n")
        (GOLDEN / f"{name}.swprior").write_bytes(prior.to_bytes())
        (GOLDEN / f"{name}.spwc").write_bytes(blob)
        np.save(GOLDEN / f"{name}.out.npy", cc.decode(blob, engine="reference", prior=prior))
        print(f"{name}: {len(blob)} bytes, prior {prior.id:#010x} ({len(prior.to_bytes())} bytes)")


if __name__ == "__main__":
    main()
