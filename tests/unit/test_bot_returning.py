"""A patient who comes back: the request goes on, or a new one starts (docs/flows.md, the rule in each branch)."""

from __future__ import annotations

from core.models import Attribution
from tests.unit.test_bot_engine import FLOWS, Chat

TRAVEL = "When are you thinking of travelling? (e.g. 10-17 March)"
TREATMENT = "Which treatment are you interested in?"
WELCOME_RESUME = "Welcome back! Let us go on where we left off."


def _half_way(**options: object) -> Chat:
    chat = Chat("health_tourism_intake", language="en", profile_name="Hans Müller", **options)  # type: ignore[arg-type]
    chat.send("hello")
    chat.send("Dental care", choice="dental")
    assert chat.send("Munich, Germany") == [TRAVEL]
    return chat


def test_back_after_the_window_with_the_answer_goes_on() -> None:
    chat = _half_way()
    replies = chat.send("10-17 March", minutes=30 * 60)  # 30 hours later, answering the question still on screen
    assert replies[0] == WELCOME_RESUME and replies[-1] == "Your e-mail address? (optional)"
    assert chat.conv.answers["treatment"] == "dental" and chat.conv.answers["location_country"] == "DE"
    assert chat.conv.answers["travel_dates"]["start"].endswith("-03-10")


def test_back_after_the_window_with_a_greeting_is_asked_the_waiting_question_only() -> None:
    chat = _half_way()
    assert chat.send("Hello!", minutes=30 * 60) == [WELCOME_RESUME, TRAVEL]
    assert chat.conv.attempts == {}  # a greeting is no failed answer


def test_within_the_window_the_request_simply_goes_on() -> None:
    chat = _half_way()
    assert chat.send("10-17 March", minutes=60) == ["Your e-mail address? (optional)"]


def test_the_restart_command_starts_a_new_request_keeping_the_person() -> None:
    chat = _half_way()
    replies = chat.send("start over", minutes=30 * 60)
    assert replies[0].startswith("Hello and welcome") and replies[-1] == TREATMENT
    assert chat.conv.answers == {} and chat.conv.known["location"] == "Munich, Germany"


def test_a_bare_start_is_the_restart_command() -> None:
    chat = _half_way()
    assert chat.send("/start", kind="start")[-1] == TREATMENT and "treatment" not in chat.conv.answers


def test_a_start_of_the_same_campaign_goes_on() -> None:
    chat = _half_way()
    replies = chat.send("/start lang_en", kind="start", start_payload="lang_en")
    assert replies == [TRAVEL] and chat.conv.answers["treatment"] == "dental"


def test_a_link_of_another_campaign_starts_a_new_request() -> None:
    chat = _half_way()
    chat.conv.last_touch = Attribution(campaign="eye-en")  # what attribution records for the link's message
    replies = chat.send("Hi, about the laser offer")
    # a new request: the first message read as a first message ("laser" picks the treatment)
    assert replies[0].startswith("Welcome back") and replies[-1] == TRAVEL
    assert chat.conv.answers["treatment"] == "eye" and chat.conv.pending["request"]["campaign"] == "eye-en"
    # the same campaign's link again, mid-way, is no new request
    chat.conv.last_touch = Attribution(campaign="eye-en")
    assert chat.send("10-17 March") == ["Your e-mail address? (optional)"]


def test_a_campaign_starting_another_flow_starts_a_new_request_in_it() -> None:
    chat = _half_way()
    chat.flow = FLOWS["meeting_request"]  # the relay switched the conversation to the campaign's flow
    replies = chat.send("Hello")
    assert replies[0].startswith("Welcome back") and replies[-1] == "What would you like to discuss?"
    assert chat.conv.pending["request"]["flow"] == "meeting_request"


def test_after_a_finished_request_the_person_is_not_asked_again() -> None:
    chat = _half_way()
    chat.send("10-17 March")
    chat.send("hans@example.de")
    chat.send("German", choice="de")
    chat.send("No", choice="no")  # consent declined: the request is complete
    assert chat.conv.status == "closed" and len(chat.leads) == 1
    replies = chat.send("Hello again", minutes=1)  # a minute later: a new request
    assert replies[0].startswith("Welcome back") and replies[-1] == TREATMENT
    chat.send("Eye", choice="eye")
    # where they live, their name, e-mail and language are known: only the request's own questions are asked
    assert chat.last[-1].text == TRAVEL
    assert chat.conv.answers["location"] == "Munich, Germany" and chat.conv.answers["location_city"] == "Munich"
    chat.send("1-5 June")
    assert chat.last[-1].text.startswith("Do you agree")
    chat.send("No", choice="no")
    assert chat.leads[1].contact.city == "Munich" and chat.leads[1].contact.country == "DE"


def test_what_the_crm_holds_of_where_they_live_is_not_asked() -> None:
    chat = Chat("health_tourism_intake", language="de", profile_name="Hans Müller",
                known={"city": "München", "country": "DE", "email": "hans@example.de"})
    chat.send("Hallo")
    assert chat.send("Zahn", choice="dental")[-1].startswith("Wann möchten Sie anreisen")
    assert chat.conv.answers["location"] == "München, Deutschland"
    assert (chat.conv.answers["location_city"], chat.conv.answers["location_country"]) == ("München", "DE")


def test_a_country_alone_from_the_crm_is_no_place() -> None:
    chat = Chat("health_tourism_intake", language="en", known={"country": "TR"})
    chat.send("Hi")
    assert chat.send("Dental", choice="dental") == ["Which country and city do you live in?"]
