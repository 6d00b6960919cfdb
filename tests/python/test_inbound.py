"""Inbound (carrier-originated) messages, sms_url webhooks, TwiML replies, STOP/START."""

from __future__ import annotations

import uuid

import pytest

from conftest import (
    SID_RE,
    poll,
    random_number,
    raises_twilio,
    sim_inbound,
    wait_message_status,
)

WEBHOOK_KEYS = {"MessageSid", "SmsSid", "SmsMessageSid", "AccountSid", "From", "To", "Body",
                "NumMedia", "NumSegments", "SmsStatus", "ApiVersion"}


@pytest.fixture
def owned(client, receiver):
    """A fresh number of the main account whose sms_url points at the receiver."""
    number = random_number()
    sms_url = receiver.url("sms")
    pn = client.incoming_phone_numbers.create(phone_number=number, sms_url=sms_url,
                                              sms_method="POST")
    return pn, sms_url


def inbound(tern, creds, from_, to, body) -> str:
    r = sim_inbound(tern.base_url, (creds.account_sid, creds.auth_token), from_, to, body)
    assert r.status_code == 201, f"{r.status_code} {r.text}"
    sid = r.json()["message_sid"]
    assert SID_RE["SM"].match(sid), sid
    return sid


def webhook_for(receiver, sms_url, sid, timeout=30):
    def pred(evs):
        return [e for e in evs if e.path == path and e.params.get("MessageSid") == sid]

    from urllib.parse import urlsplit

    path = urlsplit(sms_url).path
    return receiver.wait_for(pred, timeout, desc=f"sms_url webhook for {sid}")[0]


def test_inbound_webhook_signed_with_params(tern, creds, client, receiver, owned):
    pn, sms_url = owned
    handset = random_number()
    sid = inbound(tern, creds, handset, pn.phone_number, "Hi there")
    ev = webhook_for(receiver, sms_url, sid)
    assert ev.method == "POST"
    missing = WEBHOOK_KEYS - set(ev.params)
    assert not missing, f"webhook missing {missing}: {ev.params}"
    p = ev.params
    assert p["MessageSid"] == p["SmsSid"] == p["SmsMessageSid"] == sid
    assert p["AccountSid"] == creds.account_sid
    assert p["From"] == handset
    assert p["To"] == pn.phone_number
    assert p["Body"] == "Hi there"
    assert p["NumMedia"] == "0"
    assert p["NumSegments"] == "1"
    assert p["SmsStatus"] == "received"
    assert p["ApiVersion"] == "2010-04-01"
    assert ev.signature, "X-Twilio-Signature missing"
    assert ev.valid is True, f"invalid signature over {ev.url} {p}"

    m = client.messages(sid).fetch()
    assert m.direction == "inbound"
    assert m.status == "received"
    assert m.from_ == handset
    assert m.to == pn.phone_number
    assert m.body == "Hi there"
    assert m.num_segments == "1"
    assert m.account_sid == creds.account_sid
    assert sid in {x.sid for x in client.messages.list(from_=handset)}


def test_inbound_unicode_body(tern, creds, client, receiver, owned):
    pn, sms_url = owned
    body = "Grüße 👋 " + "ж" * 70
    sid = inbound(tern, creds, random_number(), pn.phone_number, body)
    ev = webhook_for(receiver, sms_url, sid)
    assert ev.params["Body"] == body
    assert ev.params["NumSegments"] == "2"
    assert ev.valid is True
    assert client.messages(sid).fetch().body == body


def test_twiml_reply_creates_outbound_reply(tern, creds, client, receiver, owned):
    pn, sms_url = owned
    text = f"reply {uuid.uuid4().hex[:8]}"
    receiver.respond_twiml(sms_url, text)
    handset = random_number()
    sid = inbound(tern, creds, handset, pn.phone_number, "ping")
    webhook_for(receiver, sms_url, sid)

    def reply():
        return [m for m in client.messages.list(to=handset) if m.direction == "outbound-reply"]

    replies = poll(reply, timeout=20, desc="outbound-reply message")
    assert len(replies) == 1, [(r.sid, r.body) for r in replies]
    r = replies[0]
    assert r.body == text
    assert r.from_ == pn.phone_number
    assert r.to == handset
    assert r.account_sid == creds.account_sid
    assert r.sid != sid
    wait_message_status(client, r.sid, "delivered")


