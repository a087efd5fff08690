"""Stand-in file contents for the emulated patients and users: bytes shaped like the real formats."""

from __future__ import annotations

import secrets

_JPEG_START, _JPEG_END = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", b"\xff\xd9"


def sample_jpeg(size: int = 2048) -> bytes:
    """Bytes that start and end like a JPEG (random in between): a photo when a test gives none."""
    return _JPEG_START + secrets.token_bytes(max(0, size - len(_JPEG_START) - len(_JPEG_END))) + _JPEG_END
