"""Messaging Services: CRUD, sender pool, round-robin, sticky sender, scheduling; and
per-sender pacing (a sender's rate, queueing until the validity period)."""

from __future__ import annotations

import collections
import re
import datetime as dt
import uuid

import pytest

from conftest import (
    SID_RE,
    TernServer,
    poll,
    random_number,
    raises_twilio,
    wait_message_status,
)


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@pytest.fixture
def service(client, receiver):
    svc = client.messaging.v1.services.create(
        friendly_name=f"svc-{uuid.uuid4().hex[:6]}",
        status_callback=receiver.url("svc-status"),
        inbound_request_url=receiver.url("svc-inbound"),
    )
    return svc


@pytest.fixture
def pooled_service(client, service):
    """A service with two fresh numbers of the main account in its pool."""
    numbers = []
    for _ in range(2):
        n = random_number()
        pn = client.incoming_phone_numbers.create(phone_number=n)
        client.messaging.v1.services(service.sid).phone_numbers.create(phone_number_sid=pn.sid)
        numbers.append(n)
    return service, numbers


def test_service_crud(client, creds, receiver):
    name = f"svc-{uuid.uuid4().hex[:6]}"
    cb = receiver.url("svc-status")
    inbound = receiver.url("svc-inbound")
    svc = client.messaging.v1.services.create(friendly_name=name, status_callback=cb,
                                              inbound_request_url=inbound)
    assert SID_RE["MG"].match(svc.sid), svc.sid
    assert svc.account_sid == creds.account_sid
    assert svc.friendly_name == name
    assert svc.status_callback == cb
    assert svc.inbound_request_url == inbound
    assert svc.date_created is not None

    fetched = client.messaging.v1.services(svc.sid).fetch()
    assert fetched.sid == svc.sid and fetched.friendly_name == name

    assert svc.sid in {s.sid for s in client.messaging.v1.services.list()}

    upd = client.messaging.v1.services(svc.sid).update(friendly_name=name + "-x")
    assert upd.friendly_name == name + "-x"
    assert upd.status_callback == cb, "update must not clear other fields"
    assert client.messaging.v1.services(svc.sid).fetch().friendly_name == name + "-x"

    assert client.messaging.v1.services(svc.sid).delete() is True
    with raises_twilio(404, 20404):
        client.messaging.v1.services(svc.sid).fetch()
    assert svc.sid not in {s.sid for s in client.messaging.v1.services.list()}


def test_service_list_paging(client):
    made = {client.messaging.v1.services.create(friendly_name=f"page-{i}").sid for i in range(3)}
    listed = [s.sid for s in client.messaging.v1.services.list(page_size=1)]
    assert len(listed) == len(set(listed)), "a service appeared twice while paging"
    assert made <= set(listed)
    page = client.messaging.v1.services.page(page_size=1)
    assert len(list(page)) == 1
    assert page.next_page_url, "v1 paging needs meta.next_page_url"


def test_service_invisible_to_other_account(client, make_subaccount, service):
    sub = make_subaccount()
    with raises_twilio(404, 20404):
        sub.client.messaging.v1.services(service.sid).fetch()
    assert service.sid not in {s.sid for s in sub.client.messaging.v1.services.list()}
    with raises_twilio(404, 20404):
        sub.client.messaging.v1.services(service.sid).delete()


def test_sender_pool(client, service):
    pns = []
    for _ in range(2):
        pns.append(client.incoming_phone_numbers.create(phone_number=random_number()))
    for pn in pns:
        added = client.messaging.v1.services(service.sid).phone_numbers.create(
            phone_number_sid=pn.sid)
        assert added.sid == pn.sid
        assert added.phone_number == pn.phone_number
        assert added.service_sid == service.sid
    pool = client.messaging.v1.services(service.sid).phone_numbers.list()
    assert {p.sid for p in pool} == {pn.sid for pn in pns}
    one = client.messaging.v1.services(service.sid).phone_numbers(pns[0].sid).fetch()
    assert one.phone_number == pns[0].phone_number
    assert client.messaging.v1.services(service.sid).phone_numbers(pns[0].sid).delete() is True
    pool = client.messaging.v1.services(service.sid).phone_numbers.list()
    assert [p.sid for p in pool] == [pns[1].sid]


def test_pool_rejects_foreign_number(client, make_subaccount, service):
    sub = make_subaccount()
    pn = client.api.v2010.accounts(sub.sid).incoming_phone_numbers.create(
        phone_number=random_number())
    with raises_twilio((400, 404)):
        client.messaging.v1.services(service.sid).phone_numbers.create(phone_number_sid=pn.sid)
    with raises_twilio((400, 404)):
        client.messaging.v1.services(service.sid).phone_numbers.create(
            phone_number_sid="PN" + "0" * 32)


