"""Operator routes: the `[[route]]` table with its per-carrier terms, read and replaced
through `GET/PUT /v1/Operator/Routes` and reloaded from the config file on SIGHUP, and
each message's route attempts at `/v1/Operator/Messages/{Sid}/RouteAttempts`.

The server is `tern up` with its two built-in simulated carriers, `sim-a` and `sim-b`;
messages are sent with the official Twilio SDK.
"""

from __future__ import annotations

import signal

import pytest
import requests

from conftest import (
    HTTP_TIMEOUT,
    TernServer,
    poll,
    random_number,
    raises_twilio,
    wait_message_status,
)

ROUTES = """
[[route]]
prefix = "+"
carriers = ["sim-a", "sim-b"]

[[route]]
prefix = "+44"
carriers = ["sim-a", "sim-b"]
cost = { sim-a = 0.005, sim-b = 0.004 }

[[route]]
prefix = "+98"
deny = true
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    srv = TernServer(tmp_path_factory.mktemp("routes"), ROUTES, name="tern-routes")
    srv.start()
    yield srv
    assert srv.stop() == 0, srv.log_tail()


def op(node, method, path, **kw):
    token = node.creds.raw["operator_token"]
    return requests.request(method, node.base_url + path, timeout=HTTP_TIMEOUT,
                            headers={"Authorization": f"Bearer {token}"}, **kw)


def routes(node):
    r = op(node, "GET", "/v1/Operator/Routes")
    assert r.status_code == 200, r.text
    return r.json()["routes"]


def attempts(node, sid):
    r = op(node, "GET", f"/v1/Operator/Messages/{sid}/RouteAttempts")
    assert r.status_code == 200, r.text
    return r.json()


def send(node, to):
    c = node.client()
    return c.messages.create(to=to, from_=node.creds.phone_numbers[0], body="route me")


def test_the_config_table_is_shown_longest_prefix_first(node):
    got = routes(node)
    assert [r["prefix"] for r in got][-1] == "+"
    uk = next(r for r in got if r["prefix"] == "+44")
    assert uk["carriers"] == ["sim-a", "sim-b"]
    assert uk["cost"] == {"sim-a": 0.005, "sim-b": 0.004}
    assert next(r for r in got if r["prefix"] == "+98")["deny"] is True


def test_the_cheaper_carrier_takes_the_message_and_the_attempt_says_why(node):
    m = send(node, "+4479" + random_number()[-8:])
    wait_message_status(node.client(), m.sid, "delivered")
    j = attempts(node, m.sid)
    assert (j["message_sid"], j["status"], j["carrier"]) == (m.sid, "delivered", "sim-b")
    [a] = j["route_attempts"]
    assert (a["carrier"], a["prefix"], a["result"]) == ("sim-b", "+44", "accepted")
    assert a["carrier_message_id"] == j["carrier_message_id"]
    assert a["reason"].startswith("ranked 1 of 2"), a
    # Without cost terms the first listed carrier is preferred.
    m = send(node, random_number())
    wait_message_status(node.client(), m.sid, "delivered")
    assert attempts(node, m.sid)["carrier"] == "sim-a"


def test_a_denied_destination_is_refused_with_21408(node):
    with raises_twilio(400, 21408):
        send(node, "+989121234567")


def test_route_attempts_need_the_operator_token_and_a_known_message(node):
    m = send(node, random_number())
    r = requests.get(node.base_url + f"/v1/Operator/Messages/{m.sid}/RouteAttempts",
                     headers={"Authorization": "Bearer wrong"}, timeout=HTTP_TIMEOUT)
    assert r.status_code == 401, r.text
    r = op(node, "GET", "/v1/Operator/Messages/SM" + "0" * 32 + "/RouteAttempts")
    assert r.status_code == 404 and r.json()["code"] == 20404, r.text


def test_put_replaces_the_table_and_a_bad_one_is_refused_whole(node):
    before = routes(node)
    bad = {"routes": [{"prefix": "+44", "carriers": ["sim-a", "nope"]}]}
    r = op(node, "PUT", "/v1/Operator/Routes", json=bad)
    assert r.status_code == 400, r.text
    assert (r.json()["code"], r.json()["status"]) == (20001, 400), r.text
    assert "nope" in r.json()["message"]
    r = op(node, "PUT", "/v1/Operator/Routes", json={"routes": [{"prefix": "+", "carriers": ["sim-a"], "max_share": {"sim-a": 2}}]})
    assert r.status_code == 400 and "max_share" in r.json()["message"], r.text
    r = op(node, "PUT", "/v1/Operator/Routes", data="not json")
    assert r.status_code == 400, r.text
    assert routes(node) == before

    new = {"routes": [
        {"prefix": "+", "carriers": ["sim-b", "sim-a"]},
        {"prefix": "+98", "deny": True},
    ]}
    r = op(node, "PUT", "/v1/Operator/Routes", json=new)
    assert r.status_code == 200, r.text
    assert [x["prefix"] for x in r.json()["routes"]] == ["+98", "+"]
    # The next message follows the new table: +44 now falls to "+" with sim-b first.
    m = send(node, "+4479" + random_number()[-8:])
    wait_message_status(node.client(), m.sid, "delivered")
    [a] = attempts(node, m.sid)["route_attempts"]
    assert (a["carrier"], a["prefix"]) == ("sim-b", "+")
    # Put the config's table back for the other tests.
    r = op(node, "PUT", "/v1/Operator/Routes", json={"routes": before})
    assert r.status_code == 200, r.text
    assert routes(node) == before


def test_sighup_reloads_the_routes_of_the_config_file(node):
    original = node.config_path.read_text()
    try:
        node.config_path.write_text(original.replace('prefix = "+98"\ndeny = true', 'prefix = "+98"\ncarriers = ["sim-a"]'))
        node.proc.send_signal(signal.SIGHUP)
        poll(lambda: all(not r.get("deny") for r in routes(node)), desc="routes reloaded")
        m = send(node, "+989121234567")
        wait_message_status(node.client(), m.sid, "delivered")
        # A file that does not parse keeps the table in force.
        node.config_path.write_text(original + "\n[[route]]\nprefix = 'x'\ncarriers = []\n")
        node.proc.send_signal(signal.SIGHUP)
        poll(lambda: "route table not reloaded" in node.log_tail(200), desc="refusal logged")
        assert all(not r.get("deny") for r in routes(node))
    finally:
        node.config_path.write_text(original)
        node.proc.send_signal(signal.SIGHUP)
        poll(lambda: any(r.get("deny") for r in routes(node)), desc="routes restored")


def test_events_list_the_regions_latest_changes_to_the_operator(node):
    r = requests.get(node.base_url + "/v1/Operator/Events",
                     headers={"Authorization": "Bearer wrong"}, timeout=HTTP_TIMEOUT)
    assert r.status_code == 401, r.text
    r = op(node, "GET", "/v1/Operator/Events")
    assert r.status_code == 200, r.text
    events = r.json()["events"]
    assert isinstance(events, list)
    for e in events:
        assert set(e) == {"kind", "node", "at", "data"}, e
    r = op(node, "GET", "/v1/Operator/Events?Kind=network.link")
    assert all(e["kind"] == "network.link" for e in r.json()["events"])


def test_a_country_route_takes_its_numbers_within_a_shared_calling_code(node):
    before = routes(node)
    table = {"routes": [
        {"prefix": "+", "carriers": ["sim-a", "sim-b"]},
        {"country": "CA", "carriers": ["sim-b", "sim-a"]},
    ]}
    r = op(node, "PUT", "/v1/Operator/Routes", json=table)
    assert r.status_code == 200, r.text
    try:
        toronto = send(node, "+14169670123")
        us = send(node, random_number())
        for m in (toronto, us):
            wait_message_status(node.client(), m.sid, "delivered")
        [a] = attempts(node, toronto.sid)["route_attempts"]
        assert (a["carrier"], a["prefix"]) == ("sim-b", "CA"), a
        [a] = attempts(node, us.sid)["route_attempts"]
        assert (a["carrier"], a["prefix"]) == ("sim-a", "+"), a
        r = op(node, "PUT", "/v1/Operator/Routes", json={"routes": [{"country": "XX", "carriers": ["sim-a"]}]})
        assert r.status_code == 400 and "XX" in r.json()["message"], r.text
    finally:
        assert op(node, "PUT", "/v1/Operator/Routes", json={"routes": before}).status_code == 200
