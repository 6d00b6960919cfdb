"""Self-checks of the test harness (no server needed): the receiver must be able to fail."""

from __future__ import annotations

import requests
from twilio.request_validator import RequestValidator


def test_receiver_validates_signatures(receiver):
    token = "harness-token-" + "0" * 18
    receiver.add_token("AC" + "e" * 32, token)
    url = receiver.url("selfcheck") + "?q=1"
    params = {"AccountSid": "AC" + "e" * 32, "Body": "héllo", "MessageSid": "SM" + "1" * 32}
    good = RequestValidator(token).compute_signature(url, params)
    bad = RequestValidator("another-token").compute_signature(url, params)
    requests.post(url, data=params, headers={"X-Twilio-Signature": good}, timeout=5)
    requests.post(url, data=params, headers={"X-Twilio-Signature": bad}, timeout=5)
    requests.post(url, data={**params, "Body": "tampered"}, headers={"X-Twilio-Signature": good},
                  timeout=5)
    requests.post(url, data=params, timeout=5)  # unsigned
    evs = receiver.events_for(url)
    assert [e.valid for e in evs] == [True, False, False, False]
    assert evs[0].params["Body"] == "héllo"


def test_receiver_programmed_responses(receiver):
    url = receiver.url("prog")
    receiver.respond(url, body="first", status=500, content_type="text/plain", count=1)
    receiver.respond_twiml(url, "hi")  # replaces everything programmed before
    r = requests.post(url, data={"a": "b"}, timeout=5)
    assert r.status_code == 200 and "<Message>hi</Message>" in r.text
    receiver.reset_response(url)
    receiver.respond(url, body="x", status=503, count=1)
    assert requests.post(url, timeout=5).status_code == 503
    assert requests.post(url, timeout=5).status_code == 200  # default afterwards
    assert [e.response_status for e in receiver.events_for(url)] == [200, 503, 200]