def test_send_via_service_round_robin(client, pooled_service, receiver):
    svc, numbers = pooled_service
    sids = []
    for i in range(4):
        m = client.messages.create(messaging_service_sid=svc.sid, to=random_number(),
                                   body=f"rr {i}")
        assert m.status == "accepted", m.status
        assert m.messaging_service_sid == svc.sid
        assert m.from_ in (None, *numbers), m.from_
        sids.append(m.sid)
    froms = []
    for sid in sids:
        got = wait_message_status(client, sid, "delivered")
        assert got.from_ in numbers, got.from_
        assert got.messaging_service_sid == svc.sid
        froms.append(got.from_)
    counts = collections.Counter(froms)
    assert counts == collections.Counter({numbers[0]: 2, numbers[1]: 2}), (
        f"expected round-robin over the pool, got {froms}")


def test_service_status_callback_used(client, pooled_service, receiver, creds):
    svc, numbers = pooled_service
    m = client.messages.create(messaging_service_sid=svc.sid, to=random_number(), body="svc cb")
    evs = receiver.wait_status(svc.status_callback, m.sid, "delivered")
    for ev in evs:
        assert ev.valid is True
        assert ev.params["AccountSid"] == creds.account_sid
        assert ev.params["From"] in numbers
    # A per-message StatusCallback overrides the service's.
    own = receiver.url("own")
    m2 = client.messages.create(messaging_service_sid=svc.sid, to=random_number(),
                                body="own cb", status_callback=own)
    receiver.wait_status(own, m2.sid, "delivered")
    assert m2.sid not in {e.params.get("MessageSid") for e in receiver.events_for(
        svc.status_callback)}


def test_unknown_service_rejected(client):
    with raises_twilio((400, 404)):
        client.messages.create(messaging_service_sid="MG" + "0" * 32, to=random_number(),
                               body="x")


# ---------------------------------------------------------------- scheduling


def test_schedule_and_cancel(client, pooled_service):
    svc, _ = pooled_service
    send_at = now_utc() + dt.timedelta(hours=1)
    to = random_number()
    m = client.messages.create(messaging_service_sid=svc.sid, to=to, body="later",
                               schedule_type="fixed", send_at=send_at)
    assert m.status == "scheduled", m.status
    assert m.messaging_service_sid == svc.sid
    assert client.messages(m.sid).fetch().status == "scheduled"
    assert m.sid in {x.sid for x in client.messages.list(to=to)}
    c = client.messages(m.sid).update(status="canceled")
    assert c.status == "canceled"
    assert client.messages(m.sid).fetch().status == "canceled"


def test_schedule_without_service_35118(client, sender):
    with raises_twilio(400, 35118):
        client.messages.create(from_=sender, to=random_number(), body="x",
                               schedule_type="fixed", send_at=now_utc() + dt.timedelta(hours=1))


def test_schedule_without_send_at_35111(client, service):
    with raises_twilio(400, 35111):
        client.messages.create(messaging_service_sid=service.sid, to=random_number(), body="x",
                               schedule_type="fixed")


@pytest.mark.parametrize("delta", [dt.timedelta(seconds=60), dt.timedelta(days=36),
                                   dt.timedelta(hours=-1)], ids=["too-soon", "too-far", "past"])
def test_schedule_send_at_out_of_range_35115(client, service, delta):
    with raises_twilio(400, 35115):
        client.messages.create(messaging_service_sid=service.sid, to=random_number(), body="x",
                               schedule_type="fixed", send_at=now_utc() + delta)


def test_schedule_boundaries_inside_range_accepted(client, pooled_service):
    svc, _ = pooled_service
    for delta in (dt.timedelta(minutes=16), dt.timedelta(days=34)):
        m = client.messages.create(messaging_service_sid=svc.sid, to=random_number(), body="x",
                                   schedule_type="fixed", send_at=now_utc() + delta)
        assert m.status == "scheduled"
        client.messages(m.sid).update(status="canceled")


def test_cancel_non_scheduled_message_rejected(client, sender):
    m = client.messages.create(from_=sender, to=random_number(), body="x")
    wait_message_status(client, m.sid, "delivered")
    with raises_twilio(400):
        client.messages(m.sid).update(status="canceled")
    assert client.messages(m.sid).fetch().status == "delivered"


