"""Triton Python-backend models. ``splitwire export`` copies each file to ``<model>/1/model.py``;
the logic in them is importable (and tested) without a server."""
