"""Whether the relay kept up with one drain: its outbox backlog over time, judged.

:mod:`benchmarks.relay_bench` samples the outbox backlog while workers drain N runs and
calls :func:`backlog_verdict` on the series before it prints its JSON line, so the
verdict (``bounded``) and the figures behind it travel in that line. It lives apart from
the rest of the report because a scenario program needs it while measuring, and needs
nothing else of the report; :func:`thin` keeps the series it prints short.
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Sequence

RELAY_WARMUP_S: Final = 2.0
RELAY_WARMUP_FRACTION: Final = 0.1
"""The warm-up left out of ``backlog_max_after_warmup``: the first 2 s or the first 10 %
of the drain, whichever is longer, or longer still until the relay had published the
rows of the N runs started up front (``caught_up_s``) and the backlog first fell to a
tenth of a relay batch (:data:`RELAY_SETTLED_FRACTION`), but never more than half the
drain. Those N rows reach the outbox
at once; publishing them is the warm-up. (The relay's own counter and the backlog are
sampled by different queries, so the counter alone can end the warm-up while the last
batches of the burst still count as backlog.)"""
RELAY_SETTLED_FRACTION: Final = 0.1
"""The burst has drained once the backlog is at most this fraction of a relay batch."""
RELAY_RISE_TOLERANCE: Final = 0.1
"""How far the backlog's least-squares line may rise over the second half of the drain,
as a fraction of the relay's batch size, and still count as not trending upward."""
RELAY_MIN_SAMPLES: Final = 3
"""Fewer samples than this in either half of the drain: too few to judge a trend."""


def thin(points: Sequence[Sequence[float]], limit: int) -> list[list[float]]:
    """At most ``limit`` of ``points``, evenly spread, the first and the last kept."""
    if limit < 2:
        msg = f"limit must be at least 2, not {limit}"
        raise ValueError(msg)
    if len(points) <= limit:
        return [list(p) for p in points]
    picks = sorted({round(i * (len(points) - 1) / (limit - 1)) for i in range(limit)})
    return [list(points[i]) for i in picks]


def slope(points: Sequence[Sequence[float]]) -> float:
    """The least-squares slope of ``y`` on ``x`` over ``(x, y)`` points (0 if undefined)."""
    if len(points) < 2:
        return 0.0
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread


def backlog_verdict(
    series: Sequence[Sequence[float]],
    *,
    drain_s: float,
    batch_size: int,
    caught_up_s: float | None = None,
) -> dict[str, Any]:
    """Whether one drain's outbox backlog stayed bounded, with the figures behind it.

    ``series`` holds ``(t, backlog)`` samples, ``t`` in seconds from the start of the
    drain, the last one taken when the drain ended. The drain is bounded when all of
    these ``checks`` hold:

    - ``final_within_batch``: the backlog at the end is at most one relay batch;
    - ``second_half_not_rising``: over the second half of the drain, the least-squares
      line rises by at most :data:`RELAY_RISE_TOLERANCE` of a batch;
    - ``second_half_within_first``: the second half's largest backlog is no larger than
      the first half's.

    ``bounded`` is ``None`` (not judged) when either half has fewer than
    :data:`RELAY_MIN_SAMPLES` samples. ``backlog_max_after_warmup`` leaves out the
    warm-up (see :data:`RELAY_WARMUP_S`), when the runs started up front are published:
    ``caught_up_s`` is when the relay had published as many messages as there were such
    runs (it publishes in due order, so theirs first), if known. The warm-up plays no
    part in the verdict.
    """
    points = sorted((float(t), float(b)) for t, b, *_ in series)
    if not points:
        return {"bounded": None, "checks": {}}
    half = drain_s / 2
    settled_s = next((t for t, b in points if b <= RELAY_SETTLED_FRACTION * batch_size), 0.0)
    warmup = min(
        max(RELAY_WARMUP_S, RELAY_WARMUP_FRACTION * drain_s, caught_up_s or 0.0, settled_s),
        half,
    )
    first = [b for t, b in points if t < half]
    second = [(t, b) for t, b in points if t >= half]
    after = [b for t, b in points if t >= warmup] or [points[-1][1]]
    final = points[-1][1]
    rate = slope(second)
    checks = {
        "final_within_batch": final <= batch_size,
        "second_half_not_rising": rate * (drain_s - half) <= RELAY_RISE_TOLERANCE * batch_size,
        "second_half_within_first": (
            not second or (bool(first) and max(b for _, b in second) <= max(first))
        ),
    }
    judged = min(len(first), len(second)) >= RELAY_MIN_SAMPLES
    return {
        "warmup_s": warmup,
        "backlog_max": max(b for _, b in points),
        "backlog_max_after_warmup": max(after),
        "backlog_final": final,
        "backlog_first_half_max": max(first) if first else None,
        "backlog_second_half_max": max((b for _, b in second), default=None),
        "backlog_second_half_slope": rate,
        "checks": checks,
        "bounded": all(checks.values()) if judged else None,
    }
