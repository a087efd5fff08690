"""Days and travel dates as a conversation: what the bot takes, what it asks back, and how the answer to
its question is read (the engine, with the shipped flows; "now" is Monday 23 November 2026, 09:30)."""

from __future__ import annotations

import pytest

from tests.unit.test_bot_engine import Chat

TIME_PROMPT = {"en": "Which day and time suit you?", "tr": "Hangi gün ve saat size uygun?"}


def _at_time_step(language: str) -> Chat:
    chat = Chat("meeting_request", language=language)
    for said in ("Hi", "Pricing", "Acme, a@acme.io"):
        chat.send(said)
    assert chat.conv.step == "preferred_time"
    return chat


def test_a_weekday_that_contradicts_the_date_is_confirmed_with_yes_or_no() -> None:
    chat = _at_time_step("en")
    assert chat.send("Monday 12 March 10:00") == ["Do you mean Fri 12.03 10:00?"]  # 12 March 2027 is a Friday
    assert chat.options() == ["when:0", "when:no"] and [o.title for o in chat.last[0].options] == ["Yes", "No"]
    assert "#1042" in chat.send("Yes", choice="when:0")[0]
    assert chat.leads[0].request.preferred_time == "2027-03-12T10:00:00+03:00"
    assert chat.leads[0].request.preferred_time_text == "Monday 12 March 10:00"


def test_a_typed_yes_in_the_patients_language_confirms() -> None:
    chat = _at_time_step("tr")
    assert chat.send("Pazartesi 12 Mart saat 10") == ["Cum 12.03 10:00 mi demek istediniz?"]
    assert [o.title for o in chat.last[0].options] == ["Evet", "Hayır"]
    assert "#1042" in chat.send("evet")[0]
    assert chat.leads[0].request.preferred_time == "2027-03-12T10:00:00+03:00"


def test_no_asks_the_question_again_without_counting_a_mistake() -> None:
    chat = _at_time_step("en")
    chat.send("Monday 12 March 10:00")
    assert chat.send("No", choice="when:no") == [TIME_PROMPT["en"]]
    assert chat.conv.attempts == {} and "confirm" not in chat.conv.pending
    assert chat.send("Tuesday 15 March 10:00") == ["Do you mean Mon 15.03 10:00?"]
    assert chat.send("no") == [TIME_PROMPT["en"]]  # typed
    assert "#1042" in chat.send("Monday 15 March 11:00")[0]  # 15 March 2027 is a Monday: nothing to confirm
    assert chat.leads[0].request.preferred_time == "2027-03-15T11:00:00+03:00"


def test_another_date_instead_of_yes_or_no_is_read_afresh() -> None:
    chat = _at_time_step("en")
    chat.send("Monday 12 March 10:00")
    assert "#1042" in chat.send("no, Friday 12 March at 11")[0]
    assert chat.leads[0].request.preferred_time == "2027-03-12T11:00:00+03:00"


def test_a_day_without_the_time_waits_for_it() -> None:
    chat = _at_time_step("en")
    assert chat.send("Friday 12 March") == ["What time would suit you?", TIME_PROMPT["en"]]
    assert "#1042" in chat.send("at 11")[0]
    assert chat.leads[0].request.preferred_time == "2027-03-12T11:00:00+03:00"
    assert chat.leads[0].request.preferred_time_text == "Friday 12 March at 11"


def test_next_tuesday_said_on_monday_is_asked() -> None:
    chat = _at_time_step("en")
    assert chat.send("next Tuesday 2pm") == ["Which one did you mean?"]
    assert [o.title for o in chat.last[0].options] == ["Tue 24.11 14:00", "Tue 01.12 14:00"]
    chat.send("Tue 01.12 14:00", choice="when:1")
    assert chat.leads[0].request.preferred_time == "2026-12-01T14:00:00+03:00"


def test_a_flow_without_the_confirmation_text_uses_the_relays_own() -> None:
    chat = _at_time_step("de")
    chat.flow = chat.flow.model_copy(update={"texts": {k: v for k, v in chat.flow.texts.items()
                                                       if k != "confirm_date"}})
    assert chat.send("Montag, 12. März um 10 Uhr") == ["Meinen Sie Fr 12.03 10:00?"]


def _at_travel_step(language: str) -> Chat:
    chat = Chat("health_tourism_intake", language=language)
    chat.send("dental")
    chat.send("Berlin")
    assert chat.conv.step == "travel_dates"
    return chat


@pytest.mark.parametrize(("language", "said", "expected"), [
    ("ru", "с 10 по 14 марта", ("2027-03-10", "2027-03-14")),
    ("de", "vom 10. bis 14. März", ("2027-03-10", "2027-03-14")),
    ("tr", "10-14 Mart arası", ("2027-03-10", "2027-03-14")),
    ("en", "between 10 and 14 March", ("2027-03-10", "2027-03-14")),
    ("ar", "١٠–١٤ آذار", ("2027-03-10", "2027-03-14")),
    ("ar", "10 إلى 14 مارس", ("2027-03-10", "2027-03-14")),
    ("tr", "12 subat", ("2027-02-12", None)),
])
def test_travel_dates_in_every_language(language: str, said: str, expected: tuple[str, str | None]) -> None:
    chat = _at_travel_step(language)
    chat.send(said)
    assert chat.conv.answers["travel_dates"] == {"start": expected[0], "end": expected[1]}
    assert chat.conv.answers["travel_dates_text"] == said and chat.conv.step != "travel_dates"


def test_travel_dates_whose_weekday_disagrees_are_confirmed() -> None:
    chat = _at_travel_step("en")
    assert chat.send("Monday 10 March to Friday 14 March") == ["Do you mean Wed 10.03 – Sun 14.03?"]
    chat.send("yes")
    assert chat.conv.answers["travel_dates"] == {"start": "2027-03-10", "end": "2027-03-14"}


def test_travel_dates_without_a_month_are_asked_again() -> None:
    chat = _at_travel_step("de")
    replies = chat.send("vom 10. bis 14.")
    assert replies[0] == "Ich konnte die Daten nicht lesen. Beispiel: 10.-17. März" and "travel_dates" not in \
        chat.conv.answers
