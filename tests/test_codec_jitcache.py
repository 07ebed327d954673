"""The Numba disk cache is keyed on all of codec_cupy's sources (codec_cupy/_jit.py)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from codec_cupy import _jit

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _plant(d: pathlib.Path, names):
    for n in names:
        (d / n).write_bytes(b"stale")


def test_stale_cache_files_are_removed_when_the_sources_change(tmp_path):
    stale = ["_cpu._decode-279.py311.nbi", "_cpu._decode-279.py311.1.nbc", "_tablecodec.read_tables-9.py311.nbi"]
    foreign = ["othermod.f-3.py311.nbi", "_cpu.cpython-311.pyc"]
    _plant(tmp_path, stale + foreign)
    (tmp_path / _jit.STAMP_NAME).write_text("old digest")
    assert _jit.sync_cache_dir(tmp_path, "new digest", {"_cpu", "_tablecodec"})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(foreign + [_jit.STAMP_NAME])
    assert (tmp_path / _jit.STAMP_NAME).read_text() == "new digest"
    # same sources: the cache is kept
    _plant(tmp_path, stale)
    assert _jit.sync_cache_dir(tmp_path, "new digest", {"_cpu", "_tablecodec"})
    assert all((tmp_path / n).exists() for n in stale)


def test_no_stamp_counts_as_stale(tmp_path):
    _plant(tmp_path, ["_cpu._decode-279.py311.nbi"])
    assert _jit.sync_cache_dir(tmp_path, "d", {"_cpu"})
    assert not (tmp_path / "_cpu._decode-279.py311.nbi").exists()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_read_only_cache_directory_disables_caching(tmp_path):
    _plant(tmp_path, ["_cpu._decode-279.py311.nbi"])
    (tmp_path / _jit.STAMP_NAME).write_text("old")
    tmp_path.chmod(0o500)
    try:
        assert not _jit.sync_cache_dir(tmp_path, "new", {"_cpu"})
    finally:
        tmp_path.chmod(0o700)


def test_undeletable_stale_files_disable_caching(tmp_path, monkeypatch):
    _plant(tmp_path, ["_cpu._decode-279.py311.nbi"])
    (tmp_path / _jit.STAMP_NAME).write_text("old")

    def refuse(path):
        raise PermissionError(13, "Read-only file system", path)
    monkeypatch.setattr(_jit.os, "unlink", refuse)
    assert not _jit.sync_cache_dir(tmp_path, "new", {"_cpu"})
    assert (tmp_path / _jit.STAMP_NAME).read_text() == "old"


def test_source_digest_covers_every_module(tmp_path):
    for name in ("a.py", "b.py"):
        (tmp_path / name).write_text(name)
    before = _jit.source_digest(tmp_path)
    (tmp_path / "b.py").write_text("changed")
    assert _jit.source_digest(tmp_path) != before


def test_import_cleans_numba_cache_dir(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    code = "from codec_cupy import _jit; print(_jit.numba_cache_dir()); print(_jit.CACHE)"
    run = lambda: subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                                 text=True, check=True).stdout.split()
    cache_dir, ok = run()
    assert ok == "True" and pathlib.Path(cache_dir).is_relative_to(tmp_path)
    cache_dir = pathlib.Path(cache_dir)
    assert (cache_dir / _jit.STAMP_NAME).read_text() == _jit.source_digest()
    (cache_dir / _jit.STAMP_NAME).write_text("sources of an older checkout")
    _plant(cache_dir, ["_cpu._decode-279.py311.nbi"])
    assert run()[1] == "True"
    assert not (cache_dir / "_cpu._decode-279.py311.nbi").exists()
    assert (cache_dir / _jit.STAMP_NAME).read_text() == _jit.source_digest()
