"""`chat2crm check` catches what would break at run time: each case starts from the configuration `chat2crm init`
writes, breaks one thing the way a new user would, and expects the check to name the file, the line, the key and
the name; the shipped configuration checks clean."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from connector.bot.flows import load_flows
from connector.bot.lead import build_lead
from connector.cli import main
from connector.commands.init import CRMS, scaffold
from connector.runtime import Runtime
from connector.samples import SAMPLE_NOW, sample_conversation, summary_context
from connector.templating import render
from tests.conftest import make_settings
from tests.paths import FLOWS

#: no test here talks to Redis: the check reads files only
NO_REDIS = "redis://127.0.0.1:1/0"


def clinic(tmp_path: Path, crm: str = "hubspot") -> Path:
    """A fresh copy of the shipped configuration for ``crm``, as `chat2crm init` writes it."""
    scaffold(tmp_path / "clinic", crm)
    return tmp_path / "clinic"


def edit(path: Path, old: str, new: str) -> None:
    """Replace every ``old`` in ``path`` with ``new``."""
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} is not in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def problems(directory: Path) -> list[str]:
    """What the check finds, as it prints each problem."""
    runtime = Runtime(make_settings(NO_REDIS, chat2crm_config=directory / "chat2crm.yaml"))
    return [str(p) for p in runtime.check()]


def line_of(path: Path, text: str) -> int:
    """The line of ``path`` that holds ``text`` (1-based)."""
    return next(i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if text in line)


@pytest.mark.parametrize("crm", CRMS)
def test_the_shipped_configuration_is_ok(tmp_path: Path, crm: str) -> None:
    directory = clinic(tmp_path, crm)
    assert problems(directory) == []
    result = CliRunner().invoke(main, ["check"], env={"CHAT2CRM_CONFIG": str(directory / "chat2crm.yaml")})
    assert result.exit_code == 0, result.output
    assert f"configuration ok: {crm} mapping, 2 flow(s), 6 campaign(s)" in result.output


def test_a_default_flow_that_names_no_flow(tmp_path: Path) -> None:
    directory = clinic(tmp_path)
    edit(directory / "chat2crm.yaml", "default_flow: health_tourism_intake", "default_flow: health_intake")
    main_file = directory / "chat2crm.yaml"
    assert problems(directory) == [
        f"{main_file}:{line_of(main_file, 'default_flow:')}: default_flow: 'health_intake' is no flow "
        "(flows: health_tourism_intake, meeting_request)"]


def test_a_whatsapp_number_whose_flow_does_not_exist(tmp_path: Path) -> None:
    directory = clinic(tmp_path)
    edit(directory / "chat2crm.yaml", "  whatsapp:\n", "  whatsapp:\n    numbers: [{phone_number_id: '1065', flow: dental}]\n")
    (found,) = problems(directory)
    assert "channels.whatsapp.numbers.0.flow: unknown flow 'dental'" in found


def test_a_placeholder_typo_in_a_flow_text(tmp_path: Path) -> None:
    directory = clinic(tmp_path)
    flow = directory / "bot_flows" / "meeting_request.yaml"
    edit(flow, "Your meeting request is recorded as {reference}.", "Your meeting request is recorded as {referense}.")
    edit(flow, "Happy to help you on behalf of {clinic}.", "Happy to help you on behalf of {clinic.")
    assert problems(directory) == [
        f"{flow}:{line_of(flow, 'on behalf of {clinic.')}: texts.greeting.en: the text cannot be filled: "
        "expected '}' before end of string (write {{ and }} for a brace shown as it is)",
        f"{flow}:{line_of(flow, '{referense}')}: texts.done.en: unknown placeholder {{referense}} "
        "(this text can use {clinic}, {reference})",
    ]


def test_a_placeholder_a_text_is_not_given(tmp_path: Path) -> None:
    directory = clinic(tmp_path)
    flow = directory / "bot_flows" / "meeting_request.yaml"
    edit(flow, 'en: "Welcome back! A few questions for your new request."',
         'en: "Welcome back! A few questions for your new request ({reference})."')
    (found,) = problems(directory)
    assert "texts.welcome_back.en: unknown placeholder {reference} (this text can use {clinic})" in found


def test_misspelled_names_in_the_mapping_templates(tmp_path: Path) -> None:
    directory = clinic(tmp_path)
    mapping = directory / "mappings" / "hubspot.yaml"
    edit(mapping, "{{ contact.name or contact.channel_id }} ({{ reference }})",
         "{{ contact.nmae or contact.channel_id }} ({{ refrence }})")
    edit(mapping, "Reply on {{ contact.channel }}.", "Reply on {{ contact.channel }} about {{ answers.treatmnet }}.")
    edit(mapping, "{{ last_touch.campaign or", "{{ last_touch.campain or")
    found = problems(directory)
    dealname, body, note = (line_of(mapping, text) for text in ("dealname:", "body:", "template: |"))
    assert found == [
        f"{mapping}:{dealname}: record.fields.dealname: contact.nmae does not exist (did you mean 'name'?)",
        f"{mapping}:{dealname}: record.fields.dealname: undefined name 'refrence' (did you mean 'reference'?)",
        f"{mapping}:{note}: note.template: last_touch.campain does not exist (did you mean 'campaign'?)",
        f"{mapping}:{body}: task.body: answers.treatmnet: no question collects it (did you mean 'treatment'?)",
    ]


def test_misspelled_names_in_a_flow_summary_and_tags(tmp_path: Path) -> None:
    directory = clinic(tmp_path)
    flow = directory / "bot_flows" / "meeting_request.yaml"
    edit(flow, "Meeting request {{ reference }}: {{ answers.topic }}", "Meeting request {{ reference }}: {{ answers.topik }}")
    edit(flow, '"lang:{{ language }}"', '"lang:{{ lang }}"')
    assert problems(directory) == [
        f"{flow}:{line_of(flow, 'summary:')}: summary: answers.topik: no question collects it (did you mean 'topic'?)",
        f"{flow}:{line_of(flow, 'lang:{{ lang }}')}: tags.1: undefined name 'lang' (did you mean 'language'?)",
    ]


def test_a_template_that_fails_on_a_lead_with_nothing_answered(tmp_path: Path) -> None:
    directory = clinic(tmp_path)
    mapping = directory / "mappings" / "hubspot.yaml"
    edit(mapping, 'subject: "Reply to {{ contact.name or \'patient\' }}', 'subject: "Reply to {{ contact.name.upper() }}')
    (found,) = problems(directory)
    assert found.startswith(f"{mapping}:{line_of(mapping, 'subject:')}: task.subject: template fails on a sample lead:")
    assert "'None' has no attribute 'upper'" in found


def test_a_campaign_in_a_language_the_bot_does_not_speak(tmp_path: Path) -> None:
    directory = clinic(tmp_path)
    campaigns = directory / "campaigns.yaml"
    edit(campaigns, "    language: ru\n", "    language: fr\n")
    line = line_of(campaigns, "language: fr")
    assert problems(directory) == [
        f"{campaigns}:{line}: campaigns.3.language: language 'fr' is not one the bot speaks (chat2crm.yaml's "
        "languages) (languages: tr, en, de, ar, ru)",
        f"{campaigns}:{line}: campaigns.3.language: flow 'health_tourism_intake' has no texts in 'fr' "
        "(its languages: tr, en, de, ar, ru)",
    ]


def test_a_campaign_language_its_flow_does_not_speak(tmp_path: Path) -> None:
    directory = clinic(tmp_path)
    edit(directory / "chat2crm.yaml", "languages: [tr, en, de, ar, ru]", "languages: [tr, en, de, ar, ru, fr]")
    edit(directory / "campaigns.yaml", "    language: ru\n", "    language: fr\n")
    (found,) = problems(directory)
    assert "campaigns.3.language: flow 'health_tourism_intake' has no texts in 'fr'" in found


def test_a_campaign_known_answer_and_a_condition_naming_what_does_not_exist(tmp_path: Path) -> None:
    directory = clinic(tmp_path)
    campaigns, flow = directory / "campaigns.yaml", directory / "bot_flows" / "health_tourism_intake.yaml"
    edit(campaigns, "known: {treatment: dental}", "known: {treatmnet: dental}")
    with flow.open("a", encoding="utf-8") as handle:  # a question asked only for one treatment, misspelled
        handle.write("  - field: dental_detail\n    type: text\n    optional: true\n"
                     "    when: {field: treatment, equals: dentl}\n"
                     "    prompt: {tr: Diş?, en: Teeth?, de: Zähne?, ar: أسنان؟, ru: Зубы?}\n")
    assert problems(directory) == [
        f"{campaigns}:{line_of(campaigns, 'treatmnet')}: campaigns.1.known.treatmnet: known answer 'treatmnet': no "
        "question of flow 'health_tourism_intake' takes it (did you mean 'treatment'?)",
        f"{flow}:{line_of(flow, 'equals: dentl')}: steps.9.when: 'dentl' is no option of 'treatment' "
        "(did you mean 'dental'?)",
    ]


def test_adapter_options_are_validated_by_the_adapters_own_model(tmp_path: Path) -> None:
    directory = clinic(tmp_path)
    mapping = directory / "mappings" / "hubspot.yaml"
    edit(mapping, "  property_group: chat2crm", "  property_grup: chat2crm\n  inbox: shared_inbox")
    line = line_of(mapping, "property_grup")
    assert sorted(problems(directory)) == [
        f"{mapping}:{line}: options.property_grup: unknown key",
        f"{mapping}:{line + 1}: options.inbox: Input should be 'auto', 'custom_channel', 'timeline' or 'none'",
    ]


def test_adapter_options_that_name_a_field_the_mapping_does_not_write(tmp_path: Path) -> None:
    directory = clinic(tmp_path, "salesforce")
    mapping = directory / "mappings" / "salesforce.yaml"
    edit(mapping, "    field: Chat2CRM_Campaign__c\n", "    field: Campaign_Name__c\n")
    (found,) = problems(directory)
    assert found.startswith(f"{mapping}:{line_of(mapping, 'field: Campaign_Name__c')}: options.campaign_member.field: "
                            "'Campaign_Name__c' is not a field the mapping writes on the contact or the record")


def test_mapping_statuses_without_what_writes_them(tmp_path: Path) -> None:
    directory = clinic(tmp_path)
    mapping = directory / "mappings" / "hubspot.yaml"
    edit(mapping, "  stage_property: dealstage\n", "")
    (found,) = problems(directory)
    assert found.startswith(f"{mapping}:{line_of(mapping, 'statuses:')}: record.statuses: statuses are mapped but "
                            "stage_property is not set, so no stage is written")


def test_window_templates_for_a_language_the_bot_does_not_speak(tmp_path: Path) -> None:
    directory = clinic(tmp_path)
    main_file = directory / "chat2crm.yaml"
    main_file.write_text(main_file.read_text(encoding="utf-8") + "inbox:\n  window_templates:\n"
                         "    en: {name: agent_reply, language: en}\n    pt: {name: agent_reply, language: pt_BR}\n",
                         encoding="utf-8")
    assert problems(directory) == [
        f"{main_file}:{line_of(main_file, 'pt: {name')}: inbox.window_templates.pt: a window template for 'pt', "
        "which is not in languages (languages: tr, en, de, ar, ru)"]


def test_every_file_is_checked_when_one_fails_and_each_problem_is_said_once(tmp_path: Path) -> None:
    directory = clinic(tmp_path)
    main_file, flow = directory / "chat2crm.yaml", directory / "bot_flows" / "meeting_request.yaml"
    edit(main_file, "timezone: Europe/Istanbul", "timezone: Europe/Istanbull")
    edit(flow, "max_attempts: 3", "max_attempts: 30")
    edit(directory / "mappings" / "hubspot.yaml", "{{ contact.channel }}", "{{ contact.chanel }}")
    result = CliRunner().invoke(main, ["check"], env={"CHAT2CRM_CONFIG": str(main_file)})
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.startswith("  - ")]
    assert len(lines) == len(set(lines)) == 4, result.output
    assert "timezone: Value error, unknown time zone 'Europe/Istanbull'" in lines[0]
    assert f"{flow}:{line_of(flow, 'max_attempts')}: max_attempts: Input should be less than or equal to 10" in lines[1]
    assert all("contact.chanel does not exist" in line for line in lines[2:]), lines  # the note, and the task
    assert "Traceback" not in result.output


def test_the_summary_context_is_the_one_the_bot_renders_with() -> None:
    """The check renders flow summaries with the context the bot gives them: the same text comes out."""
    for flow in load_flows(FLOWS).values():
        conversation = sample_conversation(flow, full=True)
        lead = build_lead(conversation, flow, now=SAMPLE_NOW, clinic_name="Clinic", transcript_url=None)
        assert lead.summary and render(flow.summary, summary_context(lead, flow, "Clinic")) == lead.summary
        tags = [render(tag, summary_context(lead, flow, "Clinic")) for tag in flow.tags]
        assert [t for t in tags if t] == lead.tags


def test_a_broken_flow_is_said_once_and_what_names_it_is_not_blamed(tmp_path: Path) -> None:
    directory = clinic(tmp_path)
    flow = directory / "bot_flows" / "meeting_request.yaml"
    edit(flow, "    type: email\n", "    type: e-mail\n")
    (found,) = problems(directory)  # the campaigns that start this flow are not reported as naming no flow
    assert found.startswith(f"{flow}:") and "steps.2.type" in found
