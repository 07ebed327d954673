"""pb_utils.Tensor <-> NumPy helpers for the Python backend under NumPy 2 (copied beside each model.py)."""

from __future__ import annotations

import sys

import numpy as np


def quiet_capsule_noise(hook=sys.unraisablehook):
    """NumPy 2's DLPack capsule destructor complains after the stub renamed the capsule it
    consumed ("used_dltensor"): harmless, but it would print a traceback per response."""
    def filtered(u):
        if isinstance(u.exc_value, ValueError) and "PyCapsule_GetPointer" in str(u.exc_value):
            return
        hook(u)
    sys.unraisablehook = filtered


def host_array(tensor):
    """An input pb_utils.Tensor as NumPy. ``as_numpy()`` is wrong under NumPy 2 (the stub's
    pybind11 reads the old descriptor layout), DLPack is right."""
    if tensor.is_cpu():
        return np.from_dlpack(tensor)
    import cupy
    return cupy.asnumpy(cupy.from_dlpack(tensor.to_dlpack()))
