"""Edge client: head with onnxruntime, codec_cupy encode, tritonclient to the ensemble. No torch."""

from .split_client import ClientError, SplitClient, Timing, topk

__all__ = ["SplitClient", "ClientError", "Timing", "topk"]
