"""JSON as the vendors send it, read strictly: Python's ``json`` also reads ``NaN``, ``Infinity`` and
``-Infinity`` (and ``1e999`` as infinity), which are not JSON and which no vendor sends. Every webhook body,
the channels' and the CRMs' alike, is read with :func:`loads`.
"""

from __future__ import annotations

import json
import math
from typing import Any


class NotFinite(ValueError):
    """``NaN``, ``Infinity`` or a number too large for a float."""


def _no_constant(name: str) -> Any:
    raise NotFinite(name)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 reads as infinity
        raise NotFinite(text)
    return value


def loads(data: str | bytes) -> Any:
    """Decode ``data`` as JSON, refusing non-finite numbers.

    Raises:
        NotFinite: ``NaN``, ``Infinity`` or an overflowing number (a ``ValueError``).
        ValueError: not JSON (``json.JSONDecodeError``), or bytes that are not UTF-8.
        RecursionError: nested too deeply for the decoder.
    """
    return json.loads(data, parse_constant=_no_constant, parse_float=_finite)
