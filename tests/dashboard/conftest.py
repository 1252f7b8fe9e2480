"""The dashboard's tests: a small application of workflows, and clients on each database."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest
from starlette.testclient import TestClient

from durable_sa import durable
from durable_sa.dashboard import create_app
from durable_sa.dashboard.flash import FLASH_COOKIE, decode
from durable_sa.dashboard.security import CSRF_COOKIE, CSRF_FIELD

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from durable_sa import Durable, DurableContext


def _boom(ctx: DurableContext) -> None:
    msg = f"card declined for {ctx.input.get('who', 'nobody')}"
    raise ValueError(msg)


def _undo_fails(ctx: DurableContext) -> None:
    msg = "the bank is down"
    raise RuntimeError(msg)


def define() -> None:
    """The workflows the dashboard's tests run."""
    durable("greet").step("hello", lambda ctx: {"hi": ctx.input.get("who", "you")}).step(
        "bye", lambda ctx: "bye"
    )
    durable("approve").wait_for_signal("approval", "approve").step(
        "ship", lambda ctx: {"by": ctx.results["approval"]}
    )
    durable("charge").step(
        "reserve", lambda ctx: {"held": 1}, compensate=lambda ctx: {"released": 1}
    ).step("pay", _boom, max_retries=1)
    durable("refund").step("hold", lambda ctx: {"held": 1}, compensate=_undo_fails).step(
        "pay", _boom, max_retries=1
    )
    durable("export", max_active=1).wait_for_signal("go", "go")
    durable("leaf").step("one", lambda ctx: ctx.input["n"] + 1)
    durable("tree").child_workflow("spawn", "leaf")
    durable("fan").child_workflow("a", "leaf").child_workflow("b", "leaf").child_workflow(
        "c", "leaf"
    )


@pytest.fixture
def flows() -> None:
    define()


@pytest.fixture
def client(engine: Durable, flows: None) -> Iterator[TestClient]:
    """A client with write permission on the dashboard of ``engine``."""
    with TestClient(create_app(engine)) as test_client:
        yield test_client


@pytest.fixture
def make_client(engine: Durable, flows: None) -> Iterator[Callable[..., TestClient]]:
    """``make_client(auth=..., read_only=..., token=...)``: a client on such an app."""
    made: list[TestClient] = []

    def make(**options: Any) -> TestClient:
        test_client = TestClient(create_app(engine, **options))
        made.append(test_client)
        return test_client

    yield make
    for test_client in made:
        test_client.close()


def csrf_of(client: TestClient, page: str = "/") -> str:
    """The CSRF value a page gives its forms (and its cookie)."""
    html = client.get(page).text
    found = re.search(rf'name="{CSRF_FIELD}" value="([^"]+)"', html)
    cookie = client.cookies.get(CSRF_COOKIE)
    assert cookie is not None
    if found is not None:
        assert found[1] == cookie
    return cookie


def post(client: TestClient, path: str, page: str, **fields: str) -> Any:
    """POST an action's form as the page ``page`` would, CSRF field included."""
    data = {CSRF_FIELD: csrf_of(client, page), **fields}
    return client.post(path, data=data, follow_redirects=False)


def flash_of(client: TestClient, response: Any) -> dict[str, str]:
    """The message an action's redirect carries (its signed flash cookie): ``{kind: text}``."""
    cookies = response.headers.get_list("set-cookie")
    found = [c.split(";")[0].split("=", 1)[1] for c in cookies if c.startswith(f"{FLASH_COOKIE}=")]
    assert found, f"no flash cookie in {cookies}"
    flash = decode(found[-1].strip('"'), client.app.state.dashboard.flash_key)  # type: ignore[attr-defined]
    assert flash is not None
    return {flash.kind: flash.text}
