"""Operational endpoints and basic HTTP behaviour."""

from __future__ import annotations

import requests

from conftest import SID_RE, RawApi


def test_healthz_readyz(base_url):
    for path in ("/healthz", "/readyz"):
        r = requests.get(base_url + path, timeout=10)
        assert r.status_code == 200, (path, r.status_code, r.text)


def test_metrics_prometheus_text(base_url, client, creds):
    client.messages.list(limit=1)  # make sure at least one request was served
    r = requests.get(base_url + "/metrics", timeout=10)
    assert r.status_code == 200
    assert r.headers.get("Content-Type", "").startswith("text/plain"), r.headers
    lines = [ln for ln in r.text.splitlines() if ln and not ln.startswith("#")]
    assert lines, "no samples in /metrics"
    for ln in lines:
        name_and_labels, _, value = ln.rpartition(" ")
        assert name_and_labels, ln
        float(value)  # every sample line ends in a number
    assert "# TYPE" in r.text
    assert any(ln.startswith("tern_") for ln in lines), "expected tern_* metrics"


def test_credentials_file_shape(creds, tern):
    assert SID_RE["AC"].match(creds.account_sid), creds.account_sid
    assert len(creds.auth_token) >= 16
    assert creds.api_base_url.rstrip("/") == tern.base_url


def test_unknown_route_404_json(raw: RawApi):
    r = raw.get("NoSuchResource.json")
    assert r.status_code == 404
    assert r.json()["code"] == 20404


def test_account_fetch_raw(raw: RawApi, creds):
    r = raw.get(f"/2010-04-01/Accounts/{creds.account_sid}.json")
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["sid"] == creds.account_sid
    assert j["status"] == "active"
    assert "auth_token" in j
