"""Fixtures for the Graph emulator's own tests: a running emulator, a tenant with users, a webhook receiver."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from werkzeug.serving import make_server

from emulator.testing import EmulatorHandle, running_emulator
from tests.support.emulated import PT, Graph, Receiver, World, _Quiet


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    server = make_server("127.0.0.1", 0, rec, threaded=True, request_handler=_Quiet)
    rec.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    thread.join(timeout=5)
    server.server_close()


@pytest.fixture
def emu(tmp_path) -> Iterator[EmulatorHandle]:
    """An emulator with time-compressed retries and short timeouts, fresh for each test."""
    with running_emulator(tmp_path / "emu", time_scale=0.001, batch_window=0.05, handshake_timeout=1.0,
                          delivery_timeout=1.0, retry_timeout=1.0, seed=7) as handle:
        yield handle


@pytest.fixture
def world(emu) -> World:
    control = emu.control
    tenant = control.create_tenant(display_name="Contoso")
    ada = control.create_user(tenant_id=tenant["id"], display_name="Ada Lovelace", mail="ada@contoso.com",
                              time_zone=PT)
    bob = control.create_user(tenant_id=tenant["id"], display_name="Bob Babbage", mail="bob@contoso.com")
    return World(tenant, ada, bob, Graph(emu, control.token(user_id=ada["id"])),
                 Graph(emu, control.token(tenant_id=tenant["id"])), emu)
