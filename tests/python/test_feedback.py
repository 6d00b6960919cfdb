"""Message Feedback: POST Messages/{Sid}/Feedback.json through the official SDK.

Feedback exists only for messages created with ProvideFeedback=true; `Outcome` is
`confirmed` (the default) or `unconfirmed`; posting again replaces it. A first report, or
a change of outcome, is a signal for the Super Network on the path the message took
(visible in the operator API's per-path `totals.feedback`).
"""

from __future__ import annotations

import datetime as dt

import requests

from conftest import (
    HTTP_TIMEOUT,
    RFC2822_RE,
    SID_RE,
    poll,
    random_number,
    raises_twilio,
    wait_message_status,
)

# Exactly the properties of api.v2010.account.message.message_feedback (OAI 2010-04-01).
FEEDBACK_KEYS = {"account_sid", "message_sid", "outcome", "date_created", "date_updated", "uri"}


def send(client, sender, to, **kw):
    return client.messages.create(to=to, from_=sender, body="your code is 246810", **kw)


def feedback_uri(account_sid: str, sid: str) -> str:
    return f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}/Feedback.json"


def network_feedback_total(tern, creds) -> int:
    """The Super Network's feedback count over every path, from the operator API."""
    r = requests.get(tern.base_url + "/v1/Operator/Network",
                     headers={"Authorization": f"Bearer {creds.raw['operator_token']}"},
                     timeout=HTTP_TIMEOUT)
    assert r.status_code == 200, r.text
    return sum(p["totals"]["feedback"] for p in r.json()["paths"])


# ---------------------------------------------------------------- create


def test_confirmed_feedback_has_twilio_shape(client, creds, sender, handset, raw):
    m = send(client, sender, handset, provide_feedback=True)
    # The message advertises the subresource only when feedback was asked for.
    j = raw.get(f"Messages/{m.sid}.json").json()
    assert j["subresource_uris"]["feedback"] == feedback_uri(creds.account_sid, m.sid), j
    wait_message_status(client, m.sid, "delivered")

    resp = client.messages(m.sid).feedback.create_with_http_info(outcome="confirmed")
    assert resp.status_code == 200  # the OAI file's answer for CreateMessageFeedback
    fb = resp.data
    assert fb.account_sid == creds.account_sid
    assert fb.message_sid == m.sid
    assert fb.outcome == "confirmed"
    assert fb.uri == feedback_uri(creds.account_sid, m.sid)
    assert isinstance(fb.date_created, dt.datetime), fb.date_created
    assert isinstance(fb.date_updated, dt.datetime), fb.date_updated
    assert fb.date_updated >= fb.date_created

    # Raw JSON: exactly the OAI properties, RFC 2822 dates.
    r = raw.post(f"Messages/{m.sid}/Feedback.json", data={"Outcome": "confirmed"})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert set(body) == FEEDBACK_KEYS, sorted(body)
    assert SID_RE["AC"].match(body["account_sid"]) and SID_RE["SM"].match(body["message_sid"])
    assert RFC2822_RE.match(body["date_created"]), body["date_created"]
    assert RFC2822_RE.match(body["date_updated"]), body["date_updated"]


def test_unconfirmed_and_the_default_outcome(client, sender, handset, raw):
    m = send(client, sender, handset, provide_feedback=True)
    fb = client.messages(m.sid).feedback.create(outcome="unconfirmed")
    assert fb.outcome == "unconfirmed"
    # No Outcome: the report confirms (the SDK sends no parameter at all here).
    fb = client.messages(m.sid).feedback.create()
    assert fb.outcome == "confirmed"
    assert raw.post(f"Messages/{m.sid}/Feedback.json",
                    data={"Outcome": "unconfirmed"}).json()["outcome"] == "unconfirmed"
    r = raw.post(f"Messages/{m.sid}/Feedback.json", data={})
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "confirmed"


def test_posting_again_updates_outcome_and_date_updated(client, sender, handset):
    m = send(client, sender, handset, provide_feedback=True)
    first = client.messages(m.sid).feedback.create(outcome="confirmed")
    assert first.date_created == first.date_updated

    # Dates have one-second resolution: report again until the clock has moved on.
    def later():
        fb = client.messages(m.sid).feedback.create(outcome="unconfirmed")
        return fb if fb.date_updated > first.date_updated else None

    flipped = poll(later, timeout=10, interval=0.2, desc="date_updated to move")
    assert flipped.outcome == "unconfirmed"
    assert flipped.date_created == first.date_created
    back = client.messages(m.sid).feedback.create(outcome="confirmed")
    assert back.outcome == "confirmed"
    assert back.date_created == first.date_created
    assert back.date_updated >= flipped.date_updated


