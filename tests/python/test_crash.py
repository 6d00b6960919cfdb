"""Durability: kill -9 under load, graceful SIGTERM, restart on the same data dir."""

from __future__ import annotations

import collections
import threading
import time
from urllib.parse import urlsplit

import pytest
import requests

from conftest import (
    RawApi,
    TernServer,
    poll,
    random_number,
)

CRASH_CONFIG = """
[sim]
receipt_delay_ms = 50

[webhooks]
max_attempts = 5
"""

THREADS = 8
LOAD_SECONDS = 3.0
KILL_AFTER = 1.5


def list_all(raw: RawApi) -> list[dict]:
    """Every message of the account, following next_page_uri."""
    out: list[dict] = []
    r = raw.get("Messages.json", params={"PageSize": 1000})
    pages = 0
    while True:
        assert r.status_code == 200, r.text
        j = r.json()
        out += j["messages"]
        pages += 1
        assert pages < 1000, "paging does not terminate"
        if not j.get("next_page_uri"):
            return out
        r = raw.get(j["next_page_uri"])


@pytest.fixture
def crash_server(tmp_path):
    srv = TernServer(tmp_path / "crash", CRASH_CONFIG, name="tern-crash")
    yield srv
    if srv.proc is not None and srv.proc.poll() is None:
        srv.proc.kill()
        srv.proc.wait(10)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("how", ["kill9", "sigterm"])
def test_stop_mid_load_loses_no_accepted_message(crash_server, receiver, how):
    """kill -9 (or SIGTERM) during a burst of sends: every 201 survives the restart."""
    srv = crash_server
    creds = srv.start()
    receiver.add_token(creds.account_sid, creds.auth_token)
    cb = receiver.url("crash")
    url = f"{srv.base_url}/2010-04-01/Accounts/{creds.account_sid}/Messages.json"
    accepted: list[str] = []
    errors: collections.Counter = collections.Counter()
    lock = threading.Lock()
    start = time.monotonic()
    stop_at = start + LOAD_SECONDS

    def worker(i: int) -> None:
        s = requests.Session()
        s.auth = (creds.account_sid, creds.auth_token)
        n = 0
        while time.monotonic() < stop_at:
            n += 1
            data = {"To": random_number(), "From": creds.phone_numbers[n % 2],
                    "Body": f"load {i}-{n}", "StatusCallback": cb}
            try:
                r = s.post(url, data=data, timeout=5)
            except requests.RequestException as exc:
                with lock:
                    errors[type(exc).__name__] += 1
                time.sleep(0.01)
                continue
            with lock:
                if r.status_code == 201:
                    accepted.append(r.json()["sid"])
                else:
                    errors[f"HTTP {r.status_code}"] += 1

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(THREADS)]
    for t in threads:
        t.start()
    # Kill once the server is demonstrably under load (or at KILL_AFTER at the latest).
    poll(lambda: time.monotonic() - start >= KILL_AFTER or len(accepted) >= 2000,
         timeout=LOAD_SECONDS, interval=0.01)
    with lock:
        before_kill = len(accepted)
    if how == "kill9":
        srv.kill9()
    else:
        rc = srv.stop()
        assert rc == 0, f"SIGTERM under load: exit code {rc}"
    for t in threads:
        t.join(15)
    assert not any(t.is_alive() for t in threads)
    print(f"\ncrash: {len(accepted)} accepted ({before_kill} before {how}), errors: "
          f"{dict(errors)}")
    assert before_kill > 0, f"no message was accepted before the kill; errors: {dict(errors)}"
    assert len(set(accepted)) == len(accepted), "the same SID was returned twice"

    creds2 = srv.start()
    assert (creds2.account_sid, creds2.auth_token) == (creds.account_sid, creds.auth_token)
    raw = RawApi(srv.base_url, creds.account_sid, creds.auth_token)
    expected = set(accepted)

    missing = []
    for sid in accepted:
        r = raw.get(f"Messages/{sid}.json")
        if r.status_code != 200:
            missing.append((sid, r.status_code))
    assert not missing, f"{len(missing)} accepted messages lost after kill -9: {missing[:5]}"

    state: dict = {}

    def all_delivered():
        by_sid = {m["sid"]: m["status"] for m in list_all(raw)}
        state["pending"] = collections.Counter(
            by_sid.get(s, "MISSING") for s in expected if by_sid.get(s) != "delivered")
        return not state["pending"]

    try:
        poll(all_delivered, timeout=150, interval=0.5, desc="all accepted messages delivered")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; not delivered, by status: {state.get('pending')}") from None

    listed = [m["sid"] for m in list_all(raw)]
    dupes = [s for s, c in collections.Counter(listed).items() if c > 1]
    assert not dupes, f"{len(dupes)} messages listed twice, e.g. {dupes[:5]}"
    assert expected <= set(listed)

    cb_path = urlsplit(cb).path

    def delivered_cbs(evs):
        got = {e.params.get("MessageSid") for e in evs
               if e.path == cb_path and e.status == "delivered"}
        state["no_cb"] = len(expected - got)
        return not state["no_cb"]

    try:
        receiver.wait_for(delivered_cbs, timeout=90, desc="a delivered callback per message")
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}; {state.get('no_cb')} messages without a delivered callback") from None

    evs = receiver.events_for(cb)
    counts = collections.Counter((e.params.get("MessageSid"), e.status) for e in evs)
    dup = {k: c for k, c in counts.items() if c > 1}
    dup_by_status = collections.Counter(k[1] for k in dup)
    print(f"crash: {len(evs)} callbacks; duplicated (sid,status) pairs: {len(dup)} "
          f"by status {dict(dup_by_status)}")
    bad_sig = [e for e in evs if e.valid is not True]
    assert not bad_sig, f"{len(bad_sig)} callbacks with an invalid signature"

    rc = srv.stop()
    assert rc == 0, f"exit code after SIGTERM: {rc}"


