"""E-mail channel: aiosmtplib, implicit TLS or STARTTLS, optional auth, to/cc/bcc, templated bodies.

config: {"host", "port" (465 with "tls", 587 with "starttls", 25 with "none"),
"security": "starttls" (default) | "tls" | "none", "tls_verify" (default true), "ca_cert" (PEM),
"username", "from", "to": [...], "cc": [...], "bcc": [...], "subject_template",
"text_template", "html_template"}; secrets: {"smtp_password"}.

Templates are Jinja2 rendered in a sandbox (no attribute tricks, no imports) with the delivery
payload as context (alert, device, tenant, transition, links, delivery_id, ...); HTML is
autoescaped. The Message-ID is derived from the stable delivery id, so a repeat after a crash
is the same message to the receiving side. The SMTP host is vetted by the SSRF guard and the
connection is made to the vetted address, while TLS checks the configured name.
"""

from __future__ import annotations

import ssl
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

import aiosmtplib
import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from services.common.ssrf import AddressPolicy, BlockedDestination, pinned_tls_context
from services.delivery_worker.channels.base import Delivery, Outcome

__all__ = ["DEFAULT_HTML", "DEFAULT_SUBJECT", "DEFAULT_TEXT", "EmailChannel", "TemplateProblem", "render"]

DEFAULT_SUBJECT = (
    "[Pulse] {{ alert.severity }} {{ alert.alert_type }} {{ transition }}"
    "{% if device.device_id %} on {{ device.device_id }}{% endif %}"
)
DEFAULT_TEXT = """\
{{ alert.summary or alert.alert_type }}

Transition: {{ transition }}
Severity:   {{ alert.severity }}
Status:     {{ alert.status }}
Tenant:     {{ tenant.name }} ({{ tenant.tenant_id }})
Device:     {{ device.device_id or "-" }}{% if device.site_id %} at site {{ device.site_id }}{% endif %}
At:         {{ at }}

Alert: {{ links.alert }}
Delivery id: {{ delivery_id }}
"""
DEFAULT_HTML = """\
<html><body>
<h2>{{ alert.severity }} {{ alert.alert_type }}: {{ transition }}</h2>
<p>{{ alert.summary }}</p>
<table>
<tr><th align="left">Status</th><td>{{ alert.status }}</td></tr>
<tr><th align="left">Tenant</th><td>{{ tenant.name }} ({{ tenant.tenant_id }})</td></tr>
<tr><th align="left">Device</th><td>{{ device.device_id or "-" }}</td></tr>
<tr><th align="left">Site</th><td>{{ device.site_id or "-" }}</td></tr>
<tr><th align="left">At</th><td>{{ at }}</td></tr>
</table>
<p><a href="{{ links.alert }}">Open the alert in Pulse</a></p>
<p style="color:#888">Delivery id {{ delivery_id }}</p>
</body></html>
"""

_text_env = ImmutableSandboxedEnvironment(autoescape=False, undefined=jinja2.ChainableUndefined)
_html_env = ImmutableSandboxedEnvironment(autoescape=True, undefined=jinja2.ChainableUndefined)
_MAX_TEMPLATE = 20_000
_PORTS = {"tls": 465, "starttls": 587, "none": 25}


class TemplateProblem(ValueError):
    """A template that does not parse, escapes the sandbox or fails to render."""


def render(template: str, context: dict[str, Any], *, html: bool = False) -> str:
    if len(template) > _MAX_TEMPLATE:
        raise TemplateProblem(f"template longer than {_MAX_TEMPLATE} characters")
    env = _html_env if html else _text_env
    try:
        return env.from_string(template).render(context)
    except jinja2.TemplateError as exc:  # incl. SecurityError from the sandbox
        raise TemplateProblem(f"{type(exc).__name__}: {exc}") from exc


def _addresses(value: Any, field: str) -> list[str]:
    items = [value] if isinstance(value, str) else value or []
    if not isinstance(items, list):
        raise ValueError(f"{field} must be a list of addresses")
    out = []
    for item in items:
        if not isinstance(item, str) or "@" not in item or any(c in item for c in "\r\n,;<>"):
            raise ValueError(f"{field}: invalid address {item!r}")
        out.append(item.strip())
    return out


