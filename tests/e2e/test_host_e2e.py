"""End to end: httpbin (a real third-party WSGI app under its own server, in its own
process) as both backends behind ``cutover run``: its absolute redirects come back on the
proxy's origin, ``preserve_host`` shows in its ``/headers``, and ``/get``'s ``origin`` and
the backend chosen follow the trusted-proxy rule. The test client reaches the proxy from
127.0.0.1 (the trusted "load balancer") or from 127.0.0.2 (a client outside)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.processes import PYTHON, Process, ProxyPorts, ProxyProcess, clean_env, free_port

pytestmark = pytest.mark.e2e

TOKEN = "host-admin-token-0123456789abcdef"
BALANCER, OUTSIDE = "127.0.0.1", "127.0.0.2"


@pytest.fixture
def httpbin(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    argv = [PYTHON, "-m", "httpbin.core", "--host", "127.0.0.1", "--port", str(port)]
    process = Process("httpbin", argv, clean_env(), tmp_path)
    process.spawn()
    url = f"http://127.0.0.1:{port}"
    try:
        process.wait_http_ok(url + "/get")
        yield url
    finally:
        process.stop()


@pytest.fixture
def proxy(tmp_path: Path, httpbin: str) -> Iterator[ProxyProcess]:
    ports = ProxyPorts.pick()
    config = {
        "listen": {"host": "127.0.0.1", "port": ports.listen,
                   "trusted_proxies": [f"{BALANCER}/32"]},
        "admin": {"host": "127.0.0.1", "port": ports.admin},
        "backends": {
            "legacy": {"url": httpbin},
            # The same httpbin by another name, with the client's Host.
            "new": {"url": httpbin.replace("127.0.0.1", "localhost"), "preserve_host": True},
        },
        "migrations": [{
            "name": "bin", "match": {"prefix": "/"}, "from": "legacy", "to": "new",
            "weight": 0, "cohorts": [{"network": ["203.0.113.0/24"], "backend": "new"}],
        }],
        "forwarded": {"header": "both"},
        "state": {"path": str(tmp_path / "state.json")},
    }  # fmt: skip
    path = tmp_path / "cutover.yaml"
    path.write_text(yaml.safe_dump(config))
    running = ProxyProcess(tmp_path, path, ports, TOKEN)
    try:
        yield running.start()
    finally:
        running.close()


def from_address(proxy: ProxyProcess, address: str) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=proxy.url, transport=transport, trust_env=False, timeout=10.0)


def test_absolute_redirects_come_back_on_the_proxys_origin(proxy, httpbin) -> None:
    with httpx.Client(trust_env=False) as direct:  # httpbin's own answer names itself
        assert direct.get(httpbin + "/absolute-redirect/1").headers["location"] == (
            httpbin + "/get"
        )
    with from_address(proxy, OUTSIDE) as client:
        response = client.get("/absolute-redirect/1")
        assert response.status_code == 302
        assert response.headers["x-cutover-backend"] == "legacy"
        assert response.headers["location"] == proxy.url + "/get"
        response = client.get("/redirect-to", params={"url": httpbin + "/get?x=1"})
        assert response.headers["location"] == proxy.url + "/get?x=1"
        elsewhere = "http://example.com/get"
        assert client.get("/redirect-to", params={"url": elsewhere}).headers["location"] == (
            elsewhere
        )
        assert client.get("/redirect-to", params={"url": "/get"}).headers["location"] == "/get"
        followed = client.get("/absolute-redirect/1", follow_redirects=True)
        assert followed.status_code == 200 and str(followed.url) == proxy.url + "/get"
        assert followed.headers["x-cutover-backend"] == "legacy"  # the client stayed on the proxy


def test_preserve_host_shows_in_the_backends_headers(proxy, httpbin) -> None:
    host = proxy.url.removeprefix("http://")
    with from_address(proxy, OUTSIDE) as client:
        seen = client.get("/headers", headers={"X-Cutover-Backend": "new"})
        assert seen.headers["x-cutover-backend"] == "new"
        assert seen.json()["headers"]["Host"] == host
        seen = client.get("/headers", headers={"X-Cutover-Backend": "legacy"})
        assert seen.json()["headers"]["Host"] == httpbin.removeprefix("http://")
        assert seen.json()["headers"]["X-Forwarded-Host"] == host


def test_get_origin_follows_the_trusted_proxy_rule(proxy) -> None:
    claim = {"X-Forwarded-For": "203.0.113.9"}
    with from_address(proxy, BALANCER) as balancer:
        answer = balancer.get("/get", headers=claim)
        assert answer.headers["x-cutover-backend"] == "new"  # the network cohort believed it
        assert answer.json()["origin"] == "203.0.113.9, 127.0.0.1"
        forwarded = answer.json()["headers"]["Forwarded"]
        assert forwarded == f'for=127.0.0.1;proto=http;host="{proxy.url[7:]}"'
    with from_address(proxy, OUTSIDE) as outside:
        answer = outside.get("/get", headers={**claim, "Forwarded": "for=203.0.113.9"})
        assert answer.headers["x-cutover-backend"] == "legacy"  # a claim from outside
        assert answer.json()["origin"] == "203.0.113.9, 127.0.0.2"  # appended: its end is true
        assert answer.json()["headers"]["Forwarded"] == (
            f'for=127.0.0.2;proto=http;host="{proxy.url[7:]}"'
        )  # replaced, not appended to


def test_a_chain_past_the_hop_limit_or_the_head_limit_names_no_one_from_far_away(proxy) -> None:
    # 203.0.113.9 (the network cohort's) behind ~3000 "trusted" hops: past the hop limit.
    far = ", ".join(["203.0.113.9"] + [BALANCER] * 3000)
    with from_address(proxy, BALANCER) as balancer:
        answer = balancer.get("/get", headers={"X-Forwarded-For": far})
        assert answer.status_code == 200
        assert answer.headers["x-cutover-backend"] == "legacy"
        too_large = balancer.get("/get", headers={"X-Forwarded-For": ", ".join(["1.2.3.4"] * 9000)})
        assert too_large.status_code == 431
        assert balancer.get("/get", headers={"X-Forwarded-For": "garbage"}).status_code == 200