@pytest.mark.timeout(180)
def test_sigterm_drains_and_restart_resumes(crash_server, receiver):
    srv = crash_server
    creds = srv.start()
    receiver.add_token(creds.account_sid, creds.auth_token)
    raw = RawApi(srv.base_url, creds.account_sid, creds.auth_token)
    sids = []
    for i in range(20):
        r = raw.post("Messages.json", data={"To": random_number(), "From": creds.phone_numbers[0],
                                            "Body": f"drain {i}"})
        assert r.status_code == 201, r.text
        sids.append(r.json()["sid"])
    rc = srv.stop()
    assert rc == 0, f"tern exited {rc} on SIGTERM"

    creds2 = srv.start()
    for key in ("account_sid", "auth_token", "api_base_url"):
        assert creds2.raw[key] == creds.raw[key], f"credentials.json {key} changed on restart"
    assert sorted(creds2.phone_numbers) == sorted(creds.phone_numbers)
    if creds2.phone_numbers != creds.phone_numbers:
        print(f"\nnote: credentials.json phone_numbers reordered on restart: "
              f"{creds.phone_numbers} -> {creds2.phone_numbers}")
    for sid in sids:
        r = raw.get(f"Messages/{sid}.json")
        assert r.status_code == 200, f"{sid} lost across a graceful restart"

    def delivered():
        return all(raw.get(f"Messages/{s}.json").json()["status"] == "delivered" for s in sids)

    poll(delivered, timeout=60, interval=0.3, desc="messages queued before SIGTERM delivered")
    # The account's numbers survive the restart.
    owned = {p["phone_number"] for p in raw.get("IncomingPhoneNumbers.json").json()[
        "incoming_phone_numbers"]}
    assert set(creds.phone_numbers) <= owned
    srv.proc.send_signal(2)  # SIGINT also drains and exits 0
    assert srv.proc.wait(30) == 0


@pytest.mark.timeout(180)
def test_kill9_preserves_resources_and_state(crash_server, receiver):
    """Everything acknowledged with a 2xx survives kill -9: accounts, keys, numbers,
    services and their pools, scheduled messages and opt-outs."""
    import datetime as dt

    from twilio.base.exceptions import TwilioRestException

    from conftest import make_client, sim_inbound, wait_message_status

    srv = crash_server
    creds = srv.start()
    c = srv.client()
    sub = c.api.v2010.accounts.create(friendly_name="durable-sub")
    key = c.api.v2010.account.new_keys.create(friendly_name="durable-key")
    n1, n2 = random_number(), random_number()
    pn1 = c.incoming_phone_numbers.create(phone_number=n1, sms_url=receiver.url("d-sms"))
    pn2 = c.incoming_phone_numbers.create(phone_number=n2)
    svc = c.messaging.v1.services.create(friendly_name="durable-svc")
    c.messaging.v1.services(svc.sid).phone_numbers.create(phone_number_sid=pn1.sid)
    c.messaging.v1.services(svc.sid).phone_numbers.create(phone_number_sid=pn2.sid)
    sched = c.messages.create(messaging_service_sid=svc.sid, to=random_number(), body="later",
                              schedule_type="fixed",
                              send_at=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2))
    assert sched.status == "scheduled"
    handset = random_number()
    r = sim_inbound(srv.base_url, (creds.account_sid, creds.auth_token), handset, n1, "STOP")
    assert r.status_code == 201, r.text
    stop_sid = r.json()["message_sid"]
    wait_message_status(c, stop_sid, "received")

    def opted_out():
        try:
            c.messages.create(to=handset, from_=n1, body="x")
        except TwilioRestException as exc:
            return exc.code == 21610
        return False

    poll(opted_out, timeout=10, desc="STOP to take effect")
    redacted = c.messages.create(to=random_number(), from_=n2, body="secret")
    wait_message_status(c, redacted.sid, "delivered")
    c.messages(redacted.sid).update(body="")
    c.api.v2010.accounts(sub.sid).update(status="suspended")

    srv.kill9()
    srv.start()
    c = srv.client()

    assert c.api.v2010.accounts(sub.sid).fetch().status == "suspended"
    kc = make_client(srv.base_url, key.sid, key.secret, creds.account_sid)
    assert isinstance(kc.messages.list(limit=1), list)
    owned = {p.phone_number for p in c.incoming_phone_numbers.list()}
    assert {n1, n2} <= owned
    assert c.incoming_phone_numbers(pn1.sid).fetch().sms_url.endswith("/d-sms")
    pool = {p.sid for p in c.messaging.v1.services(svc.sid).phone_numbers.list()}
    assert pool == {pn1.sid, pn2.sid}
    assert c.messages(sched.sid).fetch().status == "scheduled"
    assert c.messages(redacted.sid).fetch().body == ""
    try:
        c.messages.create(to=handset, from_=n1, body="after restart")
        raise AssertionError("opt-out (STOP) was lost by kill -9")
    except TwilioRestException as exc:
        assert exc.code == 21610, exc
    assert c.messages(sched.sid).update(status="canceled").status == "canceled"
    assert srv.stop() == 0
