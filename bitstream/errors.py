"""Errors raised while reading .vq data.

`VQFormatError` is the only exception that reading a .vq file (or a range-coded stream inside
one) may raise for bad *data*. Misuse of the API by the caller (wrong argument types, invalid
header fields passed to `pack`, malformed frequency tables) raises `TypeError` / `ValueError`
instead, because those are programming errors, not damaged files.

Re-exported as `vqcodec.VQFormatError`.
"""
from __future__ import annotations

__all__ = ["VQFormatError"]


class VQFormatError(ValueError):
    """The input is not a valid .vq file (or stream); the message says what is wrong and what to do."""
