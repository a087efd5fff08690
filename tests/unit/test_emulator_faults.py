"""The fault injection every CRM emulator shares."""

from __future__ import annotations

from typing import Any

import pytest

from emulators.hubspot import HubSpotEmulator
from emulators.pipedrive import PipedriveEmulator
from emulators.salesforce import SalesforceEmulator

EMULATORS = [HubSpotEmulator, SalesforceEmulator, PipedriveEmulator]


@pytest.mark.parametrize("cls", EMULATORS)
def test_an_unknown_fault_kind_is_refused(cls: Any) -> None:
    emulator = cls()
    with pytest.raises(ValueError, match="kind must be one of"):
        emulator.fail_next(1, "418")
    with pytest.raises(ValueError, match="rate_limit must be"):
        cls(rate_limit=(0, 1.0))


@pytest.mark.parametrize("cls", EMULATORS)
def test_faults_asked_for_come_first_then_random_ones_at_the_rate(cls: Any) -> None:
    emulator = cls()
    emulator.fail_next(2, "503")
    assert [emulator._draw_fault() for _ in range(3)] == ["503", "503", None]
    emulator.fault_rate, emulator.fault_kinds = 0.3, ["500"]
    drawn = [emulator._draw_fault() for _ in range(1000)]
    assert set(drawn) == {"500", None} and 250 < drawn.count("500") < 350


def test_vendor_specific_kinds() -> None:
    SalesforceEmulator().fail_next(1, "expired")
    PipedriveEmulator().fail_next(1, "daily")
    with pytest.raises(ValueError):
        HubSpotEmulator().fail_next(1, "daily")
