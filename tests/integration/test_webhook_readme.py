"""What the README tells a webhook receiver is what it gets: the fields of the JSON body,
and a signature it can check as the README says, with the secret as the environment
variable the rule file names holds it."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time
from pathlib import Path

from herald.delivery.provider import SendRequest
from herald.delivery.providers.webhook_config import webhook_provider
from tests.support.http_receiver import HttpReceiver, ReceivedRequest

README = Path(__file__).resolve().parents[2] / "README.md"
REQUEST = SendRequest(
    "msg_1", "sms", "+351910000001", "R", "R:u1", "u1", "e1", "Olá", "Até já, José"
)


def webhook_item() -> str:
    text = README.read_text(encoding="utf-8")
    item = text.split("\n- **Webhook** ", 1)[1].split("\n- ", 1)[0]
    return " ".join(item.split())


def posted(env: dict[str, str], **spec: str) -> ReceivedRequest:
    """What a receiver gets of ``REQUEST``, sent by the webhook provider the rule file's
    ``spec`` (its url added) describes, its secrets read from ``env``."""
    with HttpReceiver() as receiver:
        problems: list[str] = []
        provider = webhook_provider(
            "sms", {"url": receiver.url, **spec}, env, "providers.sms", problems
        )
        assert provider is not None, problems

        async def send() -> None:
            await provider.send(REQUEST)
            await provider.aclose()

        asyncio.run(send())
    [received] = receiver.requests
    return received


def test_the_readme_names_every_field_of_a_webhook_s_body() -> None:
    said = re.search(r"as a JSON object, `\{([^}]*)\}`", webhook_item())
    assert said, webhook_item()
    body = json.loads(posted({}).body)
    assert re.findall(r'"(\w+)"', said[1]) == list(body)


def test_a_receiver_checks_the_signature_as_the_readme_says_with_a_secret_beyond_ascii() -> None:
    assert "keyed with the secret's UTF-8 bytes" in webhook_item()
    secret = "whsec_ünïcødé"
    received = posted({"HOOK_SECRET": secret}, secret_env="HOOK_SECRET")
    parts = dict(part.split("=", 1) for part in received.headers["herald-signature"].split(","))
    signed = f"{parts['t']}.".encode() + received.body
    expected = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, parts["v1"])
    assert abs(time.time() - int(parts["t"])) <= 300
