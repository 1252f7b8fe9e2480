"""Who may do what: auth's permission, read-only, the start-up token and CSRF."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from durable_sa.dashboard.flash import FLASH_COOKIE
from durable_sa.dashboard.security import CSRF_COOKIE, CSRF_FIELD, token_cookie
from durable_sa.errors import InvalidArgumentError
from tests.dashboard.conftest import csrf_of, post

if TYPE_CHECKING:
    from collections.abc import Callable

    from starlette.requests import Request
    from starlette.testclient import TestClient

    from durable_sa import Durable


def _by_header(request: Request) -> str:
    """The host application's identity, here a header a test sets."""
    return request.headers.get("x-role", "none")


def test_auth_none_refuses_every_page(engine: Durable, make_client: Callable[..., TestClient]):
    client = make_client(auth=_by_header)
    for path in ("/", "/workflows", "/workers", "/dead-letters", "/limits", "/schedules"):
        assert client.get(path).status_code == 403


def test_read_permission_shows_pages_without_buttons_and_refuses_actions(
    engine: Durable, make_client: Callable[..., TestClient]
) -> None:
    run_id = engine.start("approve").run_id
    client = make_client(auth=_by_header)
    client.headers["x-role"] = "read"
    page = client.get(f"/runs/{run_id}")
    assert page.status_code == 200
    assert "Cancel run" not in page.text
    assert "Send signal" not in page.text
    assert "Pause" not in client.get("/workflows").text
    assert "Recover" not in client.get("/dead-letters").text
    refused = post(client, f"/runs/{run_id}/cancel", f"/runs/{run_id}")
    assert refused.status_code == 403
    assert "you may only read" in refused.text
    for path in ("/recover", "/workflows/approve/pause"):
        assert post(client, path, "/", pause="1").status_code == 403
    assert engine.paused_workflows() == []
    assert engine.status(run_id).status == "running"


def test_write_permission_shows_buttons_and_acts(
    engine: Durable, make_client: Callable[..., TestClient]
) -> None:
    run_id = engine.start("approve").run_id
    client = make_client(auth=_by_header)
    client.headers["x-role"] = "write"
    assert "Cancel run" in client.get(f"/runs/{run_id}").text
    done = post(client, f"/runs/{run_id}/cancel", f"/runs/{run_id}")
    assert done.status_code == 303
    assert engine.status(run_id).status == "canceled"


def test_an_async_auth_is_awaited(engine: Durable, make_client: Callable[..., TestClient]):
    async def auth(request: Request) -> str:
        await asyncio.sleep(0)
        return "read"

    client = make_client(auth=auth)
    assert client.get("/").status_code == 200
    assert client.get("/").text.count('id="permission">read') == 1


def test_read_only_refuses_actions_and_hides_buttons_whatever_auth_says(
    engine: Durable, make_client: Callable[..., TestClient]
) -> None:
    run_id = engine.start("approve").run_id
    client = make_client(auth=lambda request: "write", read_only=True)
    page = client.get(f"/runs/{run_id}")
    assert "Cancel run" not in page.text
    assert "read-only" in page.text
    for path in (f"/runs/{run_id}/cancel", f"/runs/{run_id}/signal", "/recover"):
        refused = post(client, path, "/")
        assert refused.status_code == 403
        assert "read-only" in refused.text
    assert engine.status(run_id).status == "running"


def test_a_bad_auth_answer_is_explained(engine: Durable, make_client: Callable[..., TestClient]):
    client = make_client(auth=lambda request: True)
    with pytest.raises(InvalidArgumentError, match=r'"none", "read" or "write"'):
        client.get("/")


def test_create_app_checks_its_arguments(engine: Durable) -> None:
    from durable_sa.dashboard import create_app  # noqa: PLC0415

    with pytest.raises(InvalidArgumentError, match=r"durable_sa\.Durable"):
        create_app(object())  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="auth is a callable"):
        create_app(engine, auth="write")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="token"):
        create_app(engine, token="")


def test_a_token_is_required_and_kept_in_a_cookie(
    engine: Durable, make_client: Callable[..., TestClient]
) -> None:
    run_id = engine.start("greet").run_id
    client = make_client(token="s3cret-token")  # noqa: S106 - a test token
    refused = client.get("/")
    assert refused.status_code == 401
    assert "?token=" in refused.text
    assert client.get("/?token=wrong").status_code == 401
    opened = client.get(f"/runs/{run_id}?token=s3cret-token&fragment=1", follow_redirects=False)
    assert opened.status_code == 303
    assert opened.headers["location"] == f"/runs/{run_id}?fragment=1"  # the token leaves the URL
    assert "httponly" in opened.headers["set-cookie"].lower()
    assert client.cookies.get(token_cookie("s3cret-token")) == "s3cret-token"
    assert token_cookie("s3cret-token") != token_cookie("another")  # one per dashboard
    assert "s3cret" not in token_cookie("s3cret-token")
    assert client.get("/").status_code == 200
    client.cookies.clear()
    assert client.get("/").status_code == 401


