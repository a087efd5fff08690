"""A patient's other channel identities in HubSpot: a WhatsApp BSUID and a Telegram username, written to the
contact's properties by the shipped mapping and matched right after the contact key.

Against the HubSpot emulator over HTTP, with real Redis. The emulator's search lag is set per test: a number
changes days after the first lead, when search shows the contact.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from adapters.hubspot import HubSpotAdapter
from connector.mapping import load_mapping, plan, required_schema
from core.models import Lead
from emulators.hubspot import HubSpotEmulator
from emulators.server import ServedApp
from tests.conftest import make_settings
from tests.contract import make_lead
from tests.paths import MAPPINGS

MAPPING = load_mapping(MAPPINGS / "hubspot.yaml", crm="hubspot")
TOKEN = "pat-channel-identities"
OLD, NEW, BSUID = "905321112233", "905329998877", "TR.1234567890"


class Account:
    """The emulator set up as `crm setup` leaves it, and adapters on it."""

    def __init__(self, emulator: HubSpotEmulator, url: str, redis_client: redis.Redis) -> None:
        self.emulator, self.url, self.redis = emulator, url, redis_client
        self.adapter = self.fresh()
        self.adapter.setup(required_schema(MAPPING), apply=True)

    def fresh(self) -> HubSpotAdapter:
        settings = make_settings("unix:///unused", hubspot_access_token=TOKEN, hubspot_api_base=self.url)
        return HubSpotAdapter.from_settings(settings, options={**MAPPING.crm_options(), "timeout_seconds": 2.0},
                                            redis=self.redis)

    def sync(self, lead: Lead, adapter: HubSpotAdapter | None = None) -> Any:
        return (adapter or self.adapter).sync(plan(lead, MAPPING))

    def contact(self, contact_id: str) -> dict[str, Any]:
        return next(c["properties"] for c in self.emulator.records("contacts") if c["id"] == contact_id)

    def searches(self) -> int:
        return sum(1 for c in self.emulator.calls if c["path"] == "/crm/v3/objects/contacts/search")


@pytest.fixture
def account(redis_client: redis.Redis) -> Iterator[Account]:
    emulator = HubSpotEmulator(TOKEN)
    served = ServedApp(emulator.app).start()
    try:
        yield Account(emulator, served.url, redis_client)
    finally:
        served.stop()
    assert not emulator.violations, emulator.violations


def whatsapp(reference: str, number: str, bsuid: str | None = BSUID) -> Lead:
    """A WhatsApp lead from ``number``, with the patient's BSUID."""
    made = make_lead(reference, number)
    return made.model_copy(update={"contact": made.contact.model_copy(update={"whatsapp_user_id": bsuid})})


def telegram(reference: str, chat: str, username: str) -> Lead:
    """A Telegram lead from chat ``chat``, whose patient has ``username`` (and no phone number)."""
    made = make_lead(reference, chat)
    contact = made.contact.model_copy(update={"channel": "telegram", "channel_id": chat, "phone": None,
                                              "telegram_username": username})
    return made.model_copy(update={"contact": contact, "contact_key": f"telegram:{chat}"})


def test_the_shipped_mapping_writes_the_identities_and_crm_setup_makes_their_properties(account: Account) -> None:
    made = account.emulator.properties["contacts"]
    assert "chat2crm_whatsapp_user_id" in made and "chat2crm_telegram_username" in made
    result = account.sync(whatsapp("#1042", OLD))
    assert account.contact(result.contact.id)["chat2crm_whatsapp_user_id"] == BSUID
    written = plan(whatsapp("#1042", OLD), MAPPING).contact.identities
    assert [(i.property, i.value) for i in written] == [("chat2crm_whatsapp_user_id", BSUID)]


