"""A relayed job on the wire: one JSON document, the same for every broker.

Rules:
- The document carries everything a consumer needs to run the job and everything the
  engine needs to send it back (release, defer, dead-letter) without reading the outbox:
  the outbox row's id (the job's id), queue, kind, run, workflow name and version, the
  job payload, the attempts already used and the limit, and when it became due.
- ``"v"`` is the format's version, so a consumer can refuse a document from a newer
  engine with a clear error instead of misreading it.
- Decoding never trusts the broker: anything that is not a well-formed document of a
  known version raises :class:`~durable_sa.errors.PayloadError` naming what is wrong,
  and the consumer dead-letters the message instead of crashing on it.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import attrs

from durable_sa.core.codec import converter, from_json
from durable_sa.errors import PayloadError
from durable_sa.queue.protocol import ClaimedJob

if TYPE_CHECKING:
    from collections.abc import Mapping

FORMAT_VERSION: Final = 1
"""The version of the document :func:`encode_message` writes."""


@attrs.frozen(kw_only=True)
class OutboxMessage:
    """One job, as the relay publishes it and a consumer receives it."""

    id: int
    """The outbox row's id: the job's id everywhere (logs, dead letters)."""
    queue: str
    kind: str
    run_id: int
    workflow: str
    version: str | None
    payload: Any
    """The job payload, as stored; the engine validates it when it runs the job."""
    attempts: int
    """Deliveries used up by earlier copies of this job (a released job comes back)."""
    max_attempts: int
    available_at: datetime
    redeliveries: int = 0
    """Times this job was delivered again before this copy, as counted in the outbox
    (brokers that do not count deliveries themselves; always 0 for those that do)."""

    def claimed(self, *, deliveries: int, claimed_until: datetime | None) -> ClaimedJob:
        """The engine's view of this message, delivered ``deliveries`` times so far."""
        return ClaimedJob(
            id=self.id,
            queue=self.queue,
            kind=self.kind,
            run_id=self.run_id,
            payload=self.payload,
            attempts=self.attempts + self.redeliveries + deliveries,
            max_attempts=self.max_attempts,
            available_at=self.available_at,
            claimed_until=claimed_until,
        )


def encode_message(message: OutboxMessage) -> str:
    """The JSON document for ``message``."""
    document = {"v": FORMAT_VERSION, **converter.unstructure(message)}
    return json.dumps(document, separators=(",", ":"))


def decode_message(raw: str | bytes | object) -> OutboxMessage:
    """Read a document written by :func:`encode_message`.

    Raises:
        PayloadError: ``raw`` is not such a document (not JSON, not an object, an unknown
            format version, a missing or mistyped field).

    """
    if isinstance(raw, bytes):
        try:
            raw = raw.decode()
        except UnicodeDecodeError as exc:
            msg = f"relayed job message is not UTF-8 text: {exc}"
            raise PayloadError(msg) from exc
    if not isinstance(raw, str):
        msg = f"relayed job message must be JSON text, got {type(raw).__name__}"
        raise PayloadError(msg)
    try:
        document = json.loads(raw)
    except ValueError as exc:
        msg = f"relayed job message is not JSON ({exc}): {_preview(raw)}"
        raise PayloadError(msg) from exc
    if not isinstance(document, dict):
        msg = f"relayed job message must be a JSON object: {_preview(raw)}"
        raise PayloadError(msg)
    version = document.pop("v", None)
    if version != FORMAT_VERSION:
        msg = (
            f"relayed job message has format version {version!r}, this engine reads "
            f"version {FORMAT_VERSION}; upgrade the consumer to the producer's durable-sa"
        )
        raise PayloadError(msg)
    return from_json(document, OutboxMessage, what="relayed job message")


def _preview(raw: str, limit: int = 120) -> str:
    return repr(raw if len(raw) <= limit else raw[:limit] + "…")


def message_from_row(row: Mapping[Any, Any]) -> OutboxMessage:
    """The message for an outbox row (as mapped by SQLAlchemy)."""
    return OutboxMessage(
        id=int(row["id"]),
        queue=row["queue"],
        kind=row["kind"],
        run_id=int(row["run_id"]),
        workflow=row["workflow_name"],
        version=row["workflow_version"],
        payload=row["payload"],
        attempts=int(row["attempts"]),
        max_attempts=int(row["max_attempts"]),
        available_at=row["available_at"],
        redeliveries=int(row["redeliveries"]),
    )