def build_message(delivery: Delivery) -> tuple[EmailMessage, list[str]]:
    """The message and its envelope recipients; ValueError/TemplateProblem for a bad config."""
    cfg = delivery.config
    to, cc, bcc = _addresses(cfg.get("to"), "to"), _addresses(cfg.get("cc"), "cc"), _addresses(cfg.get("bcc"), "bcc")
    if not to and not cc and not bcc:
        raise ValueError("at least one recipient (to, cc or bcc) is required")
    (sender,) = _addresses(cfg.get("from") or "pulse@localhost", "from")
    context = dict(delivery.payload)
    subject = render(str(cfg.get("subject_template") or DEFAULT_SUBJECT), context)
    text = render(str(cfg.get("text_template") or DEFAULT_TEXT), context)
    html = render(str(cfg.get("html_template") or DEFAULT_HTML), context, html=True)
    msg = EmailMessage()
    msg["Subject"] = " ".join(subject.split())[:900]  # one line: no header injection
    msg["From"] = sender
    if to:
        msg["To"] = ", ".join(to)
    if cc:
        msg["Cc"] = ", ".join(cc)
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = f"<{delivery.delivery_id}@pulse.delivery>"
    msg["X-Pulse-Delivery-Id"] = delivery.delivery_id
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    return msg, to + cc + bcc


class EmailChannel:
    def __init__(self, policy: AddressPolicy, *, timeout_s: float = 10.0) -> None:
        self.policy = policy
        self.timeout_s = timeout_s

    async def send(self, delivery: Delivery) -> Outcome:
        cfg = delivery.config
        host = cfg.get("host")
        security = cfg.get("security", "starttls")
        if not isinstance(host, str) or not host or security not in _PORTS:
            return Outcome.failed("config: host is required and security must be tls, starttls or none")
        port = cfg.get("port") or _PORTS[security]
        if not isinstance(port, int) or not 0 < port < 65536:
            return Outcome.failed("config: port must be 1-65535")
        try:
            msg, recipients = build_message(delivery)
        except (ValueError, TemplateProblem) as exc:
            return Outcome.failed(f"config: {exc}")
        try:
            addresses = await self.policy.resolve(host, port)
        except BlockedDestination as exc:
            return Outcome.retry(str(exc)) if exc.reason == "unresolvable" else Outcome.failed(str(exc))
        password = delivery.secrets.get("smtp_password")
        username = cfg.get("username")
        try:
            tls_context = pinned_tls_context(
                host, verify=bool(cfg.get("tls_verify", True)), cadata=_pem(cfg.get("ca_cert"))
            )
        except (ssl.SSLError, ValueError) as exc:
            return Outcome.failed(f"config: ca_cert: {exc}")
        for i, ip in enumerate(addresses):
            smtp = aiosmtplib.SMTP(
                hostname=str(ip),  # the vetted address; TLS still checks `host` (pinned context)
                port=port,
                use_tls=security == "tls",
                start_tls=security == "starttls",
                tls_context=tls_context,
                timeout=self.timeout_s,
            )
            try:
                async with smtp:
                    if username and isinstance(password, str):
                        await _login(smtp, str(username), password)
                    await smtp.send_message(msg, recipients=recipients)
            except aiosmtplib.SMTPConnectError as exc:
                if i + 1 < len(addresses):
                    continue  # the next vetted address of the same name
                return Outcome.retry(f"smtp: {exc}"[:500])
            except aiosmtplib.SMTPRecipientsRefused as exc:
                codes = [r.code for r in exc.recipients]
                if all(400 <= c < 500 for c in codes):
                    return Outcome.retry(f"smtp: recipients refused for now: {codes}")
                return Outcome.failed(f"smtp: recipients refused: {codes}")
            except aiosmtplib.SMTPResponseException as exc:
                if 400 <= exc.code < 500:
                    return Outcome.retry(f"smtp: {exc.code} {exc.message}"[:500], exc.code)
                return Outcome.failed(f"smtp: {exc.code} {exc.message}"[:500], exc.code)
            except (aiosmtplib.SMTPException, OSError, ssl.SSLError, TimeoutError) as exc:
                return Outcome.retry(f"smtp: {type(exc).__name__}: {exc}"[:500])
            break
        return Outcome.success(250)

    async def close(self) -> None:
        return None


async def _login(smtp: aiosmtplib.SMTP, username: str, password: str) -> None:
    """One mechanism, PLAIN or LOGIN when offered: aiosmtplib's login() tries every mechanism in
    turn after a refusal, and some servers then never answer."""
    await smtp.ehlo()  # the capabilities after STARTTLS
    methods = smtp.supported_auth_methods
    if "plain" in methods:
        await smtp.auth_plain(username, password)
    elif "login" in methods:
        await smtp.auth_login(username, password)
    else:
        await smtp.login(username, password)


def _pem(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None