def test_empty_response_sends_no_reply(tern, creds, client, receiver, owned):
    pn, sms_url = owned
    receiver.respond_twiml(sms_url, None)  # <Response/>
    handset = random_number()
    first = inbound(tern, creds, handset, pn.phone_number, "no reply please")
    webhook_for(receiver, sms_url, first)
    # Barrier: a second inbound whose webhook does reply. Once that reply exists,
    # the first one (handled earlier) has had its chance to produce one.
    receiver.respond_twiml(sms_url, "second only")
    second = inbound(tern, creds, handset, pn.phone_number, "now reply")
    webhook_for(receiver, sms_url, second)
    replies = poll(
        lambda: [m for m in client.messages.list(to=handset) if m.direction == "outbound-reply"],
        timeout=20, desc="barrier reply")
    assert [r.body for r in replies] == ["second only"], [r.body for r in replies]


def test_inbound_to_unowned_number_rejected(tern, creds):
    r = sim_inbound(tern.base_url, (creds.account_sid, creds.auth_token), random_number(),
                    random_number(), "x")
    assert 400 <= r.status_code < 500, f"{r.status_code} {r.text}"


def test_inbound_requires_auth(tern, creds):
    r = sim_inbound(tern.base_url, (creds.account_sid, "wrong"), random_number(),
                    creds.phone_numbers[0], "x")
    assert r.status_code == 401, r.text


def test_inbound_to_service_number_uses_service_webhook(tern, creds, client, receiver):
    inbound_url = receiver.url("svc-inbound")
    svc = client.messaging.v1.services.create(friendly_name="inbound-svc",
                                              inbound_request_url=inbound_url)
    pn = client.incoming_phone_numbers.create(phone_number=random_number(),
                                              sms_url=receiver.url("number-url"))
    client.messaging.v1.services(svc.sid).phone_numbers.create(phone_number_sid=pn.sid)
    sid = inbound(tern, creds, random_number(), pn.phone_number, "to a service")
    ev = webhook_for(receiver, inbound_url, sid)
    assert ev.valid is True
    assert ev.params.get("MessagingServiceSid") == svc.sid
    assert ev.params["Body"] == "to a service"


@pytest.mark.parametrize("stop_word,start_word", [("STOP", "START"), ("stop", "start"),
                                                  ("STOP", "YES")])
def test_stop_and_start(tern, creds, client, receiver, owned, stop_word, start_word):
    pn, sms_url = owned
    handset = random_number()
    other = random_number()
    m = client.messages.create(to=handset, from_=pn.phone_number, body="before stop")
    assert m.status == "queued"

    stop_sid = inbound(tern, creds, handset, pn.phone_number, stop_word)
    wait_message_status(client, stop_sid, "received")

    def opted_out():
        try:
            client.messages.create(to=handset, from_=pn.phone_number, body="after stop")
        except Exception as exc:  # noqa: BLE001 - inspected below
            return exc
        return None

    exc = poll(opted_out, timeout=10, desc=f"{stop_word} to take effect")
    assert getattr(exc, "code", None) == 21610, f"expected 21610, got {exc!r}"
    assert getattr(exc, "status", None) == 400
    with raises_twilio(400, 21610):
        client.messages.create(to=handset, from_=pn.phone_number, body="still stopped")
    # Other handsets are unaffected.
    assert client.messages.create(to=other, from_=pn.phone_number, body="hi").status == "queued"

    start_sid = inbound(tern, creds, handset, pn.phone_number, start_word)
    wait_message_status(client, start_sid, "received")

    def opted_in():
        try:
            return client.messages.create(to=handset, from_=pn.phone_number, body="welcome back")
        except Exception:  # noqa: BLE001
            return None

    back = poll(opted_in, timeout=10, desc=f"{start_word} to take effect")
    assert back.status == "queued"
    wait_message_status(client, back.sid, "delivered")


def test_sms_method_get_signs_url_with_query(tern, creds, client, receiver):
    sms_url = receiver.url("sms-get") + "?tenant=t1"
    pn = client.incoming_phone_numbers.create(phone_number=random_number(), sms_url=sms_url,
                                              sms_method="GET")
    handset = random_number()
    sid = inbound(tern, creds, handset, pn.phone_number, "via GET & more")
    ev = webhook_for(receiver, sms_url, sid)
    assert ev.method == "GET"
    assert ev.params["tenant"] == "t1"
    assert ev.params["Body"] == "via GET & more"
    assert ev.params["From"] == handset
    assert ev.signature and ev.valid is True, f"bad signature for GET {ev.url}"


