"""Status callbacks: order, parameters, signatures, error codes, retries."""

from __future__ import annotations

from urllib.parse import urlsplit

from conftest import (
    FAILED_CODE,
    UNDELIVERED_CODE,
    failing_number,
    random_number,
    undeliverable_number,
    wait_message_status,
)

EXPECTED_KEYS = {"MessageSid", "MessageStatus", "SmsSid", "SmsStatus", "AccountSid", "From", "To",
                 "ApiVersion"}


def check_common(ev, sid, account_sid, from_, to):
    assert ev.method == "POST", ev.method
    assert ev.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"), \
        ev.headers.get("content-type")
    missing = EXPECTED_KEYS - set(ev.params)
    assert not missing, f"callback missing {missing}: {ev.params}"
    assert ev.params["MessageSid"] == sid
    assert ev.params["SmsSid"] == sid
    assert ev.params["SmsStatus"] == ev.params["MessageStatus"]
    assert ev.params["AccountSid"] == account_sid
    assert ev.params["From"] == from_
    assert ev.params["To"] == to
    assert ev.params["ApiVersion"] == "2010-04-01"
    assert ev.signature, "X-Twilio-Signature header missing"
    assert ev.valid is True, f"bad X-Twilio-Signature {ev.signature!r} for {ev.url} {ev.params}"
    assert ev.headers.get("i-twilio-idempotency-token"), "I-Twilio-Idempotency-Token missing"


def test_sending_sent_delivered_in_order(client, creds, receiver, sender, handset):
    cb = receiver.url("status")
    m = client.messages.create(to=handset, from_=sender, body="lifecycle", status_callback=cb)
    assert m.status == "queued"
    receiver.wait_status(cb, m.sid, "delivered")
    evs = receiver.events_for(cb)
    statuses = [e.status for e in evs]
    assert statuses == ["sending", "sent", "delivered"], statuses
    for ev in evs:
        check_common(ev, m.sid, creds.account_sid, sender, handset)
    tokens = [e.headers["i-twilio-idempotency-token"] for e in evs]
    assert len(set(tokens)) == 3, f"each status needs its own idempotency token: {tokens}"
    # The final state is visible through the API too.
    got = wait_message_status(client, m.sid, "delivered", timeout=10)
    assert got.error_code is None


def test_no_callback_for_initial_status(client, receiver, sender, handset):
    cb = receiver.url("status")
    m = client.messages.create(to=handset, from_=sender, body="no queued cb", status_callback=cb)
    receiver.wait_status(cb, m.sid, "delivered")
    statuses = receiver.statuses_for(cb)
    assert "queued" not in statuses and "accepted" not in statuses, statuses


def test_undelivered_carries_error_code(client, creds, receiver, sender):
    to = undeliverable_number()
    cb = receiver.url("status")
    m = client.messages.create(to=to, from_=sender, body="will not arrive", status_callback=cb)
    assert m.status == "queued"
    receiver.wait_status(cb, m.sid, "undelivered")
    evs = receiver.events_for(cb)
    statuses = [e.status for e in evs]
    assert statuses == ["sending", "sent", "undelivered"], statuses
    final = evs[-1]
    check_common(final, m.sid, creds.account_sid, sender, to)
    assert final.params.get("ErrorCode") == str(UNDELIVERED_CODE), final.params
    got = wait_message_status(client, m.sid, "undelivered", timeout=10)
    assert got.error_code == UNDELIVERED_CODE


def test_failed_carries_error_code(client, creds, receiver, sender):
    to = failing_number()
    cb = receiver.url("status")
    m = client.messages.create(to=to, from_=sender, body="will fail", status_callback=cb)
    receiver.wait_status(cb, m.sid, "failed")
    evs = receiver.events_for(cb)
    statuses = [e.status for e in evs]
    assert statuses[-1] == "failed", statuses
    assert "delivered" not in statuses, statuses
    check_common(evs[-1], m.sid, creds.account_sid, sender, to)
    assert evs[-1].params.get("ErrorCode") == str(FAILED_CODE), evs[-1].params
    got = wait_message_status(client, m.sid, "failed", timeout=10)
    assert got.error_code == FAILED_CODE


def test_signature_covers_query_string(client, creds, receiver, sender, handset):
    cb = receiver.url("status") + "?tenant=acme&x=1%202"
    m = client.messages.create(to=handset, from_=sender, body="q", status_callback=cb)
    receiver.wait_status(cb, m.sid, "delivered")
    evs = receiver.events_for(cb)
    assert evs
    for ev in evs:
        assert ev.full_path.endswith("?tenant=acme&x=1%202"), ev.full_path
        check_common(ev, m.sid, creds.account_sid, sender, handset)


