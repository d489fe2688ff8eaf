"""The live-captions page over plain HTTP: what GET / and /static/* serve, and what they refuse.

The browser test (test_page_browser.py) runs the page; these check the files it is made of:
served with the right types and security headers, loadable without a token, no file outside the
list, nothing fetched from another origin.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from parakeet_server.gateway import page
from parakeet_server.gateway.app import create_app
from parakeet_server.gateway.config import GatewayConfig

TOKEN = "page-test-token"


def with_page(app: FastAPI) -> FastAPI:
    """The gateway app with the page's routes, whether or not create_app includes them yet."""
    if not any(getattr(route, "path", None) == "/" for route in app.routes):
        app.include_router(page.router)
    return app


@pytest.fixture
def client() -> Iterator[TestClient]:
    # Nothing listens on the orchestrator address: the page needs none, the API answers 401 first.
    settings = GatewayConfig(orchestrator="127.0.0.1:9", auth_token=TOKEN)
    with TestClient(with_page(create_app(settings))) as test_client:
        yield test_client


def referenced(html: str) -> list[str]:
    """The src/href attributes of the page."""
    return re.findall(r'(?:src|href)="([^"]+)"', html)


def test_the_page_loads_without_a_token_and_names_its_parts(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-security-policy"] == page.CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    html = response.text
    for element in ("token", "start", "stop", "diarize", "max-speakers", "finals", "interim", "file-input"):
        assert f'id="{element}"' in html, element
    for extension in ("srt", "vtt", "txt"):
        assert f'id="download-{extension}"' in html
    assert referenced(html) == ["data:,", "static/style.css", "static/app.js"]  # data:, no favicon request
    assert 'role="alert"' in html  # errors are announced
    # The API behind the same app still wants the token the page asks for.
    assert client.get("/v1/models").status_code == 401
    assert client.get("/v1/models", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


@pytest.mark.parametrize(
    ("name", "media_type"),
    [
        ("app.js", "text/javascript; charset=utf-8"),
        ("audio-worklet.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
    ],
)
def test_static_files_are_served_as_they_are_on_disk(client: TestClient, name: str, media_type: str) -> None:
    response = client.get(f"/static/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    assert response.headers["cache-control"] == "no-cache"
    assert response.content == (page.STATIC_DIR / name).read_bytes()


@pytest.mark.parametrize("name", ["index.html", "page.py", "missing.js"])
def test_a_file_not_on_the_list_is_a_404_with_the_list(client: TestClient, name: str) -> None:
    response = client.get(f"/static/{name}")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["reason"] == "NOT_FOUND"
    assert "the page's files are app.js, audio-worklet.js, style.css" in error["message"]


@pytest.mark.parametrize("path", ["/static/..%2Fpage.py", "/static/../page.py", "/static/%2E%2E/app.py"])
def test_no_path_leaves_the_static_folder(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["reason"] == "NOT_FOUND"
    assert b"APIRouter" not in response.content


def test_nothing_comes_from_another_origin() -> None:
    """Offline use and the CSP: no CDN, no absolute URL, no inline script or style in the page."""
    files = sorted(page.STATIC_DIR.iterdir())
    assert [path.name for path in files] == ["app.js", "audio-worklet.js", "index.html", "style.css"]
    for path in files:
        text = path.read_text()
        assert not re.search(r"https?://|//cdn|@import", text), path.name
    html = (page.STATIC_DIR / "index.html").read_text()
    assert not re.search(r"<script>|<style|\sstyle=|\son[a-z]+=", html)


def test_the_token_goes_in_headers_and_the_subprotocol_only() -> None:
    """The page's two ways of sending the token; the browser test checks no URL carries it."""
    script = (page.STATIC_DIR / "app.js").read_text()
    assert "Authorization: `Bearer ${value}`" in script
    assert "`openai-insecure-api-key.${token()}`" in script
    assert "sessionStorage" in script and "localStorage" not in script
