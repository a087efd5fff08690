"""The committed Pub/Sub API stubs are what the committed proto generates, and the relay's and the emulator's
copies are the same (one proto, compiled under one name, so both load in one process)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import REPO

COPIES = [REPO / "adapters" / "salesforce" / "pubsub", REPO / "emulators" / "salesforce" / "pubsub"]
GENERATED = ("pubsub_api_pb2.py", "pubsub_api_pb2.pyi", "pubsub_api_pb2_grpc.py")


def test_the_proto_is_salesforces_and_both_copies_are_the_same() -> None:
    proto = (COPIES[0] / "pubsub_api.proto").read_bytes()
    assert hashlib.sha256(proto).hexdigest().startswith("0a651295ff3ff135")  # as SOURCES.md records it
    for name in ("pubsub_api.proto", "LICENSE", *GENERATED):
        assert (COPIES[0] / name).read_bytes() == (COPIES[1] / name).read_bytes(), name


def test_the_stubs_are_what_the_proto_generates(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    shutil.copy(COPIES[0] / "pubsub_api.proto", tmp_path)
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I.", "--python_out=.", "--pyi_out=.",
                    "--grpc_python_out=.", "pubsub_api.proto"], cwd=tmp_path, check=True, timeout=120)
    grpc_module = tmp_path / "pubsub_api_pb2_grpc.py"
    grpc_module.write_text(grpc_module.read_text().replace("\nimport pubsub_api_pb2 as", "\nfrom . import pubsub_api_pb2 as"))
    for name in GENERATED:
        assert (tmp_path / name).read_text() == (COPIES[0] / name).read_text(), f"{name}: regenerate (see SOURCES.md)"


def test_both_copies_load_in_one_process() -> None:
    code = ("from adapters.salesforce.pubsub import pubsub_api_pb2 as a, pubsub_api_pb2_grpc\n"
            "from emulators.salesforce.pubsub import pubsub_api_pb2 as b, pubsub_api_pb2_grpc as g\n"
            "assert a.FetchRequest is b.FetchRequest\n")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)
