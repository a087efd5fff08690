"""docs/architecture.md lists every key family the relay's own modules and the demo declare, with its TTL."""

from __future__ import annotations

# with these three loaded, every module that declares a family has declared it
import connector.commands.forget
import connector.worker  # noqa: F401
import demo.web  # noqa: F401
from core.keys import PREFIX, REGISTRY
from tests.paths import REPO


def test_every_family_of_the_relay_is_in_the_architecture_page() -> None:
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| `")}
    missing, wrong_ttl = [], []
    for family in REGISTRY.values():
        if family.prefix != PREFIX or not family.owner.startswith(("connector.", "demo.")) or family.name.startswith("test-"):
            continue
        name = f"`{family.name}:{family.shape}`" if family.shape else f"`{family.name}`"
        row = rows.get(name)
        if row is None:
            missing.append(name)
        else:
            said = f"`{family.ttl}`" if isinstance(family.ttl, str) else "bounded" if family.ttl is None else ""
            if said not in row:
                wrong_ttl.append(name)
    assert not missing, f"families missing from docs/architecture.md: {missing}"
    assert not wrong_ttl, f"families whose TTL docs/architecture.md gives wrongly: {wrong_ttl}"
