"""Messages resource: create/fetch/list/paging/filters/redact/delete/errors/segments."""

from __future__ import annotations

import datetime as dt

import pytest
import requests
from twilio.rest.api.v2010.account.message import MessageInstance

from conftest import (
    RFC2822_RE,
    SID_RE,
    make_client,
    random_number,
    raises_twilio,
    wait_message_status,
)

META_KEYS = {
    "end", "first_page_uri", "next_page_uri", "last_page_uri", "page", "page_size",
    "previous_page_uri", "total", "num_pages", "start", "uri",
}


def send(client, sender, to, body="hello", **kw) -> MessageInstance:
    return client.messages.create(to=to, from_=sender, body=body, **kw)


# ---------------------------------------------------------------- create/fetch


def test_create_returns_twilio_shaped_message(client, creds, sender, handset, raw):
    m = send(client, sender, handset, "Hello from Tern")
    assert SID_RE["SM"].match(m.sid), m.sid
    assert m.account_sid == creds.account_sid
    assert m.to == handset
    assert m.from_ == sender
    assert m.body == "Hello from Tern"
    assert m.status == "queued"
    assert m.direction == "outbound-api"
    assert m.api_version == "2010-04-01"
    assert m.num_segments == "1"
    assert m.num_media == "0"
    assert m.error_code is None
    assert m.messaging_service_sid is None
    assert m.uri == f"/2010-04-01/Accounts/{creds.account_sid}/Messages/{m.sid}.json"
    assert isinstance(m.date_created, dt.datetime), m.date_created

    # Raw JSON: types and formats that the SDK would hide.
    r = raw.get(f"Messages/{m.sid}.json")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    j = r.json()
    for key in ("account_sid", "api_version", "body", "date_created", "date_sent", "date_updated",
                "direction", "error_code", "error_message", "from", "messaging_service_sid",
                "num_media", "num_segments", "price", "price_unit", "sid", "status",
                "subresource_uris", "to", "uri"):
        assert key in j, f"missing key {key!r} in {sorted(j)}"
    assert isinstance(j["num_segments"], str), j["num_segments"]
    assert isinstance(j["num_media"], str), j["num_media"]
    assert j["error_code"] is None or isinstance(j["error_code"], int)
    assert RFC2822_RE.match(j["date_created"]), j["date_created"]
    assert RFC2822_RE.match(j["date_updated"]), j["date_updated"]
    assert "media" in j["subresource_uris"], j["subresource_uris"]
    assert j["sid"] == m.sid


def test_fetch_reaches_delivered_with_date_sent(client, sender, handset, raw):
    m = send(client, sender, handset, "fetch me")
    got = wait_message_status(client, m.sid, "delivered")
    assert got.sid == m.sid
    assert got.body == "fetch me"
    assert got.date_sent is not None
    assert got.error_code is None
    j = raw.get(f"Messages/{m.sid}.json").json()
    assert RFC2822_RE.match(j["date_sent"]), j["date_sent"]


def test_body_of_exactly_1600_chars_is_accepted(client, sender, handset):
    m = send(client, sender, handset, "x" * 1600)
    assert m.status == "queued"
    assert len(m.body) == 1600


# ---------------------------------------------------------------- list & paging


@pytest.fixture
def five_messages(client, sender):
    to = random_number()
    sids = [send(client, sender, to, f"page test {i}").sid for i in range(5)]
    return to, sids


def test_list_all_pages_via_sdk(client, five_messages):
    to, sids = five_messages
    listed = client.messages.list(to=to, page_size=2)
    assert sorted(m.sid for m in listed) == sorted(sids)
    limited = client.messages.list(to=to, page_size=2, limit=3)
    assert len(limited) == 3
    assert set(m.sid for m in limited) <= set(sids)
    streamed = [m.sid for m in client.messages.stream(to=to, page_size=2)]
    assert sorted(streamed) == sorted(sids)
    assert len(streamed) == len(set(streamed)), "stream yielded a message twice"


