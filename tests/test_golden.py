"""Golden vectors pin the format (versions 1, 2 and 3) and the prior's bytes: every engine must write and
read exactly these bytes."""

import json
import pathlib

import numpy as np
import pytest

import codec_cupy as cc

GOLDEN = pathlib.Path(__file__).parent / "golden"
NAMES = sorted(p.name[:-5] for p in GOLDEN.glob("*.spwc"))


def test_golden_vectors_exist():
    assert len(NAMES) >= 8


def _case(name):
    """(tensor, config, prior or None) of a golden case."""
    fields = json.loads((GOLDEN / f"{name}.json").read_text())
    fields.pop("fit_prior", None)
    path = GOLDEN / f"{name}.swprior"
    prior = cc.Prior.load(path) if path.exists() else None
    return np.load(GOLDEN / f"{name}.npy"), cc.CodecConfig(**fields), prior


@pytest.mark.parametrize("engine", ["reference", "cpu"])
@pytest.mark.parametrize("name", NAMES)
def test_golden(name, engine):
    x, cfg, prior = _case(name)
    expected = (GOLDEN / f"{name}.spwc").read_bytes()
    assert cc.encode(x, cfg, engine=engine, prior=prior) == expected
    out = cc.decode(expected, engine=engine, prior=prior)
    ref = np.load(GOLDEN / f"{name}.out.npy")
    assert out.shape == ref.shape and np.array_equal(out.view(np.uint32), ref.view(np.uint32))


def test_golden_blob_layout_starts_with_magic_and_version():
    for name in NAMES:
        blob = (GOLDEN / f"{name}.spwc").read_bytes()
        fields = json.loads((GOLDEN / f"{name}.json").read_text())
        version = 3 if "fit_prior" in fields else 2 if fields.get("transform", "none") != "none" else 1
        assert blob[:4] == b"SPWC" and blob[4] == version


PRIOR_NAMES = [n for n in NAMES if (GOLDEN / f"{n}.swprior").exists()]


def test_golden_priors_exist():
    assert len(PRIOR_NAMES) >= 2


@pytest.mark.parametrize("name", PRIOR_NAMES)
def test_golden_prior_fit(name):
    """``fit_prior`` on the stored samples gives the stored prior, byte for byte (its magic first)."""
    fields = json.loads((GOLDEN / f"{name}.json").read_text())
    fit_kw = fields.pop("fit_prior")
    prior = cc.fit_prior(list(np.load(GOLDEN / f"{name}.fit.npy")), cc.CodecConfig(**fields), **fit_kw)
    stored = (GOLDEN / f"{name}.swprior").read_bytes()
    assert stored[:5] == b"SPWP\x01" and prior.to_bytes() == stored
