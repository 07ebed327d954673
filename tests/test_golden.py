"""Golden vectors pin the format (versions 1 and 2): every engine must write and read exactly these bytes."""

import json
import pathlib

import numpy as np
import pytest

import codec_cupy as cc

GOLDEN = pathlib.Path(__file__).parent / "golden"
NAMES = sorted(p.name[:-5] for p in GOLDEN.glob("*.spwc"))


def test_golden_vectors_exist():
    assert len(NAMES) >= 8


@pytest.mark.parametrize("engine", ["reference", "cpu"])
@pytest.mark.parametrize("name", NAMES)
def test_golden(name, engine):
    x = np.load(GOLDEN / f"{name}.npy")
    cfg = cc.CodecConfig(**json.loads((GOLDEN / f"{name}.json").read_text()))
    expected = (GOLDEN / f"{name}.spwc").read_bytes()
    assert cc.encode(x, cfg, engine=engine) == expected
    out = cc.decode(expected, engine=engine)
    ref = np.load(GOLDEN / f"{name}.out.npy")
    assert out.shape == ref.shape and np.array_equal(out.view(np.uint32), ref.view(np.uint32))


def test_golden_blob_layout_starts_with_magic_and_version():
    for name in NAMES:
        blob = (GOLDEN / f"{name}.spwc").read_bytes()
        transform = json.loads((GOLDEN / f"{name}.json").read_text()).get("transform", "none") != "none"
        assert blob[:4] == b"SPWC" and blob[4] == (2 if transform else 1)