def test_an_action_without_the_csrf_field_is_refused(engine: Durable, client: TestClient):
    run_id = engine.start("approve").run_id
    csrf_of(client, f"/runs/{run_id}")
    missing = client.post(f"/runs/{run_id}/cancel", data={}, follow_redirects=False)
    assert missing.status_code == 403
    assert "CSRF" in missing.text
    wrong = client.post(
        f"/runs/{run_id}/cancel", data={CSRF_FIELD: "x" * 43}, follow_redirects=False
    )
    assert wrong.status_code == 403
    assert engine.status(run_id).status == "running"


def test_an_action_from_another_origin_is_refused(engine: Durable, client: TestClient):
    run_id = engine.start("approve").run_id
    token = csrf_of(client, f"/runs/{run_id}")
    forged = client.post(
        f"/runs/{run_id}/cancel",
        data={CSRF_FIELD: token},
        headers={"origin": "http://evil.example"},
        follow_redirects=False,
    )
    assert forged.status_code == 403
    same = client.post(
        f"/runs/{run_id}/cancel",
        data={CSRF_FIELD: token},
        headers={"origin": "http://testserver"},
        follow_redirects=False,
    )
    assert same.status_code == 303
    assert engine.status(run_id).status == "canceled"


def test_an_action_through_a_proxy_matches_the_forwarded_host(
    engine: Durable, client: TestClient
) -> None:
    run_id = engine.start("approve").run_id
    token = csrf_of(client, f"/runs/{run_id}")
    proxied = client.post(
        f"/runs/{run_id}/cancel",
        data={CSRF_FIELD: token},
        headers={"origin": "https://ops.example", "x-forwarded-host": "ops.example"},
        follow_redirects=False,
    )
    assert proxied.status_code == 303
    assert engine.status(run_id).status == "canceled"


def test_actions_are_posts_only(engine: Durable, client: TestClient) -> None:
    run_id = engine.start("approve").run_id
    assert client.get(f"/runs/{run_id}/cancel").status_code == 405
    assert engine.status(run_id).status == "running"


def test_pages_forbid_framing_and_set_a_content_policy(client: TestClient) -> None:
    page = client.get("/")
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def test_the_app_mounts_under_a_prefix(engine: Durable, flows: None) -> None:
    from starlette.applications import Starlette  # noqa: PLC0415
    from starlette.routing import Mount  # noqa: PLC0415
    from starlette.testclient import TestClient  # noqa: PLC0415

    from durable_sa.dashboard import create_app  # noqa: PLC0415

    run_id = engine.start("approve").run_id
    host = Starlette(routes=[Mount("/ops/durable", app=create_app(engine))])
    with TestClient(host) as client:
        page = client.get(f"/ops/durable/runs/{run_id}")
        assert page.status_code == 200
        assert 'href="/ops/durable/static/dashboard.css"' in page.text
        assert f'action="/ops/durable/runs/{run_id}/cancel"' in page.text
        assert client.get("/ops/durable/static/htmx.min.js").status_code == 200
        done = post(client, f"/ops/durable/runs/{run_id}/cancel", f"/ops/durable/runs/{run_id}")
        assert done.headers["location"].startswith(f"/ops/durable/runs/{run_id}")
    assert engine.status(run_id).status == "canceled"


def test_every_cookie_is_http_only_strict_and_kept_to_the_dashboards_path(
    engine: Durable, flows: None
) -> None:
    from starlette.applications import Starlette  # noqa: PLC0415
    from starlette.routing import Mount  # noqa: PLC0415
    from starlette.testclient import TestClient  # noqa: PLC0415

    from durable_sa.dashboard import create_app  # noqa: PLC0415

    host = Starlette(routes=[Mount("/ops", app=create_app(engine, token="t0ken"))])  # noqa: S106
    with TestClient(host) as client:
        opened = client.get("/ops/?token=t0ken", follow_redirects=False)  # the token's
        page = client.get("/ops/")  # the CSRF value's
        csrf = client.cookies[CSRF_COOKIE]
        acted = client.post("/ops/recover", data={CSRF_FIELD: csrf}, follow_redirects=False)
        again = client.get("/ops/dead-letters")  # the flash's, deleted once shown
        client.cookies.clear()
        client.get("/ops/?token=t0ken", follow_redirects=False)
        client.cookies.set(CSRF_COOKIE, "short")  # too short to be one the dashboard made
        renewed = client.get("/ops/")
    made = [
        cookie
        for response in (opened, page, acted, again, renewed)
        for cookie in response.headers.get_list("set-cookie")
    ]
    names = [cookie.split("=", 1)[0] for cookie in made]
    assert names == [token_cookie("t0ken"), CSRF_COOKIE, FLASH_COOKIE, FLASH_COOKIE, CSRF_COOKIE]
    for cookie in made:
        attributes = {part.strip().lower() for part in cookie.split(";")}
        assert {"httponly", "samesite=strict", "path=/ops"} <= attributes, cookie
    assert "short" not in made[-1]
