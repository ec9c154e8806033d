"""Every response carries the security headers; a page's policy allows its own inline script and
style (by hash) and nothing else. The pages still work under it: tests/test_browser.py."""

from __future__ import annotations

import base64
import hashlib
import re

import httpx
import pytest

from tests.conftest import SECRET

on_sqlite = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
INLINE = re.compile(r"<(script|style)\b[^>]*>(.*?)</\1>", re.DOTALL)


def sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def directives(response: httpx.Response) -> dict[str, set[str]]:
    policy = response.headers["Content-Security-Policy"]
    parts = (d.split() for d in policy.split(";") if d.strip())
    return {name: set(values) for name, *values in parts}


@on_sqlite
@pytest.mark.parametrize("path", ["/", "/costs"])
def test_a_page_allows_only_its_own_inline_script_and_style(bot: httpx.Client, path: str) -> None:
    response = bot.get(path)
    assert response.status_code == 200
    policy = directives(response)
    found = INLINE.findall(response.text)
    assert {tag for tag, _ in found} == {"script", "style"}  # what the page holds inline
    assert policy["script-src"] == {sha256(body) for tag, body in found if tag == "script"}
    assert policy["style-src"] == {sha256(body) for tag, body in found if tag == "style"}
    assert policy["default-src"] == {"'none'"} and policy["frame-ancestors"] == {"'none'"}
    assert policy["connect-src"] == {"'self'"}
    assert "'unsafe-inline'" not in response.headers["Content-Security-Policy"]
    assert not re.search(r"<[^>]*\son[a-z]+=", response.text)  # no handler attribute: refused


@on_sqlite
def test_every_response_carries_the_security_headers(bot: httpx.Client) -> None:
    responses = [
        bot.get("/"),
        bot.get("/costs"),
        bot.get("/api/costs", params={"updates": "1000"}),
        bot.get("/api/costs", params={"updates": "many"}),
        bot.get("/healthz"),
        bot.get("/nowhere"),
        bot.post("/webhooks/web", json={"text": "/me"}),
        bot.post(
            "/webhooks/telegram", json={}, headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}
        ),
        bot.post("/webhooks/vk", content=b"{", headers={"Content-Type": "application/json"}),
        bot.get("/", headers={"X-Big": "x" * 20_000}),  # the 431
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 400, 200, 404, 200, 400, 400, 431]
    for response in responses:
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert directives(response)["frame-ancestors"] == {"'none'"}
        if not response.headers["content-type"].startswith("text/html"):
            assert directives(response)["default-src"] == {"'none'"}
            assert "script-src" not in directives(response)
