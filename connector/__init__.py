"""chat2crm: a relay from patient messaging channels to the CRM a clinic already uses."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
