"""Finding a queue backend by name or URL: the ``durable_sa.backends`` entry points.

A backend package declares a factory in its metadata::

    [project.entry-points."durable_sa.backends"]
    redis = "durable_sa_redis:RedisStreamsBackend"

and users pick it by name, ``Durable(sa_engine, backend="redis", backend_options={...})``,
or by URL, ``backend="redis://127.0.0.1:6379/0"`` (the scheme names the backend and the
whole URL is passed as the ``url`` option). The built-in jobs table is registered the
same way, as ``jobs_table``, so it is found exactly like a third party's.

The factory contract: ``factory(sa_engine, *, queue, max_attempts, **options)`` returns
an object that satisfies :class:`~durable_sa.queue.protocol.QueueBackend`.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, Final

from durable_sa.errors import BackendNotFound, InvalidArgumentError
from durable_sa.queue.capabilities import Capabilities
from durable_sa.queue.protocol import BatchClaims, InPlaceProducer, QueueBackend

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sqlalchemy import Engine

ENTRY_POINT_GROUP: Final = "durable_sa.backends"


def installed_backends() -> dict[str, EntryPoint]:
    """Every backend installed in this environment, by name."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def backend_name(spec: str) -> tuple[str, dict[str, Any]]:
    """The backend a name or URL selects, and the options the spec itself carries."""
    if "://" in spec:
        scheme = spec.split("://", 1)[0]
        return scheme.split("+", 1)[0].lower(), {"url": spec}
    return spec, {}


def load_backend(
    spec: str,
    sa_engine: Engine,
    *,
    queue: str,
    max_attempts: int,
    options: Mapping[str, Any] | None = None,
) -> QueueBackend:
    """Build the backend ``spec`` names (a name or a URL) for ``sa_engine``.

    Raises:
        BackendNotFound: no installed backend has that name.
        InvalidArgumentError: the backend refused the options, or did not build a
            :class:`QueueBackend`.

    """
    if not isinstance(spec, str) or not spec.strip():
        msg = f"backend must be a QueueBackend, a backend name or a URL, not {spec!r}"
        raise InvalidArgumentError(msg)
    name, from_spec = backend_name(spec.strip())
    found = installed_backends()
    entry = found.get(name)
    if entry is None:
        names = ", ".join(sorted(found)) or "none"
        msg = (
            f"no queue backend named {name!r} is installed (installed: {names}); "
            f"install the package that provides it, e.g. durable-sa-{name}"
        )
        raise BackendNotFound(msg)
    factory = entry.load()
    merged = {**from_spec, **(options or {})}
    try:
        backend = factory(sa_engine, queue=queue, max_attempts=max_attempts, **merged)
    except TypeError as exc:
        msg = f"queue backend {name!r} refused its options {sorted(merged)}: {exc}"
        raise InvalidArgumentError(msg) from exc
    if not isinstance(backend, QueueBackend):
        msg = f"queue backend {name!r} ({entry.value}) did not build a QueueBackend"
        raise InvalidArgumentError(msg)
    return backend


def check_capabilities(backend: QueueBackend) -> Capabilities:
    """``backend``'s capabilities, once checked against the methods it has.

    Raises:
        InvalidArgumentError: the backend declares an ability it does not implement.

    """
    caps = getattr(backend, "capabilities", None)  # a check of the declaration, not a probe
    if not isinstance(caps, Capabilities):
        msg = (
            f"backend {getattr(backend, 'name', backend)!r} must declare its abilities: "
            "a `capabilities` attribute holding a durable_sa.backends.Capabilities value "
            "(Capabilities() for a plain queue)"
        )
        raise InvalidArgumentError(msg)
    implemented = {
        "batch_claims": isinstance(backend, BatchClaims),
        "in_place": isinstance(backend, InPlaceProducer),
    }
    missing = [name for name, has in implemented.items() if getattr(caps, name) and not has]
    if caps.applier_writes_rows and not caps.in_place:
        missing.append("applier_writes_rows (it needs in_place)")
    if missing:
        msg = (
            f"backend {backend.name!r} declares {', '.join(missing)} but lacks the "
            "methods of that protocol; see durable_sa.backends"
        )
        raise InvalidArgumentError(msg)
    return caps