def test_sms_fallback_url_used_when_sms_url_fails(tern, creds, client, receiver):
    sms_url = receiver.url("broken")
    fallback = receiver.url("fallback")
    receiver.respond(sms_url, body="boom", status=500, content_type="text/plain")
    receiver.respond_twiml(fallback, "from fallback")
    pn = client.incoming_phone_numbers.create(phone_number=random_number(), sms_url=sms_url,
                                              sms_fallback_url=fallback)
    handset = random_number()
    sid = inbound(tern, creds, handset, pn.phone_number, "hello?")
    ev = webhook_for(receiver, fallback, sid)
    assert ev.valid is True
    assert ev.params["Body"] == "hello?"
    replies = poll(
        lambda: [m for m in client.messages.list(to=handset) if m.direction == "outbound-reply"],
        timeout=20, desc="reply from the fallback TwiML")
    assert [r.body for r in replies] == ["from fallback"]


def test_subaccount_cannot_inject_inbound_to_parent_number(tern, creds, make_subaccount):
    sub = make_subaccount()
    r = sim_inbound(tern.base_url, (sub.sid, sub.token), random_number(),
                    creds.phone_numbers[0], "spoofed")
    assert 400 <= r.status_code < 500, f"{r.status_code} {r.text}"


def test_inbound_without_sms_url_is_still_recorded(tern, creds, client, receiver):
    pn = client.incoming_phone_numbers.create(phone_number=random_number())
    handset = random_number()
    sid = inbound(tern, creds, handset, pn.phone_number, "nobody listens")
    m = wait_message_status(client, sid, "received")
    assert m.direction == "inbound"
    assert m.from_ == handset and m.to == pn.phone_number


def test_multiple_message_verbs_create_multiple_replies(tern, creds, client, receiver, owned):
    pn, sms_url = owned
    receiver.respond(sms_url, body='<?xml version="1.0" encoding="UTF-8"?>'
                     "<Response><Message>one</Message><Message>two</Message></Response>")
    handset = random_number()
    inbound(tern, creds, handset, pn.phone_number, "twice please")
    replies = poll(
        lambda: (lambda rs: rs if len(rs) >= 2 else None)(
            [m for m in client.messages.list(to=handset) if m.direction == "outbound-reply"]),
        timeout=20, desc="two replies")
    assert sorted(r.body for r in replies) == ["one", "two"]
    assert all(r.from_ == pn.phone_number for r in replies)


@pytest.mark.parametrize("status,ctype,body", [
    (200, "text/xml", '<?xml version="1.0" encoding="UTF-8"?><Response/>'),
    (200, "text/xml", "<Response></Response>"),
    (200, "text/plain", ""),
    (204, "text/plain", ""),
    (200, "text/xml", "this is not <xml"),
    (500, "text/plain", "server error"),
], ids=["self-closing", "empty", "no-body", "204", "invalid-xml", "http-500"])
def test_no_reply_cases(tern, creds, client, receiver, owned, status, ctype, body):
    pn, sms_url = owned
    receiver.respond(sms_url, body=body, status=status, content_type=ctype)
    handset = random_number()
    first = inbound(tern, creds, handset, pn.phone_number, "no reply expected")
    webhook_for(receiver, sms_url, first)
    assert client.messages(first).fetch().status == "received"
    # Barrier: the next inbound gets a reply; once it exists, the first had its chance.
    receiver.respond_twiml(sms_url, "barrier reply")
    second = inbound(tern, creds, handset, pn.phone_number, "reply now")
    webhook_for(receiver, sms_url, second)
    replies = poll(
        lambda: [m for m in client.messages.list(to=handset) if m.direction == "outbound-reply"],
        timeout=20, desc="barrier reply")
    assert [r.body for r in replies] == ["barrier reply"], [r.body for r in replies]


def test_concurrent_inbound_each_gets_one_reply(tern, creds, client, receiver, owned):
    import concurrent.futures

    pn, sms_url = owned
    receiver.respond_twiml(sms_url, "auto")
    handsets = [random_number() for _ in range(16)]
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        sids = list(ex.map(lambda h: inbound(tern, creds, h, pn.phone_number, "hi"), handsets))
    assert len(set(sids)) == len(sids)

    def replies():
        out = [m for m in client.messages.list(from_=pn.phone_number, page_size=200)
               if m.direction == "outbound-reply"]
        return out if len(out) >= len(handsets) else None

    got = poll(replies, timeout=30, desc="one reply per inbound")
    assert sorted(m.to for m in got) == sorted(handsets), "each sender gets exactly one reply"