def test_page_object_and_next_page(client, five_messages, base_url):
    to, sids = five_messages
    page = client.messages.page(to=to, page_size=2)
    first = [m.sid for m in page]
    assert len(first) == 2
    assert page.next_page_url is not None
    assert page.next_page_url.startswith(base_url + "/2010-04-01/Accounts/"), page.next_page_url
    page2 = page.next_page()
    second = [m.sid for m in page2]
    assert len(second) == 2
    page3 = page2.next_page()
    third = [m.sid for m in page3]
    assert len(third) == 1
    assert page3.next_page_url is None
    assert sorted(first + second + third) == sorted(sids)


def test_raw_paging_shape(raw, creds, five_messages):
    to, sids = five_messages
    r = raw.get("Messages.json", params={"To": to, "PageSize": 2})
    assert r.status_code == 200, r.text
    j = r.json()
    record_keys = set(j) - META_KEYS
    assert record_keys == {"messages"}, f"exactly one record key expected, got {record_keys}"
    assert j["page"] == 0
    assert j["page_size"] == 2
    assert j["previous_page_uri"] is None
    assert len(j["messages"]) == 2
    assert (j["start"], j["end"]) == (0, 1), (j["start"], j["end"])
    for key in ("uri", "first_page_uri", "next_page_uri"):
        assert j[key].startswith(f"/2010-04-01/Accounts/{creds.account_sid}/Messages.json"), (
            key, j[key])
    seen = [m["sid"] for m in j["messages"]]
    pages = 1
    while j["next_page_uri"]:
        assert j["next_page_uri"].startswith("/"), "next_page_uri must be relative"
        r = raw.get(j["next_page_uri"])
        assert r.status_code == 200, r.text
        j = r.json()
        assert set(j) - META_KEYS == {"messages"}
        assert j["page"] == pages
        assert j["previous_page_uri"] is not None
        assert j["start"] == pages * 2
        assert j["end"] == j["start"] + len(j["messages"]) - 1
        seen += [m["sid"] for m in j["messages"]]
        pages += 1
        assert pages < 10, "paging does not terminate"
    assert pages == 3
    assert len(seen) == len(set(seen)), f"a message appeared on two pages: {seen}"
    assert sorted(seen) == sorted(sids)


def test_list_filters_to_and_from(client, creds, five_messages):
    to, sids = five_messages
    other_sender = creds.phone_numbers[1]
    extra = send(client, other_sender, to, "from the second number").sid
    from_first = {m.sid for m in client.messages.list(to=to, from_=creds.phone_numbers[0])}
    assert from_first == set(sids)
    from_second = {m.sid for m in client.messages.list(to=to, from_=other_sender)}
    assert from_second == {extra}
    all_to = {m.sid for m in client.messages.list(to=to)}
    assert all_to == set(sids) | {extra}
    nobody = client.messages.list(to=random_number())
    assert nobody == []


def test_list_filters_date_sent(client, sender, handset, raw):
    m = send(client, sender, handset, "dated")
    m = wait_message_status(client, m.sid, "delivered")
    assert m.date_sent is not None
    day = m.date_sent.astimezone(dt.timezone.utc).date()
    today = day.isoformat()
    yesterday = (day - dt.timedelta(days=1)).isoformat()
    tomorrow = (day + dt.timedelta(days=1)).isoformat()

    def sids(**kw):
        return {x.sid for x in client.messages.list(to=handset, **kw)}

    assert sids(date_sent=today) == {m.sid}
    assert sids(date_sent=yesterday) == set()
    assert sids(date_sent_before=today) == {m.sid}, "DateSent< is inclusive"
    assert sids(date_sent_before=yesterday) == set()
    assert sids(date_sent_after=today) == {m.sid}, "DateSent> is inclusive"
    assert sids(date_sent_after=tomorrow) == set()
    assert sids(date_sent_after=yesterday, date_sent_before=tomorrow) == {m.sid}

    # The same through raw HTTP (DateSent%3C= on the wire).
    r = raw.get("Messages.json", params={"To": handset, "DateSent<": yesterday})
    assert r.status_code == 200, r.text
    assert r.json()["messages"] == []
    r = raw.get("Messages.json", params={"To": handset, "DateSent>": today})
    assert [x["sid"] for x in r.json()["messages"]] == [m.sid]