def test_subaccount_callbacks_signed_with_subaccount_token(client, make_subaccount, receiver):
    sub = make_subaccount()
    number = random_number()
    # Parent provisions a number inside the subaccount with its own credentials.
    pn = client.api.v2010.accounts(sub.sid).incoming_phone_numbers.create(phone_number=number)
    assert pn.account_sid == sub.sid
    to = random_number()
    cb = receiver.url("sub-status")
    m = sub.client.messages.create(to=to, from_=number, body="from sub", status_callback=cb)
    assert m.account_sid == sub.sid
    receiver.wait_status(cb, m.sid, "delivered")
    for ev in receiver.events_for(cb):
        check_common(ev, m.sid, sub.sid, number, to)  # valid with the sub's token


def test_callback_retried_after_5xx_with_same_token(client, receiver, sender, handset):
    cb = receiver.url("flaky")
    receiver.respond(cb, body="oops", status=500, content_type="text/plain", count=1)
    m = client.messages.create(to=handset, from_=sender, body="retry me", status_callback=cb)
    receiver.wait_status(cb, m.sid, "delivered", timeout=60)

    evs_path = urlsplit(cb).path

    def retried(evs):
        mine = [e for e in evs if e.path == evs_path]
        first = mine[0]
        same = [e for e in mine if e.status == first.status]
        return same if len(same) >= 2 else None

    same = receiver.wait_for(retried, timeout=60, desc="retry of the callback that got a 500")
    assert same[0].response_status == 500
    assert same[1].response_status == 200
    tokens = {e.headers.get("i-twilio-idempotency-token") for e in same}
    assert len(tokens) == 1, f"a retry must reuse the idempotency token: {tokens}"
    assert len(same) <= 3, "max_attempts = 3"


def test_callback_gives_up_after_max_attempts(client, receiver, sender, handset):
    dead = receiver.url("dead")
    receiver.respond(dead, body="down", status=503, content_type="text/plain")
    m = client.messages.create(to=handset, from_=sender, body="dead endpoint", status_callback=dead)
    # The message itself is delivered regardless of the broken callback URL.
    wait_message_status(client, m.sid, "delivered")

    dead_path = urlsplit(dead).path

    def three_delivered(evs):
        d = [e for e in evs if e.path == dead_path and e.status == "delivered"]
        return d if len(d) >= 3 else None

    attempts = receiver.wait_for(three_delivered, timeout=60,
                                 desc="3 attempts of the delivered callback")
    assert len(attempts) == 3
    # And no fourth attempt arrives: wait for a later, unrelated barrier callback
    # generated after the third attempt, then re-count.
    barrier = receiver.url("barrier")
    b = client.messages.create(to=random_number(), from_=sender, body="barrier",
                               status_callback=barrier)
    receiver.wait_status(barrier, b.sid, "delivered")
    final = [e for e in receiver.events_for(dead) if e.status == "delivered"]
    assert len(final) == 3, f"expected exactly 3 attempts, got {len(final)}"


def test_callback_order_per_message_under_concurrency(client, creds, receiver):
    import concurrent.futures

    cb = receiver.url("many")
    senders = creds.phone_numbers

    def one(i):
        to = random_number()
        return client.messages.create(to=to, from_=senders[i % 2], body=f"c{i}",
                                      status_callback=cb).sid, to

    with concurrent.futures.ThreadPoolExecutor(6) as ex:
        sent = list(ex.map(one, range(30)))
    path = urlsplit(cb).path
    want = {sid for sid, _ in sent}

    def all_done(evs):
        done = {e.params.get("MessageSid") for e in evs if e.path == path
                and e.status == "delivered"}
        return want <= done

    receiver.wait_for(all_done, timeout=60, desc="delivered callbacks for 30 messages")
    for sid, to in sent:
        evs = [e for e in receiver.events_for(cb) if e.params.get("MessageSid") == sid]
        assert [e.status for e in evs] == ["sending", "sent", "delivered"], (sid, [e.status for e in evs])
        for e in evs:
            assert e.valid is True
            assert e.params["To"] == to


def test_slow_endpoint_does_not_block_other_callbacks(client, receiver, sender):
    slow = receiver.url("slow")
    fast = receiver.url("fast")
    receiver.respond(slow, body="", status=200, delay=3.0)
    a = client.messages.create(to=random_number(), from_=sender, body="slow", status_callback=slow)
    b = client.messages.create(to=random_number(), from_=sender, body="fast", status_callback=fast)
    fast_evs = receiver.wait_status(fast, b.sid, "delivered", timeout=30)
    slow_evs = receiver.wait_status(slow, a.sid, "delivered", timeout=60)
    fast_done = max(e.t for e in fast_evs)
    slow_done = max(e.t for e in slow_evs if e.status == "delivered")
    assert fast_done < slow_done, "a slow callback endpoint delayed another URL's callbacks"
    assert [e.status for e in slow_evs] == ["sending", "sent", "delivered"]
