from __future__ import annotations

import email
import email.policy
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from services.common.db import Database
from services.delivery_worker.channels.base import Delivery
from services.delivery_worker.channels.email import TemplateProblem, build_message, render
from services.devstack import free_port
from tests.delivery_worker import seed
from tests.delivery_worker.conftest import running_worker, wait_state
from tests.support import localhost_certificate


@dataclass
class Sink:
    """aiosmtpd handler keeping every accepted message and whether it came over TLS."""

    messages: list[tuple[list[str], EmailMessage, bool]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append((list(envelope.rcpt_tos), msg, session.ssl is not None))
        return "250 OK"


@dataclass(frozen=True)
class Cert:
    cert: Path
    key: Path

    @property
    def pem(self) -> str:
        return self.cert.read_text()


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    d = tmp_path_factory.mktemp("smtp-tls")
    return Cert(*localhost_certificate(d))


def _server_context(cert: Cert) -> Any:
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert.cert, cert.key)
    return ctx


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"pulse", b"mail-pw")
    return AuthResult(success=ok, handled=False)  # not handled: the server answers 535 itself


@pytest.fixture
def starttls_server(cert: Cert) -> Iterator[tuple[Controller, Sink]]:
    sink = Sink()
    controller = Controller(
        sink,
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=_server_context(cert),
        require_starttls=True,
        authenticator=_authenticate,
        auth_require_tls=True,
    )
    controller.start()
    yield controller, sink
    controller.stop()


async def email_integration(admin: asyncpg.Connection, port: int, cert: Cert, **config: Any) -> uuid.UUID:
    return await seed.integration(
        admin,
        type="email",
        config={
            "host": "localhost",
            "port": port,
            "security": "starttls",
            "ca_cert": cert.pem,
            "from": "alerts@pulse.example",
            "to": ["ops@example.com", "oncall@example.com"],
            "cc": ["boss@example.com"],
            "bcc": ["audit@example.com"],
            "username": "pulse",
            **config,
        },
        secrets={"smtp_password": "mail-pw"},
    )


@pytest.mark.integration
async def test_alert_mail_goes_over_starttls_with_auth_to_every_recipient_with_both_bodies(
    db: Database, admin_conn: asyncpg.Connection, cert: Cert, starttls_server: tuple[Controller, Sink]
) -> None:
    controller, sink = starttls_server
    integration_id = await email_integration(admin_conn, controller.port, cert)
    job = await seed.job(admin_conn, integration_id, device_id="pump-1", site_id="site-2", severity="CRITICAL")
    async with running_worker(db):
        await wait_state(admin_conn, job["job_id"], "DELIVERED")
    ((rcpts, msg, over_tls),) = sink.messages
    assert over_tls
    assert sorted(rcpts) == sorted(["ops@example.com", "oncall@example.com", "boss@example.com", "audit@example.com"])
    assert msg["To"] == "ops@example.com, oncall@example.com" and msg["Cc"] == "boss@example.com"
    assert msg["Bcc"] is None
    assert msg["Subject"] == "[Pulse] MAJOR NO_HEARTBEAT OPEN on pump-1"  # the event's severity
    assert msg["Message-ID"] == f"<{job['delivery_id']}@pulse.delivery>"
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    assert "Device:     pump-1 at site site-2" in text.get_content()
    assert f"/alerts/{job['alert_id']}" in html.get_content()


@pytest.mark.integration
async def test_custom_templates_are_rendered_and_html_is_escaped(
    db: Database, admin_conn: asyncpg.Connection, cert: Cert, starttls_server: tuple[Controller, Sink]
) -> None:
    controller, sink = starttls_server
    integration_id = await email_integration(
        admin_conn,
        controller.port,
        cert,
        subject_template="{{ tenant.tenant_id }}: {{ alert.alert_type | lower }}\nBcc: evil@example.com",
        text_template="T {{ device.device_id }}",
        html_template="<b>{{ device.device_id }}</b>",
    )
    job = await seed.job(admin_conn, integration_id, device_id="<script>")
    async with running_worker(db):
        await wait_state(admin_conn, job["job_id"], "DELIVERED")
    ((rcpts, msg, _tls),) = sink.messages
    assert msg["Subject"] == "tenant-a: no_heartbeat Bcc: evil@example.com"  # one line, no injected header
    assert "evil@example.com" not in rcpts
    assert msg.get_body(("plain",)).get_content().strip() == "T <script>"  # type: ignore[union-attr]
    assert msg.get_body(("html",)).get_content().strip() == "<b>&lt;script&gt;</b>"  # type: ignore[union-attr]


@pytest.mark.integration
async def test_wrong_smtp_password_fails_at_once(
    db: Database, admin_conn: asyncpg.Connection, cert: Cert, starttls_server: tuple[Controller, Sink]
) -> None:
    controller, sink = starttls_server
    integration_id = await email_integration(admin_conn, controller.port, cert)
    await admin_conn.execute(
        'UPDATE integrations SET secrets = \'{"smtp_password": "nope"}\' WHERE integration_id = $1', integration_id
    )
    job = await seed.job(admin_conn, integration_id)
    async with running_worker(db):
        failed = await wait_state(admin_conn, job["job_id"], "FAILED")
    assert "535" in failed["last_error"] and sink.messages == []


@pytest.mark.integration
async def test_implicit_tls_delivers(db: Database, admin_conn: asyncpg.Connection, cert: Cert) -> None:
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port(), ssl_context=_server_context(cert))
    controller.start()
    try:
        integration_id = await email_integration(
            admin_conn, controller.port, cert, security="tls", username=None, to=["a@example.com"], cc=[], bcc=[]
        )
        job = await seed.job(admin_conn, integration_id)
        async with running_worker(db):
            await wait_state(admin_conn, job["job_id"], "DELIVERED")
    finally:
        controller.stop()
    ((rcpts, _msg, _starttls),) = sink.messages
    assert rcpts == ["a@example.com"]  # the listener speaks TLS only


@pytest.mark.unit
def test_sandbox_refuses_templates_that_reach_for_internals() -> None:
    with pytest.raises(TemplateProblem):
        render("{{ ''.__class__.__mro__[1].__subclasses__() }}", {})
    with pytest.raises(TemplateProblem):
        render("{% for %}", {})
    assert render("{{ missing.deeper }}x", {}) == "x"


@pytest.mark.unit
def test_message_needs_recipients_and_refuses_header_tricks_in_addresses() -> None:
    base = {"payload": {}, "delivery_id": "d", "integration_id": "i", "integration_type": "email", "secrets": {}}
    with pytest.raises(ValueError, match="recipient"):
        build_message(Delivery(config={"to": []}, **base))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="invalid address"):
        build_message(Delivery(config={"to": ["a@x.com\r\nBcc: b@y.com"]}, **base))  # type: ignore[arg-type]