def test_concurrent_creates_are_all_listed_once(client, creds):
    import concurrent.futures

    to = random_number()
    senders = creds.phone_numbers

    def one(i):
        return client.messages.create(to=to, from_=senders[i % 2], body=f"burst {i}").sid

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        sids = list(ex.map(one, range(80)))
    assert len(set(sids)) == 80, "duplicate SIDs handed out"
    listed = [m.sid for m in client.messages.stream(to=to, page_size=7)]
    assert len(listed) == len(set(listed)), "a message was listed twice across pages"
    assert sorted(listed) == sorted(sids)
    for sid in sids[::10]:
        wait_message_status(client, sid, "delivered")


# ---------------------------------------------------------------- redact / delete


def test_redact_body(client, sender, handset):
    m = send(client, sender, handset, "secret body")
    wait_message_status(client, m.sid, "delivered")
    updated = client.messages(m.sid).update(body="")
    assert updated.sid == m.sid
    assert updated.body == ""
    assert client.messages(m.sid).fetch().body == ""
    listed = [x for x in client.messages.list(to=handset) if x.sid == m.sid]
    assert listed and listed[0].body == ""


def test_delete_then_404(client, sender, handset, raw):
    m = send(client, sender, handset, "delete me")
    wait_message_status(client, m.sid, "delivered")
    assert client.messages(m.sid).delete() is True
    with raises_twilio(404, 20404):
        client.messages(m.sid).fetch()
    assert m.sid not in {x.sid for x in client.messages.list(to=handset)}
    r = raw.delete(f"Messages/{m.sid}.json")
    assert r.status_code == 404, r.text


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("bad_to", ["+1234", "hello", "+10005551234", ""])
def test_invalid_to_21211(client, sender, bad_to):
    if bad_to == "":
        # Missing/empty To: still a 400; Twilio uses 21604 ("To" required) or 21211.
        with raises_twilio(400, {21211, 21604, 20001}):
            client.messages.create(to=bad_to, from_=sender, body="x")
        return
    with raises_twilio(400, 21211):
        client.messages.create(to=bad_to, from_=sender, body="x")


def test_from_not_owned_21606(client, handset):
    with raises_twilio(400, 21606):
        client.messages.create(to=handset, from_=random_number(), body="x")


def test_body_too_long_21617(client, sender, handset):
    with raises_twilio(400, 21617):
        client.messages.create(to=handset, from_=sender, body="x" * 1601)
    with raises_twilio(400, 21617):
        client.messages.create(to=handset, from_=sender, body="\u0436" * 1601)
    ok = client.messages.create(to=handset, from_=sender, body="\u0436" * 1600)
    assert ok.num_segments == "24"  # ceil(1600 / 67)


def test_missing_body_is_400(raw, sender, handset):
    r = raw.post("Messages.json", data={"To": handset, "From": sender})
    assert r.status_code == 400, r.text
    j = r.json()
    assert j["status"] == 400
    assert isinstance(j["code"], int)


def test_unknown_message_20404(client, raw):
    with raises_twilio(404, 20404):
        client.messages("SM" + "0" * 32).fetch()
    r = raw.get("Messages/SM" + "1" * 32 + ".json")
    assert r.status_code == 404
    j = r.json()
    assert j["code"] == 20404
    assert j["status"] == 404
    assert isinstance(j["message"], str) and j["message"]
    assert j["more_info"].endswith("20404"), j["more_info"]
    assert "type" not in j and "title" not in j, "must not look like RFC 9457"


def test_wrong_token_401_20003(tern, creds, raw, sender, handset):
    bad = make_client(tern.base_url, creds.account_sid, "0" * 32)
    with raises_twilio(401, 20003):
        bad.messages.list(limit=1)
    with raises_twilio(401, 20003):
        bad.messages.create(to=handset, from_=sender, body="x")
    r = requests.get(raw.url("Messages.json"), timeout=10)  # no auth at all
    assert r.status_code == 401
    assert r.json()["code"] == 20003


def test_unknown_account_401(tern, creds):
    other = "AC" + "f" * 32
    bad = make_client(tern.base_url, other, creds.auth_token)
    with raises_twilio(401, 20003):
        bad.messages.list(limit=1)


# ---------------------------------------------------------------- segments


