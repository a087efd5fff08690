"""A local certificate authority for the Salesforce emulator, which is served over HTTPS because the
Salesforce client the relay uses insists on https URLs (and its Pub/Sub API over gRPC with TLS, as
Salesforce serves it)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class LocalTLS:
    """A local certificate authority's server context and the CA bundle that trusts it."""

    ssl_context: ssl.SSLContext
    ca_bundle: Path
    ca_pem: bytes = field(repr=False, default=b"")
    #: the server's certificate chain and private key (PEM), for servers that take them as bytes (gRPC)
    server_chain_pem: bytes = field(repr=False, default=b"")
    server_key_pem: bytes = field(repr=False, default=b"")


def make_test_tls(directory: Path) -> LocalTLS:
    """Make a test CA with ``trustme``, a server certificate for 127.0.0.1 and localhost, and a CA bundle
    (the system CAs plus ours) at ``directory/ca-bundle.pem``.

    ``requests`` lets ``REQUESTS_CA_BUNDLE`` win over ``verify=``: point that variable at
    :attr:`LocalTLS.ca_bundle` for the process that calls the emulator.
    """
    import certifi
    import trustme

    ca = trustme.CA(organization_name="chat2crm test CA")
    server = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.configure_cert(context)
    directory.mkdir(parents=True, exist_ok=True)
    bundle = directory / "ca-bundle.pem"
    system = Path(certifi.where()).read_bytes()
    bundle.write_bytes(system.rstrip(b"\n") + b"\n" + ca.cert_pem.bytes())
    return LocalTLS(ssl_context=context, ca_bundle=bundle, ca_pem=ca.cert_pem.bytes(),
                    server_chain_pem=b"".join(blob.bytes() for blob in server.cert_chain_pems),
                    server_key_pem=server.private_key_pem.bytes())