def test_a_patient_whose_number_changed_is_found_by_the_bsuid_and_the_key_moves(account: Account) -> None:
    first = account.sync(whatsapp("#1042", OLD))
    later = account.fresh()  # another worker: nothing of the new key in memory, and none in the id cache
    second = account.sync(whatsapp("#1043", NEW), later)
    assert second.contact.id == first.contact.id and not second.contact.created
    assert account.emulator.count("contacts") == 1 and account.emulator.count("deals") == 2
    moved = account.contact(first.contact.id)
    assert moved["chat2crm_contact_key"] == f"whatsapp:{NEW}" and moved["phone"] == f"+{NEW}"
    # the search, the key read that confirms nobody has the new key, the update, the deal, the note, and this
    # worker's one read of the pipelines (the mapping names its pipeline and stage by label)
    assert second.calls == 6
    searches = account.searches()
    # the key, kept in the shared id cache, finds it: no search, the calls of any lead (and the pipelines' read)
    third = account.sync(whatsapp("#1044", NEW), account.fresh())
    assert third.contact.id == first.contact.id and third.calls == 4 and account.searches() == searches
    # the old number's key is no one's now: a message from it (the BSUID again) finds the same person
    back = account.sync(whatsapp("#1045", OLD), account.fresh())
    assert back.contact.id == first.contact.id and account.emulator.count("contacts") == 1


def test_a_returning_patient_known_by_key_costs_no_search(account: Account) -> None:
    account.sync(whatsapp("#1042", OLD))
    searches = account.searches()
    again = account.sync(whatsapp("#1043", OLD))
    assert again.calls == 3 and account.searches() == searches


def test_the_key_outranks_the_identity(account: Account) -> None:
    """A contact already carrying the key is the patient's, even when another contact has their BSUID."""
    theirs = account.sync(whatsapp("#1042", OLD)).contact.id
    account.emulator.add_record("contacts", {"firstname": "Typed", "chat2crm_whatsapp_user_id": BSUID})
    again = account.sync(whatsapp("#1043", OLD), account.fresh())
    assert again.contact.id == theirs and account.emulator.count("contacts") == 2


def test_a_person_made_contact_with_the_bsuid_is_adopted_and_keeps_its_number(account: Account) -> None:
    typed = account.emulator.add_record("contacts", {"firstname": "Ayse", "phone": "0532 111 22 33",
                                                     "chat2crm_whatsapp_user_id": BSUID})
    result = account.sync(whatsapp("#1042", NEW))
    assert result.contact.id == typed["id"] and account.emulator.count("contacts") == 1
    adopted = account.contact(typed["id"])
    assert adopted["chat2crm_contact_key"] == f"whatsapp:{NEW}" and adopted["phone"] == "0532 111 22 33"


def test_a_contact_with_another_bsuid_is_another_person(account: Account) -> None:
    account.sync(whatsapp("#1042", OLD))
    other = account.sync(whatsapp("#1043", NEW, bsuid="TR.5550000001"), account.fresh())
    assert account.emulator.count("contacts") == 2
    assert account.contact(other.contact.id)["chat2crm_contact_key"] == f"whatsapp:{NEW}"


def test_a_telegram_username_on_another_chat_is_another_person(account: Account) -> None:
    """A Telegram chat id never changes, and a username passes on when its owner gives it up."""
    first = account.sync(telegram("#1042", "111111", "ayse_y"))
    assert account.contact(first.contact.id)["chat2crm_telegram_username"] == "ayse_y"
    other = account.sync(telegram("#1043", "222222", "ayse_y"), account.fresh())
    assert other.contact.id != first.contact.id and account.emulator.count("contacts") == 2
    assert account.contact(first.contact.id)["chat2crm_contact_key"] == "telegram:111111"


def test_a_person_made_contact_with_the_telegram_username_is_adopted(account: Account) -> None:
    typed = account.emulator.add_record("contacts", {"firstname": "Ayse", "chat2crm_telegram_username": "Ayse_Y"})
    result = account.sync(telegram("#1042", "111111", "ayse_y"))
    assert result.contact.id == typed["id"] and account.emulator.count("contacts") == 1
    assert account.contact(typed["id"])["chat2crm_contact_key"] == "telegram:111111"