@pytest.mark.parametrize(
    "body,segments",
    [
        ("a" * 160, "1"),
        ("a" * 161, "2"),
        ("a" * 306, "2"),
        ("a" * 307, "3"),
        ("\u0436" * 70, "1"),  # Cyrillic: forces UCS-2
        ("\u0436" * 71, "2"),
        ("\u0436" * 134, "2"),
        ("\u0436" * 135, "3"),
        ("a" * 159 + "\u4e2d", "3"),  # one non-GSM char turns the whole message UCS-2
        ("\U0001F600" * 35, "1"),  # astral: 2 UTF-16 units each
        ("\U0001F600" * 36, "2"),
        ("\u20ac" * 80, "1"),  # extension table: 2 septets each
        ("\u20ac" * 81, "2"),
        ("[]" * 40, "1"),
        ("a" * 159 + "{", "2"),
        ("\u00e9" * 160, "1"),  # é is in the GSM-7 basic table
    ],
    ids=["gsm160", "gsm161", "gsm306", "gsm307", "ucs70", "ucs71", "ucs134", "ucs135",
         "mixed160", "emoji35", "emoji36", "euro80", "euro81", "brackets80", "brace160",
         "eacute160"],
)
def test_num_segments(client, sender, handset, body, segments):
    m = client.messages.create(to=handset, from_=sender, body=body)
    assert m.num_segments == segments, (
        f"len={len(body)} first={body[0]!r}: expected {segments}, got {m.num_segments!r}")
    assert m.body == body


def test_date_filters_accept_sdk_datetime_objects(client, sender, handset):
    """twilio-python serialises date/datetime filter values as YYYY-MM-DDTHH:MM:SSZ."""
    m = send(client, sender, handset, "dated via datetime")
    m = wait_message_status(client, m.sid, "delivered")
    day = m.date_sent.astimezone(dt.timezone.utc).date()
    yesterday = dt.datetime.combine(day - dt.timedelta(days=1), dt.time(0, 0))
    tomorrow = dt.datetime.combine(day + dt.timedelta(days=2), dt.time(0, 0))

    def sids(**kw):
        return {x.sid for x in client.messages.list(to=handset, **kw)}

    assert sids(date_sent_after=yesterday) == {m.sid}
    assert sids(date_sent_before=tomorrow) == {m.sid}
    assert sids(date_sent_after=tomorrow) == set()
    assert sids(date_sent_before=yesterday) == set()


@pytest.mark.parametrize("params", [{"PageSize": "0"}, {"PageSize": "1001"}, {"PageSize": "abc"},
                                    {"DateSent": "yesterday"}],
                         ids=["pagesize-0", "pagesize-1001", "pagesize-abc", "datesent-word"])
def test_invalid_list_params_20001(raw, params):
    r = raw.get("Messages.json", params=params)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == 20001


def test_invalid_update_status_20001(client, sender, handset):
    m = send(client, sender, handset, "x")
    with raises_twilio(400, 20001):
        client.messages(m.sid).update(status="bogus")


def test_max_page_size_1000_accepted(raw):
    r = raw.get("Messages.json", params={"PageSize": "1000"})
    assert r.status_code == 200, r.text
    assert r.json()["page_size"] == 1000


def test_paging_is_stable_while_new_messages_arrive(client, raw, sender):
    """next_page_uri carries a PageToken: rows created mid-iteration neither repeat nor hide
    rows that existed when the listing started."""
    to = random_number()
    original = [send(client, sender, to, f"orig {i}").sid for i in range(10)]
    r = raw.get("Messages.json", params={"To": to, "PageSize": 4})
    j = r.json()
    seen = [m["sid"] for m in j["messages"]]
    added = [send(client, sender, to, f"new {i}").sid for i in range(5)]
    while j["next_page_uri"]:
        j = raw.get(j["next_page_uri"]).json()
        seen += [m["sid"] for m in j["messages"]]
        assert len(seen) < 100
    dupes = [s for s in set(seen) if seen.count(s) > 1]
    assert not dupes, f"rows repeated across pages after concurrent inserts: {dupes}"
    assert set(original) <= set(seen), "rows that existed at the start were skipped"
    assert set(seen) <= set(original) | set(added)
