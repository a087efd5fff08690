"""``chat2crm demo``: the whole product on embedded defaults, with emulated channels and CRMs.

The demo sits on top of every other package: it starts the emulators (:mod:`demo.stack`), serves the
relay's web app with the demo page added (:mod:`demo.web`, :mod:`demo.wsgi`, :mod:`demo.serve`) and runs
the command that starts and stops it all (:mod:`demo.command`, registered through the
``chat2crm.commands`` entry point group). The relay itself never imports it.

This module stays light on purpose: the command reads :data:`DEMO_CRMS` to list its choices before it
knows whether the ``demo`` extra the emulators need is installed.
"""

from __future__ import annotations

#: CRMs the demo can show (an emulator ships for each)
DEMO_CRMS = ("hubspot", "salesforce", "pipedrive")

__all__ = ["DEMO_CRMS"]
