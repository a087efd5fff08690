"""Where the suite finds the checkout and the files chat2crm ships."""

from __future__ import annotations

from pathlib import Path

from connector.resources import DEFAULT_CONFIG, shipped

#: the repository's root (the suite only runs from a checkout)
REPO = Path(__file__).resolve().parent.parent
#: the shipped main configuration, mappings and flows (package data)
SHIPPED_CONFIG = shipped(DEFAULT_CONFIG)
MAPPINGS = shipped("mappings")
FLOWS = shipped("bot_flows")
SCHEMAS = shipped("schemas")
