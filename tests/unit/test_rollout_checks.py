"""`chat2crm check` on the `rollout:` section: each case breaks the configuration `chat2crm init` writes the way a
clinic would, and expects the check to name the file, the line, the key and what is wrong."""

from __future__ import annotations

from pathlib import Path

from tests.unit.test_config_checks import clinic, line_of, problems


def _with_rollout(tmp_path: Path, section: str) -> tuple[Path, Path]:
    directory = clinic(tmp_path)
    main_file = directory / "chat2crm.yaml"
    main_file.write_text(main_file.read_text(encoding="utf-8") + "rollout:\n" + section, encoding="utf-8")
    return directory, main_file


def test_a_valid_rollout_section_checks_clean(tmp_path: Path) -> None:
    directory, _ = _with_rollout(tmp_path, "  default: collect\n  campaigns: {hair-tr: create}\n"
                                           "  channels: {telegram: 'off'}\n"
                                           "  split: {share: 0.25, level: full, group: bot, others: agents}\n")
    assert problems(directory) == []


def test_a_campaign_the_registry_does_not_have(tmp_path: Path) -> None:
    directory, main_file = _with_rollout(tmp_path, "  campaigns:\n    hair-trr: collect\n")
    assert problems(directory) == [
        f"{main_file}:{line_of(main_file, 'hair-trr:')}: rollout.campaigns.hair-trr: rollout level for campaign "
        "'hair-trr', which the campaign registry does not have (did you mean 'hair-tr'?)"]


def test_an_unknown_level(tmp_path: Path) -> None:
    directory, main_file = _with_rollout(tmp_path, "  channels:\n    whatsapp: manual\n")
    (found,) = problems(directory)
    assert found.startswith(f"{main_file}:{line_of(main_file, 'whatsapp: manual')}: rollout.channels")
    assert "unknown rollout level 'manual' (the levels: off, collect, create, full)" in found


def test_an_unknown_channel(tmp_path: Path) -> None:
    directory, main_file = _with_rollout(tmp_path, "  channels:\n    sms: collect\n")
    (found,) = problems(directory)
    assert found.startswith(f"{main_file}:{line_of(main_file, 'sms: collect')}: rollout.channels")
    assert "unknown channel 'sms' (the channels: " in found and "telegram" in found and "whatsapp" in found


def test_a_share_outside_zero_to_one(tmp_path: Path) -> None:
    directory, main_file = _with_rollout(tmp_path, "  split:\n    share: 20\n    level: full\n")
    (found,) = problems(directory)
    assert found.startswith(f"{main_file}:{line_of(main_file, 'share: 20')}: rollout.split.share")
    assert "less than or equal to 1" in found