def test_canceled_message_never_sends(client, pooled_service, receiver):
    svc, _ = pooled_service
    cb = receiver.url("sched")
    m = client.messages.create(messaging_service_sid=svc.sid, to=random_number(), body="never",
                               schedule_type="fixed",
                               send_at=now_utc() + dt.timedelta(minutes=10),
                               status_callback=cb)
    client.messages(m.sid).update(status="canceled")
    # Barrier: a normal message through the same service gets fully delivered...
    b = client.messages.create(messaging_service_sid=svc.sid, to=random_number(), body="barrier",
                               status_callback=cb)
    receiver.wait_status(cb, b.sid, "delivered")
    # ...and the canceled one stays canceled; its only callback is the cancellation itself
    # (every transition after the initial one is called back).
    assert client.messages(m.sid).fetch().status == "canceled"
    assert receiver.statuses_for(cb, m.sid) == ["canceled"]
    poll(lambda: client.messages(m.sid).fetch().status == "canceled", timeout=2)


def test_v1_json_shape(client, raw, base_url):
    """v1 uses ISO 8601 dates and a `meta` block with absolute URLs."""
    for i in range(2):
        client.messaging.v1.services.create(friendly_name=f"shape-{i}")
    r = raw.get(base_url + "/v1/Services", params={"PageSize": 1})
    assert r.status_code == 200, r.text
    j = r.json()
    assert set(j) == {"meta", "services"}, sorted(j)
    meta = j["meta"]
    assert meta["key"] == "services"
    assert meta["page_size"] == 1
    assert meta["next_page_url"].startswith(base_url + "/v1/Services"), meta["next_page_url"]
    svc = j["services"][0]
    assert re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$", svc["date_created"]), \
        svc["date_created"]
    assert SID_RE["MG"].match(svc["sid"])


def test_released_number_leaves_the_pool(client, service):
    pn = client.incoming_phone_numbers.create(phone_number=random_number())
    client.messaging.v1.services(service.sid).phone_numbers.create(phone_number_sid=pn.sid)
    client.incoming_phone_numbers(pn.sid).delete()
    assert pn.sid not in {p.sid for p in
                          client.messaging.v1.services(service.sid).phone_numbers.list()}


def test_schedule_type_must_be_fixed_35126(client, service):
    with raises_twilio(400, 35126):
        client.messages.create(messaging_service_sid=service.sid, to=random_number(), body="x",
                               schedule_type="later",
                               send_at=now_utc() + dt.timedelta(hours=1))


# ---------------------------------------------------------------- sticky sender


def delivered_froms(client, sids) -> list[str]:
    return [wait_message_status(client, sid, "delivered").from_ for sid in sids]


def send_via(client, svc, to, n, body="svc"):
    return [client.messages.create(messaging_service_sid=svc.sid, to=to, body=f"{body} {i}").sid
            for i in range(n)]


def test_sticky_sender_is_on_by_default_and_settable(client):
    svc = client.messaging.v1.services.create(friendly_name=f"sticky-{uuid.uuid4().hex[:6]}")
    assert svc.sticky_sender is True
    off = client.messaging.v1.services(svc.sid).update(sticky_sender=False)
    assert off.sticky_sender is False
    assert client.messaging.v1.services(svc.sid).fetch().sticky_sender is False
    made_off = client.messaging.v1.services.create(friendly_name="sticky-off", sticky_sender=False)
    assert made_off.sticky_sender is False
    with raises_twilio(400):
        client.messaging.v1.services(svc.sid).update(sticky_sender="maybe")


def test_sticky_sender_keeps_a_recipient_on_one_number(client, pooled_service):
    svc, numbers = pooled_service
    handset = random_number()
    # Sent back to back, so their routing overlaps: they still agree on one sender.
    froms = delivered_froms(client, send_via(client, svc, handset, 3, "sticky"))
    assert len(set(froms)) == 1, f"one recipient got messages from {froms}"
    # New recipients are still spread over the pool, in turn.
    others = [client.messages.create(messaging_service_sid=svc.sid, to=random_number(),
                                     body=f"spread {i}").sid for i in range(4)]
    spread = collections.Counter(delivered_froms(client, others))
    assert spread == collections.Counter({numbers[0]: 2, numbers[1]: 2}), spread
    # …and the first recipient keeps its sender.
    assert delivered_froms(client, send_via(client, svc, handset, 2, "again")) == froms[:2]


