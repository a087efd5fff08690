"""Templates: escaping in HTML targets only, and values written for the people who read the CRM."""

from __future__ import annotations

from typing import Any

import pytest

from connector.templating import check_template, human, human_date, label, render, yesno


@pytest.mark.parametrize(("value", "language", "expected"), [
    ({"start": "2027-03-10", "end": "2027-03-17"}, "en", "10–17 March 2027"),
    ({"start": "2027-03-10", "end": "2027-03-17"}, "tr", "10–17 Mart 2027"),
    ({"start": "2027-03-10", "end": "2027-03-17"}, "de", "10.–17. März 2027"),
    ({"start": "2027-03-10", "end": "2027-03-17"}, "ru", "10–17 марта 2027"),
    ({"start": "2027-03-10", "end": "2027-03-17"}, "ar", "10–17 مارس 2027"),
    ({"start": "2027-02-28", "end": "2027-03-03"}, "en", "28 February – 3 March 2027"),
    ({"start": "2026-12-28", "end": "2027-01-03"}, "tr", "28 Aralık 2026 – 3 Ocak 2027"),
    ({"start": "2027-03-10", "end": None}, "en", "10 March 2027"),
    ({"start": "2027-03-10", "end": "2027-03-10"}, "en", "10 March 2027"),
    ("2027-03-10", "de", "10. März 2027"),
    ("2026-11-25T11:00:00+03:00", "en", "25 November 2026, 11:00"),
    ("2026-11-25T11:00:00+03:00", "xx", "25 November 2026, 11:00"),  # an unknown language: English
    ("next spring", "en", "next spring"),
    ("2027-13-45", "en", "2027-13-45"),
    (None, "en", ""),
])
def test_human_dates(value: Any, language: str, expected: str) -> None:
    assert human_date(value, language) == expected


def test_yes_no_and_any_answer_for_people() -> None:
    assert [yesno(True), yesno(False), yesno("true", "tr"), yesno(False, "tr"), yesno(True, "de"), yesno(None)] == [
        "yes", "no", "evet", "hayır", "ja", ""]
    assert human(True, "ru") == "да" and human(["dental", "eye"]) == "dental, eye" and human(None) == ""
    assert human({"start": "2027-03-10", "end": "2027-03-17"}) == "10–17 March 2027"
    assert human(3) == "3" and human("Saç ekimi") == "Saç ekimi"
    assert label("travel_dates") == "Travel dates" and label("consent") == "Consent"


def test_html_templates_escape_every_value_and_text_templates_none() -> None:
    context = {"note": "<script>alert(1)</script>", "name": "Tom & Jerry", "summary": "one <b>\ntwo & three"}
    html = render("<p>{{ note }} · {{ name }}</p><p>{{ summary | linebreaks }}</p>", context, html=True)
    assert html == ("<p>&lt;script&gt;alert(1)&lt;/script&gt; · Tom &amp; Jerry</p>"
                    "<p>one &lt;b&gt;<br>\ntwo &amp; three</p>")
    text = render("{{ note }} · {{ name }} · {{ summary | linebreaks }}", context)
    assert text == "<script>alert(1)</script> · Tom & Jerry · one <b>\ntwo & three"


def test_a_filter_that_does_not_exist_is_reported_by_the_check() -> None:
    assert check_template("{{ answers.travel_dates | human_date('tr') }}") is None
    assert check_template("{{ answers.travel_dates | humane }}") is not None
    assert check_template("{{ answers.topic ") is not None
