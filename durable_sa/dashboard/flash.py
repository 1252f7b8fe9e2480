"""Flash messages: what an action did, shown once on the page it redirects to.

The message travels in a short-lived cookie signed with the app's own random key, not in
the URL: a link cannot put words in the dashboard's mouth (``?error=call support at ...``),
and a reload does not repeat it (the page that shows it deletes the cookie). An action
refused for its input (bad JSON) keeps what was typed in the same cookie, so the form
comes back filled in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Final

import attrs

FLASH_COOKIE: Final = "durable_sa_flash"
FLASH_SECONDS: Final = 60
"""How long an unread message lives (the redirect is followed at once)."""
KEEP_LIMIT: Final = 2000
"""Typed form values longer than this are not kept (a cookie holds about 4 KB)."""


@attrs.frozen(kw_only=True)
class Flash:
    """One message: ``done`` or ``error``, its text, and the form values to show again."""

    kind: str
    text: str
    form: dict[str, str] = attrs.field(factory=dict)


def _sign(body: bytes, key: bytes) -> str:
    return hmac.new(key, body, hashlib.sha256).hexdigest()[:32]


def encode(flash: Flash, key: bytes) -> str:
    """``flash`` as a cookie value: base64 JSON and its signature."""
    form = {k: v for k, v in flash.form.items() if len(v) <= KEEP_LIMIT}
    text = flash.text if len(flash.text) <= KEEP_LIMIT else flash.text[:KEEP_LIMIT] + "..."
    raw = json.dumps({"k": flash.kind, "t": text, "f": form}, ensure_ascii=True).encode()
    body = base64.urlsafe_b64encode(raw).rstrip(b"=")
    return f"{body.decode()}.{_sign(body, key)}"


def decode(value: str | None, key: bytes) -> Flash | None:
    """The message of a cookie value, if it is one this app signed (else ``None``)."""
    if not value or "." not in value:
        return None
    body, _, signature = value.rpartition(".")
    if not hmac.compare_digest(signature.encode(), _sign(body.encode(), key).encode()):
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(body.encode() + b"=" * (-len(body) % 4)))
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("k") not in ("done", "error"):
        return None
    form = data.get("f")
    if not isinstance(form, dict):
        form = {}
    return Flash(
        kind=data["k"],
        text=str(data.get("t", "")),
        form={str(k): str(v) for k, v in form.items()},
    )
