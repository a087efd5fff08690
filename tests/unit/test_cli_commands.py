"""``chat2crm`` finds its commands by name and imports only the one it runs."""

from __future__ import annotations

import subprocess
import sys

import click

from connector import cli


def test_each_command_found_by_name_is_the_command_of_that_name() -> None:
    found = cli.discovered()
    assert {"channels", "crm", "failed", "forget", "init", "keygen", "links", "release", "report", "simulate",
            "demo"} <= set(found)
    for name, load in found.items():
        command = load()
        assert command is None or (isinstance(command, click.Command) and command.name == name), name
    # a module of connector.commands without a command (a helper) is not listed as one
    assert found["report_first_pass"]() is None
    assert "report_first_pass" not in cli.main.list_commands(click.Context(cli.main)) or (
        cli.main.get_command(click.Context(cli.main), "report_first_pass") is None)


def test_running_one_command_imports_no_other_and_not_the_runtime() -> None:
    probe = ("import sys\nfrom connector import cli\n"
             "try:\n    cli.main(['keygen'])\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in sys.modules if m.startswith(('connector.commands.', 'demo', 'connector.runtime'))))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip().splitlines()[-1] == "['connector.commands.keygen']"
