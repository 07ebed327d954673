"""``njit`` when Numba is installed, the plain Python function otherwise (same source, same results).

Numba's on-disk cache (``cache=True``) is keyed on the source file of each compiled function only: a
function that inlines or calls a helper from *another* module keeps its stale machine code when only
the helper changes (that once segfaulted a hostile-input test). So the cache is keyed here on all of
the package's sources: at import, a hash of every ``codec_cupy/*.py`` is compared with a stamp file
in the cache directory Numba will use; on a mismatch this package's ``*.nbi``/``*.nbc`` files are
deleted before anything is compiled and the new stamp is written. If that directory cannot be
cleaned (read-only), caching is switched off for this process instead of risking stale code.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import tempfile

try:
    import numba as _numba
except ImportError:  # pragma: no cover - numba is a core dependency, but keep the reference usable
    _numba = None

HAVE_NUMBA = _numba is not None

PACKAGE_DIR = pathlib.Path(__file__).resolve().parent
STAMP_NAME = "codec_cupy.sources.stamp"
CACHE_SUFFIXES = (".nbi", ".nbc")


def source_digest(package_dir: pathlib.Path = PACKAGE_DIR) -> str:
    """SHA-256 over the names and contents of the package's ``*.py`` files, in name order."""
    h = hashlib.sha256()
    for path in sorted(package_dir.glob("*.py")):
        h.update(path.name.encode())
        h.update(b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def _probe():  # pragma: no cover - never called; its file locates the package's cache directory
    pass


def numba_cache_dir() -> pathlib.Path | None:
    """The directory Numba's cache uses for this package's functions (its own locator choice:
    ``NUMBA_CACHE_DIR`` if set, else a writable ``__pycache__``, else the user-wide cache)."""
    try:
        from numba.core import caching, config
        if getattr(config, "CACHE_LOCATOR_CLASSES", None):
            return None                        # a custom locator: we cannot know where it writes
        classes = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl")
        source = _probe.__code__.co_filename
        for cls in classes._locator_classes:
            locator = cls.from_function(_probe, source)
            if locator is not None:
                return pathlib.Path(locator.get_cache_path())
    except Exception:  # noqa: BLE001 - numba internals moved: run uncached rather than fail
        return None
    return None


def sync_cache_dir(cache_dir: pathlib.Path, digest: str, modules) -> bool:
    """Make ``cache_dir`` hold no compiled code of ``modules`` older than sources ``digest``.

    Returns True when the cache may be used (stamp matched, or the stale files were removed and the
    stamp rewritten), False when the directory could not be cleaned (e.g. read-only)."""
    stamp = cache_dir / STAMP_NAME
    try:
        if stamp.read_text() == digest:
            return True
    except OSError:
        pass
    try:
        for entry in os.scandir(cache_dir):
            name = entry.name
            if name.endswith(CACHE_SUFFIXES) and name.split(".", 1)[0] in modules:
                try:
                    os.unlink(entry.path)
                except FileNotFoundError:      # another process cleaned it first
                    pass
        fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=STAMP_NAME + ".")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(digest)
            os.replace(tmp, stamp)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    except FileNotFoundError:
        return _make_and_stamp(cache_dir, stamp, digest)
    except OSError:
        return False
    return True


def _make_and_stamp(cache_dir: pathlib.Path, stamp: pathlib.Path, digest: str) -> bool:
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        stamp.write_text(digest)
        return True
    except OSError:
        return False


def _prepare_cache() -> bool:
    if _numba is None:  # pragma: no cover
        return False
    try:
        cache_dir = numba_cache_dir()
        if cache_dir is None:
            return False
        modules = {p.stem for p in PACKAGE_DIR.glob("*.py")}
        return sync_cache_dir(cache_dir, source_digest(), modules)
    except Exception:  # noqa: BLE001 - any failure: compile without the cache
        return False


CACHE = _prepare_cache()


def njit(fn=None, **options):
    """``@njit`` or ``@njit(inline="always")``: compiled, no GIL, cached on disk when the cache
    directory is in sync with the sources (see above); never fast-math."""
    def wrap(f):
        if _numba is None:  # pragma: no cover
            return f
        return _numba.njit(cache=CACHE, nogil=True, **options)(f)
    return wrap(fn) if fn is not None else wrap
