"""What lands in the CRM from the bot: places as city and country, identities, topics, the list button."""

from __future__ import annotations

import pytest

from connector.bot.places import read_pin, read_place
from connector.channels.whatsapp import render
from core.models import Location, SenderProfile
from tests.unit.test_bot_engine import Chat


@pytest.mark.parametrize(("said", "city", "country"), [
    ("Munich, Germany", "Munich", "DE"),
    ("Amsterdam, Hollanda", "Amsterdam", "NL"),
    ("Berlin", "Berlin", "DE"),  # a well-known city alone
    ("Москва, Россия", "Москва", "RU"),
    ("دبي، الإمارات", "دبي", "AE"),
    ("İzmir", "İzmir", "TR"),
    ("Köln / Deutschland", "Köln", "DE"),
    ("London UK", "London", "GB"),
    ("Rotterdam, Niederlande", "Rotterdam", "NL"),
    ("Wien, Österreich", "Wien", "AT"),
    ("الرياض، السعودية", "الرياض", "SA"),
    ("Almanya'da yaşıyorum", None, "DE"),
    ("Hollanda", None, "NL"),
    ("Springfield", "Springfield", None),  # a city the table does not know: the country stays unknown
    ("Lyon, Fransa", "Lyon", "FR"),
    ("Екатеринбург, РФ", "Екатеринбург", "RU"),
    ("Manchester, England", "Manchester", "GB"),
    ("Dallas, USA", "Dallas", "US"),
])
def test_a_written_place_becomes_a_city_and_a_country(said: str, city: str | None, country: str | None) -> None:
    place = read_place(said)
    assert (place.city, place.country) == (city, country)


def test_a_shared_pin_takes_its_address_country() -> None:
    pin = Location(latitude=52.52, longitude=13.4, name="Home", address="Unter den Linden 1, 10117 Berlin, Germany")
    assert read_pin(pin) == read_place("Berlin, Germany")
    assert read_pin(Location(latitude=1.0, longitude=2.0, name="Home")).country is None


@pytest.mark.parametrize(("language", "sender", "said", "city", "country"), [
    ("en", "4915112345678", "Munich, Germany", "Munich", "DE"),
    ("tr", "905321112233", "Amsterdam, Hollanda", "Amsterdam", "NL"),  # a Dutch resident with a Turkish number
    ("de", "905321112233", "Berlin", "Berlin", "DE"),
    ("ru", "79161234567", "Москва, Россия", "Москва", "RU"),
    ("ar", "971501234567", "دبي، الإمارات", "دبي", "AE"),
    ("tr", "4915112345678", "İzmir", "İzmir", "TR"),
    ("en", "905321112233", "Springfield", "Springfield", None),  # never the phone's country for a place given
])
def test_the_lead_carries_the_city_and_country_of_the_answer(language: str, sender: str, said: str, city: str,
                                                             country: str | None) -> None:
    chat = Chat("health_tourism_intake", language=language, sender=sender, profile_name="Hans Müller")
    chat.send("hi")
    chat.send("Dental", choice="dental")
    chat.send(said)
    assert chat.conv.answers["location"] == said  # the words as typed
    assert (chat.conv.answers["location_city"], chat.conv.answers["location_country"]) == (city, country)
    chat.send("human")  # a handoff makes the lead with what was collected
    contact = chat.leads[0].contact
    assert (contact.city, contact.country) == (city, country) and chat.leads[0].request.location == said


def test_a_shared_location_answers_with_its_country() -> None:
    chat = Chat("health_tourism_intake", language="en", sender="905321112233")
    chat.send("hi")
    chat.send("Eye", choice="eye")
    chat.send(None, kind="location", location=Location(latitude=52.37, longitude=4.89, name="Dam Square",
                                                       address="Dam 1, 1012 JS Amsterdam, Netherlands"))
    assert chat.conv.answers["location_country"] == "NL" and chat.conv.answers["location_city"] == "Amsterdam"


def test_without_a_place_question_the_country_is_the_numbers() -> None:
    chat = Chat("meeting_request", language="en", sender="905321112233")
    for said in ("Hi", "Pricing", "Acme, a@acme.io", "Wednesday 11:00"):
        chat.send(said)
    assert chat.leads[0].contact.country == "TR" and chat.leads[0].contact.city is None


def test_whatsapp_business_scoped_id_is_on_the_lead() -> None:
    chat = Chat("meeting_request", language="en")
    chat.send("Hi", sender_user_id="TR.1234567890abcdef")
    chat.send("human")
    contact = chat.leads[0].contact
    assert contact.whatsapp_user_id == "TR.1234567890abcdef" and contact.telegram_username is None


def test_telegram_username_is_kept_and_on_the_lead() -> None:
    chat = Chat("meeting_request", language="en", channel="telegram", sender="555001")
    chat.send("Hi", profile=SenderProfile(name="Anna", username="anna_k"))
    chat.send("Pricing", profile=SenderProfile(name="Anna"))  # a later message without it keeps the one known
    chat.send("human")
    contact = chat.leads[0].contact
    assert contact.telegram_username == "anna_k" and contact.whatsapp_user_id is None


@pytest.mark.parametrize(("said", "topic"), [
    ("Hair transplant.", "Hair transplant"), ("Zahnimplantate!!", "Zahnimplantate"),
    ("ринопластика?", "ринопластика"), ("Implants, crowns & veneers...", "Implants, crowns & veneers"),
    ("Dr. Smith's 3.5 plan", "Dr. Smith's 3.5 plan"),
])
def test_a_written_topic_has_no_trailing_punctuation(said: str, topic: str) -> None:
    chat = Chat("meeting_request", language="en")
    chat.send("Hi")
    chat.send(said)
    assert chat.conv.answers["topic"] == topic


def test_a_chosen_treatment_keeps_its_label() -> None:
    chat = Chat("health_tourism_intake", language="en")
    chat.send("Hi")
    chat.send("Eye (laser)", choice="eye")
    assert chat.conv.answers["treatment_label"] == "Eye (laser)"


@pytest.mark.parametrize(("language", "label"), [("tr", "Seçenekler"), ("en", "Options"), ("de", "Optionen"),
                                                 ("ar", "الخيارات"), ("ru", "Варианты")])
def test_the_list_button_speaks_the_conversations_language(language: str, label: str) -> None:
    chat = Chat("health_tourism_intake", language=language, profile_name="Hans Müller")
    chat.send("hi")
    chat.send("Dental", choice="dental")
    chat.send("Berlin, Germany")
    chat.send("10-17 March")
    chat.send(None, choice="__skip__")  # the e-mail; next: the coordinator's language, five options
    (reply,) = chat.last
    assert reply.list_button == label
    interactive = render(reply)[0]["interactive"]
    assert interactive["type"] == "list" and interactive["action"]["button"] == label


def test_a_flow_without_the_options_text_uses_the_bots_own() -> None:
    chat = Chat("health_tourism_intake", language="tr", profile_name="Hans Müller")
    chat.flow = chat.flow.model_copy(update={"texts": {k: v for k, v in chat.flow.texts.items() if k != "options"}})
    chat.send("merhaba")
    chat.send("Diş", choice="dental")
    chat.send("Berlin")
    chat.send("10-17 Mart")
    chat.send(None, choice="__skip__")
    assert chat.last[0].list_button == "Seçenekler"
