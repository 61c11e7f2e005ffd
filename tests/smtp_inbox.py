"""A real SMTP receiver on 127.0.0.1 for the notification tests (aiosmtpd), and the connection that reaches it."""
from __future__ import annotations

import email
import email.policy
import json
import socket
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any


@dataclass
class Mail:
    to: list[str]
    sender: str
    subject: str
    html: str


@dataclass
class Inbox:
    """aiosmtpd handler: keeps every message it is sent."""

    port: int = 0
    mails: list[Mail] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message: EmailMessage = email.message_from_bytes(envelope.content, policy=email.policy.default)  # type: ignore[assignment]
        body = message.get_body(("html", "plain"))
        self.mails.append(Mail(to=list(envelope.rcpt_tos), sender=envelope.mail_from, subject=str(message["Subject"]),
                               html=body.get_content() if body is not None else ""))
        return "250 Message accepted for delivery"

    def connection_json(self, from_email: str = "airflow@pipeline.test") -> str:
        """An Airflow connection (AIRFLOW_CONN_<ID>) to this receiver: plain SMTP, no TLS, no login."""
        return json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": self.port,
                           "extra": {"disable_ssl": True, "disable_tls": True, "from_email": from_email,
                                     "timeout": 10, "retry_limit": 1}})

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[Mail]:
        deadline = time.monotonic() + timeout_s
        while len(self.mails) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.mails)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_inbox() -> tuple[Inbox, Any]:
    """(inbox, controller): call controller.stop() when done."""
    from aiosmtpd.controller import Controller

    inbox = Inbox(port=free_port())
    controller = Controller(inbox, hostname="127.0.0.1", port=inbox.port)
    controller.start()
    return inbox, controller
