"""``chat2crm keygen``: print a new key for TOKEN_ENCRYPTION_KEY.

The tokens of a CRM app installed by OAuth are kept in Redis encrypted with Fernet (AES-128-CBC with an HMAC)
under this key. It is made here, on the operator's machine, from the operating system's random source, and
printed once: nothing is stored.
"""

from __future__ import annotations

import click


@click.command("keygen")
def command() -> None:
    """Print a new Fernet key for TOKEN_ENCRYPTION_KEY (keep it with the deployment's other secrets)."""
    from cryptography.fernet import Fernet

    click.echo(Fernet.generate_key().decode())
