"""The dashboard's actions: POSTs (write permission, CSRF-checked) that call the engine.

Each action is the engine's own public call (``send``, ``resume``, ``cancel``,
``recover``, ``admin.requeue``, ``pause``, ``unpause``), so the dashboard does exactly what
the API and the CLI do. It answers with a redirect (303) back to the page and a
one-line message in a flash cookie (:mod:`~durable_sa.dashboard.flash`); a refusal the
engine explains (an unknown run, an ended run, bad JSON) comes back the same way, in
words, with what was typed kept for the form.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from durable_sa.dashboard import queries
from durable_sa.errors import DurableError
from durable_sa.results import ResumeReason

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from durable_sa.dashboard.guard import Dashboard, Seen


def _field(request: Request, name: str) -> str:
    value = request.state.form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def _back_to(request: Request, default: str) -> str:
    r"""The form's ``back`` page, if it is one of the dashboard's paths, else ``default``.

    Only a path (``/limits``): never another site (``https://...``, nor ``//host`` or
    ``/\host``, which browsers read as one), so an action cannot redirect away.
    """
    back = _field(request, "back")
    return back if back.startswith("/") and not back.startswith(("//", "/\\")) else default


def _run_id(request: Request) -> int:
    return int(request.path_params["run_id"])


def _not_taken(run_id: int, signal: str, reason: str, brief: queries.RunBrief | None) -> str:
    """Why ``resume`` refused, in words (not the raw ``not_waiting``)."""
    if reason == ResumeReason.TERMINAL:
        return f"run {run_id} did not take signal {signal!r}: it has ended or is rolling back"
    if brief is not None and brief.waits_for:
        now = f"it waits for signal {brief.waits_for!r}, not {signal!r}"
    elif brief is not None:
        now = f"it is {brief.status} and waits for no signal now"
    else:
        now = "it waits for no signal now"
    return f"run {run_id} did not take signal {signal!r}: {now}; send keeps it for a later wait"


def _never_waited(signal: str, brief: queries.RunBrief | None) -> str:
    """A warning when the run's workflow has no step that waits for ``signal`` (else ``""``)."""
    if brief is None:
        return ""
    known = queries.signal_steps(brief.workflow_name)
    if known is None or signal in known:
        return ""
    waits = ", ".join(repr(name) for name in sorted(known)) or "no signal"
    return (
        f"; but workflow {brief.workflow_name!r} never waits for {signal!r}"
        f" (it waits for {waits}): a mistyped name? It stays unread"
    )


def signal_action(dash: Dashboard, request: Request, _seen: Seen) -> Response:  # noqa: PLR0911
    """Send (kept until the run waits for it) or resume (only if it waits now) a signal."""
    run_id = _run_id(request)
    back = f"/runs/{run_id}"
    signal = _field(request, "signal")
    raw = _field(request, "data")
    mode = _field(request, "mode")
    typed = {"signal": signal, "data": raw, "mode": mode}
    if not signal:
        return dash.back(request, back, error="name the signal to send", keep=typed)
    try:
        data = json.loads(raw) if raw else None
    except json.JSONDecodeError as exc:
        return dash.back(request, back, error=f"the data is not valid JSON: {exc}", keep=typed)
    with dash.engine.shell.reading() as session:
        brief = queries.run_brief(session, run_id)
    try:
        if mode == "resume":
            resumed = dash.engine.resume(run_id, signal, data)
            if not resumed.accepted:
                why = _not_taken(run_id, signal, resumed.reason, brief)
                return dash.back(request, back, error=why, keep=typed)
            return dash.back(request, back, done=f"signal {signal!r} resumed run {run_id}")
        sent = dash.engine.send(run_id, signal, data)
    except DurableError as exc:
        return dash.back(request, back, error=str(exc), keep=typed)
    if sent.delivered:
        return dash.back(request, back, done=f"signal {signal!r} delivered")
    warning = _never_waited(signal, brief)
    text = f"signal {signal!r} kept for the run's next wait{warning}"
    if warning:
        return dash.back(request, back, error=text)
    return dash.back(request, back, done=text)


def cancel_action(dash: Dashboard, request: Request, _seen: Seen) -> Response:
    """Cancel a run and its descendants, compensating first when asked."""
    run_id = _run_id(request)
    back = f"/runs/{run_id}"
    compensate = _field(request, "compensate") == "1"
    try:
        result = dash.engine.cancel(run_id, compensate=compensate)
    except DurableError as exc:
        return dash.back(request, back, error=str(exc))
    if not result.canceled:
        return dash.back(request, back, error=f"nothing to cancel: run {run_id} has ended")
    how = "compensating, then canceled" if compensate else "canceled"
    runs = ", ".join(str(run) for run in result.canceled)
    return dash.back(request, back, done=f"{how}: {runs}")


def recover_action(dash: Dashboard, request: Request, _seen: Seen) -> Response:
    """Re-enqueue runs that should progress but have no job."""
    count = dash.engine.recover()
    return dash.back(
        request, _back_to(request, "/dead-letters"), done=f"re-enqueued {count} run(s)"
    )


def requeue_action(dash: Dashboard, request: Request, _seen: Seen) -> Response:
    """Requeue a dead letter as a fresh job."""
    letter = int(request.path_params["letter_id"])
    try:
        job = dash.engine.admin.requeue(letter)
    except DurableError as exc:
        return dash.back(request, "/dead-letters", error=str(exc))
    return dash.back(request, "/dead-letters", done=f"dead letter {letter} requeued as job {job}")


def pause_action(dash: Dashboard, request: Request, _seen: Seen) -> Response:
    """Pause a workflow (``pause=1``) or let it go on (``pause=0``)."""
    name = request.path_params["workflow"]
    back = _back_to(request, "/workflows")
    try:
        if _field(request, "pause") == "1":
            changed = dash.engine.pause(name)
            done = f"paused {name}" if changed else f"{name} was paused already"
        else:
            changed = dash.engine.unpause(name)
            done = f"unpaused {name}" if changed else f"{name} was not paused"
    except DurableError as exc:
        return dash.back(request, back, error=str(exc))
    return dash.back(request, back, done=done)