def test_feedback_feeds_the_super_network_once_per_change(tern, creds, client, sender, handset):
    m = send(client, sender, handset, provide_feedback=True)
    wait_message_status(client, m.sid, "delivered")  # a carrier took it: its path is known
    before = network_feedback_total(tern, creds)
    client.messages(m.sid).feedback.create(outcome="confirmed")
    assert network_feedback_total(tern, creds) == before + 1
    # A client retrying the same report is not counted again.
    client.messages(m.sid).feedback.create(outcome="confirmed")
    client.messages(m.sid).feedback.create()
    assert network_feedback_total(tern, creds) == before + 1
    # A changed outcome is new evidence.
    client.messages(m.sid).feedback.create(outcome="unconfirmed")
    assert network_feedback_total(tern, creds) == before + 2


# ---------------------------------------------------------------- refusals


def test_without_provide_feedback_there_is_no_feedback_resource(client, creds, sender, raw):
    for kw in ({}, {"provide_feedback": False}):
        m = send(client, sender, random_number(), **kw)
        j = raw.get(f"Messages/{m.sid}.json").json()
        assert "feedback" not in j["subresource_uris"], j["subresource_uris"]
        with raises_twilio(404, 20404) as e:
            client.messages(m.sid).feedback.create(outcome="confirmed")
        assert feedback_uri(creds.account_sid, m.sid) in e["error"].msg
        r = raw.post(f"Messages/{m.sid}/Feedback.json", data={"Outcome": "confirmed"})
        assert r.status_code == 404, r.text
        assert r.json()["code"] == 20404


def test_foreign_and_unknown_messages(client, creds, make_subaccount, sender):
    sub = make_subaccount()
    number = random_number()
    client.api.v2010.accounts(sub.sid).incoming_phone_numbers.create(phone_number=number)
    sm = sub.client.messages.create(to=random_number(), from_=number, body="sub's",
                                    provide_feedback=True)
    pm = send(client, sender, random_number(), provide_feedback=True)
    # Another account's message under one's own URL: it does not exist here.
    with raises_twilio(404, 20404):
        client.messages(sm.sid).feedback.create(outcome="confirmed")
    with raises_twilio(404, 20404):
        sub.client.messages(pm.sid).feedback.create(outcome="confirmed")
    # Someone else's account in the URL: 401, as for Messages.
    with raises_twilio(401, 20003):
        sub.client.api.v2010.accounts(creds.account_sid).messages(pm.sid).feedback.create()
    # Unknown or malformed SIDs.
    with raises_twilio(404, 20404):
        client.messages("SM" + "0" * 32).feedback.create(outcome="confirmed")
    with raises_twilio(404, 20404):
        client.messages("not-a-sid").feedback.create(outcome="confirmed")
    # The parent acts on its subaccount's message under the subaccount's URL.
    fb = client.api.v2010.accounts(sub.sid).messages(sm.sid).feedback.create(outcome="confirmed")
    assert (fb.account_sid, fb.message_sid) == (sub.sid, sm.sid)
    assert fb.uri == feedback_uri(sub.sid, sm.sid)


def test_deleted_message_has_no_feedback(client, sender, handset):
    m = send(client, sender, handset, provide_feedback=True)
    wait_message_status(client, m.sid, "delivered")
    client.messages(m.sid).feedback.create(outcome="confirmed")
    assert client.messages(m.sid).delete() is True
    with raises_twilio(404, 20404):
        client.messages(m.sid).feedback.create(outcome="confirmed")


def test_bad_outcome_is_400_20001(client, sender, handset, raw):
    m = send(client, sender, handset, provide_feedback=True)
    for bad in ("maybe", "Confirmed", "true"):
        with raises_twilio(400, 20001) as e:
            client.messages(m.sid).feedback.create(outcome=bad)
        # The SDK prefixes "Unable to create record: " to the server's message.
        assert e["error"].msg.endswith(f'Outcome must be confirmed or unconfirmed, not "{bad}"')
    r = raw.post(f"Messages/{m.sid}/Feedback.json", data={"Outcome": "delivered"})
    assert r.status_code == 400, r.text
    j = r.json()
    assert (j["code"], j["status"]) == (20001, 400), j
    assert j["more_info"].endswith("20001"), j
    assert j["message"] == 'Outcome must be confirmed or unconfirmed, not "delivered"', j
    # Nothing was recorded by the refused reports: the first real one creates it.
    fb = client.messages(m.sid).feedback.create(outcome="unconfirmed")
    assert fb.outcome == "unconfirmed"
    assert fb.date_created == fb.date_updated
