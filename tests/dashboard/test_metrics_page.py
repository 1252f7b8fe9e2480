"""``/metrics`` on the dashboard: the Prometheus exposition, behind the dashboard's door."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client.parser import text_string_to_metric_families

from durable_sa.testing import drain

if TYPE_CHECKING:
    from collections.abc import Callable

    from starlette.testclient import TestClient

    from durable_sa import Durable


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_counts_the_runs_by_workflow_and_status(engine: Durable, client: TestClient):
    for who in ("ann", "bob"):
        engine.start("greet", {"who": who})
    engine.start("approve", {})
    drain(engine)

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)
    assert samples[("durable_sa_runs", (("status", "completed"), ("workflow", "greet")))] == 2
    assert samples[("durable_sa_runs", (("status", "suspended"), ("workflow", "approve")))] == 1
    assert samples[("durable_sa_database_up", ())] == 1


def test_metrics_needs_read_permission(make_client: Callable[..., TestClient]) -> None:
    refused = make_client(auth=lambda request: "none").get("/metrics")
    allowed = make_client(auth=lambda request: "read").get("/metrics")

    assert refused.status_code == 403
    assert allowed.status_code == 200
    assert "durable_sa_runs" in allowed.text


def test_with_a_token_a_scraper_sends_it_as_a_bearer(make_client: Callable[..., TestClient]):
    token = "s3cret-token"  # noqa: S105 - a test token
    client = make_client(token=token)

    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    scraped = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert scraped.status_code == 200
    assert "durable_sa_workers_live" in scraped.text
    # A bearer is checked on each request: no token cookie for a scraper to keep.
    assert not [name for name in client.cookies if name.startswith("durable_sa_token")]