def test_a_sticky_sender_that_leaves_the_pool_is_replaced(client, pooled_service):
    svc, numbers = pooled_service
    handset = random_number()
    [first] = delivered_froms(client, send_via(client, svc, handset, 1, "before"))
    pool = {p.phone_number: p.sid for p in
            client.messaging.v1.services(svc.sid).phone_numbers.list()}
    client.messaging.v1.services(svc.sid).phone_numbers(pool[first]).delete()
    [other] = set(numbers) - {first}
    assert delivered_froms(client, send_via(client, svc, handset, 2, "after")) == [other, other]


def test_without_sticky_sender_a_recipient_gets_the_pool_in_turn(client, pooled_service):
    svc, numbers = pooled_service
    client.messaging.v1.services(svc.sid).update(sticky_sender=False)
    froms = delivered_froms(client, send_via(client, svc, random_number(), 4, "rr"))
    assert collections.Counter(froms) == collections.Counter({numbers[0]: 2, numbers[1]: 2}), froms


# ---------------------------------------------------------------- per-sender pacing

PACED_MPS = 2.0
PACED_CONFIG = f"""
[sim]
receipt_delay_ms = 50

[messaging]
sender_mps_long_code = {PACED_MPS}
"""


@pytest.fixture(scope="module")
def paced(tmp_path_factory, receiver):
    """A `tern up` whose long codes send at most PACED_MPS messages a second."""
    srv = TernServer(tmp_path_factory.mktemp("tern-paced"), PACED_CONFIG, name="tern-paced")
    creds = srv.start()
    receiver.add_token(creds.account_sid, creds.auth_token)
    yield srv
    rc = srv.stop()
    assert rc == 0, f"tern did not exit 0 on SIGTERM (rc={rc}):\n{srv.log_tail()}"


def fresh_sender(client) -> str:
    """A number of its own, so that no other test's messages share its schedule."""
    return client.incoming_phone_numbers.create(phone_number=random_number()).phone_number


def test_a_long_code_sends_at_its_rate_and_its_backlog_waits_queued(paced, receiver):
    client = paced.client()
    sender = fresh_sender(client)
    cb = receiver.url("paced")
    sids = [client.messages.create(from_=sender, to=random_number(), body=f"paced {i}",
                                   status_callback=cb).sid for i in range(5)]
    # The last one's slot is (5 - 1) / 2 s after the first's; while it waits it is
    # `queued`, not an error (asserting that at a given moment would race the clock on a
    # loaded machine: the spread of the `sent` callbacks below shows the pacing).
    assert client.messages(sids[-1]).fetch().status in ("queued", "sending", "sent", "delivered")
    for sid in sids:
        wait_message_status(client, sid, "delivered")
    sent_at = sorted(e.t for e in receiver.events_for(cb) if e.status == "sent")
    assert len(sent_at) == len(sids), sent_at
    spread = sent_at[-1] - sent_at[0]
    assert spread >= 0.75 * (len(sids) - 1) / PACED_MPS, f"5 messages sent within {spread:.2f} s"


def test_a_backlog_past_its_validity_period_fails_30001(paced):
    client = paced.client()
    sender = fresh_sender(client)
    sids = [client.messages.create(from_=sender, to=random_number(), body=f"short-lived {i}",
                                   validity_period=1).sid for i in range(8)]
    finals = [wait_message_status(client, sid, {"delivered", "failed", "undelivered"})
              for sid in sids]
    outcomes = [(m.status, m.error_code) for m in finals]
    # 2/s with 1 s to live: the first slots fit in the validity period, the rest do not.
    assert outcomes[0] == ("delivered", None), outcomes
    assert outcomes[-1] == ("failed", 30001), outcomes
    assert set(outcomes) == {("delivered", None), ("failed", 30001)}, outcomes


def test_a_services_validity_period_bounds_its_sends_wait(paced):
    client = paced.client()
    svc = client.messaging.v1.services.create(friendly_name="paced", validity_period=1)
    assert svc.validity_period == 1
    pn = client.incoming_phone_numbers.create(phone_number=random_number())
    client.messaging.v1.services(svc.sid).phone_numbers.create(phone_number_sid=pn.sid)
    sids = [client.messages.create(messaging_service_sid=svc.sid, to=random_number(),
                                   body=f"svc {i}").sid for i in range(8)]
    finals = [wait_message_status(client, sid, {"delivered", "failed", "undelivered"})
              for sid in sids]
    outcomes = [(m.status, m.error_code) for m in finals]
    assert outcomes[0] == ("delivered", None), outcomes
    assert outcomes[-1] == ("failed", 30001), outcomes
    assert all(m.from_ == pn.phone_number for m in finals), [m.from_ for m in finals]
