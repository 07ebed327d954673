"""``njit`` when Numba is installed, the plain Python function otherwise (same source, same results)."""

from __future__ import annotations

try:
    import numba as _numba
except ImportError:  # pragma: no cover - numba is a core dependency, but keep the reference usable
    _numba = None

HAVE_NUMBA = _numba is not None


def njit(fn=None, **options):
    """``@njit`` or ``@njit(inline="always")``: compiled, cached, no GIL; never fast-math."""
    def wrap(f):
        if _numba is None:  # pragma: no cover
            return f
        return _numba.njit(cache=True, nogil=True, **options)(f)
    return wrap(fn) if fn is not None else wrap
