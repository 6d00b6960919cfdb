"""API keys, subaccounts and tenant boundaries."""

from __future__ import annotations

import uuid

from conftest import (
    RFC2822_RE,
    RawApi,
    SID_RE,
    make_client,
    random_number,
    raises_twilio,
    wait_message_status,
)

# ---------------------------------------------------------------- API keys


def test_key_lifecycle(client, tern, creds, raw):
    name = f"ci-key-{uuid.uuid4().hex[:6]}"
    key = client.api.v2010.account.new_keys.create(friendly_name=name)
    assert SID_RE["SK"].match(key.sid), key.sid
    assert key.friendly_name == name
    assert key.secret and len(key.secret) >= 16, "secret must be returned on create"
    assert key.date_created is not None

    listed = {k.sid: k for k in client.api.v2010.account.keys.list()}
    assert key.sid in listed
    assert listed[key.sid].friendly_name == name

    fetched = client.api.v2010.account.keys(key.sid).fetch()
    assert fetched.sid == key.sid and fetched.friendly_name == name
    j = raw.get(f"Keys/{key.sid}.json").json()
    assert "secret" not in j or not j["secret"], "secret must only be shown once"
    for k in raw.get("Keys.json").json()["keys"]:
        assert "secret" not in k or not k["secret"]

    updated = client.api.v2010.account.keys(key.sid).update(friendly_name=name + "-2")
    assert updated.friendly_name == name + "-2"
    assert client.api.v2010.account.keys(key.sid).fetch().friendly_name == name + "-2"

    assert client.api.v2010.account.keys(key.sid).delete() is True
    with raises_twilio(404, 20404):
        client.api.v2010.account.keys(key.sid).fetch()
    assert key.sid not in {k.sid for k in client.api.v2010.account.keys.list()}


def test_auth_with_api_key(client, tern, creds, sender, handset):
    key = client.api.v2010.account.new_keys.create(friendly_name="sdk-key")
    kc = make_client(tern.base_url, key.sid, key.secret, creds.account_sid)
    m = kc.messages.create(to=handset, from_=sender, body="sent with an API key")
    assert m.account_sid == creds.account_sid
    assert m.sid in {x.sid for x in kc.messages.list(to=handset)}
    # Raw Basic SKxxx:secret with the account in the URL.
    rk = RawApi(tern.base_url, key.sid, key.secret, creds.account_sid)
    r = rk.get(f"Messages/{m.sid}.json")
    assert r.status_code == 200, r.text

    # Wrong secret -> 401.
    bad = make_client(tern.base_url, key.sid, "x" * 32, creds.account_sid)
    with raises_twilio(401, 20003):
        bad.messages.list(limit=1)

    # Deleted key -> 401.
    client.api.v2010.account.keys(key.sid).delete()
    with raises_twilio(401, 20003):
        kc.messages.list(limit=1)
    assert rk.get(f"Messages/{m.sid}.json").status_code == 401


def test_key_is_bound_to_its_account(client, tern, make_subaccount):
    sub = make_subaccount()
    key = client.api.v2010.account.new_keys.create(friendly_name="parent-key")
    # A key of the sub, used on the parent's URL, must not work.
    sub_key = sub.client.api.v2010.account.new_keys.create(friendly_name="sub-key")
    assert SID_RE["SK"].match(sub_key.sid)
    cross = make_client(tern.base_url, sub_key.sid, sub_key.secret, client.account_sid)
    with raises_twilio(401, 20003):
        cross.messages.list(limit=1)
    # The sub cannot see the parent's key.
    with raises_twilio(404, 20404):
        sub.client.api.v2010.account.keys(key.sid).fetch()
    assert key.sid not in {k.sid for k in sub.client.api.v2010.account.keys.list()}


# ---------------------------------------------------------------- subaccounts


def test_subaccount_crud(client, creds, make_subaccount):
    sub = make_subaccount("first-name")
    acct = client.api.v2010.accounts(sub.sid).fetch()
    assert acct.sid == sub.sid
    assert acct.friendly_name == "first-name"
    assert acct.owner_account_sid == creds.account_sid
    assert acct.status == "active"

    listed = {a.sid for a in client.api.v2010.accounts.list()}
    assert sub.sid in listed

    renamed = client.api.v2010.accounts(sub.sid).update(friendly_name="second-name")
    assert renamed.friendly_name == "second-name"
    assert client.api.v2010.accounts(sub.sid).fetch().friendly_name == "second-name"

    me = sub.client.api.v2010.accounts(sub.sid).fetch()
    assert me.sid == sub.sid
    # The main account fetches itself.
    main = client.api.v2010.accounts(creds.account_sid).fetch()
    assert main.sid == creds.account_sid
    assert main.status == "active"


def test_subaccount_list_only_shows_itself(make_subaccount):
    a = make_subaccount()
    b = make_subaccount()
    seen = {x.sid for x in a.client.api.v2010.accounts.list()}
    assert a.sid in seen
    assert b.sid not in seen


def test_parent_acts_on_subaccount_resources(client, make_subaccount, receiver):
    sub = make_subaccount()
    number = random_number()
    pn = client.api.v2010.accounts(sub.sid).incoming_phone_numbers.create(phone_number=number)
    assert SID_RE["PN"].match(pn.sid)
    assert pn.account_sid == sub.sid
    to = random_number()
    # Parent sends on behalf of the sub (sub's URL, parent's creds).
    m = client.api.v2010.accounts(sub.sid).messages.create(to=to, from_=number, body="by parent")
    assert m.account_sid == sub.sid
    # Sub sees it; parent fetches it under the sub's URL.
    assert m.sid in {x.sid for x in sub.client.messages.list(to=to)}
    assert client.api.v2010.accounts(sub.sid).messages(m.sid).fetch().sid == m.sid
    wait_message_status(client, m.sid, "delivered", account_sid=sub.sid)
    # Under the parent's own URL the sub's message does not exist.
    with raises_twilio(404, 20404):
        client.messages(m.sid).fetch()
    assert m.sid not in {x.sid for x in client.messages.list(to=to)}


def test_subaccount_cannot_touch_parent(client, creds, make_subaccount, sender, handset):
    sub = make_subaccount()
    pm = client.messages.create(to=handset, from_=sender, body="parent's")
    # Sub creds on the parent's URL -> 401 / 20003.
    with raises_twilio(401, 20003):
        sub.client.api.v2010.accounts(creds.account_sid).messages(pm.sid).fetch()
    with raises_twilio(401, 20003):
        sub.client.api.v2010.accounts(creds.account_sid).messages.list(limit=1)
    with raises_twilio(401, 20003):
        sub.client.api.v2010.accounts(creds.account_sid).fetch()
    # The parent's message SID under the sub's own URL -> 404 / 20404.
    with raises_twilio(404, 20404):
        sub.client.messages(pm.sid).fetch()
    with raises_twilio(404, 20404):
        sub.client.messages(pm.sid).update(body="")
    with raises_twilio(404, 20404):
        sub.client.messages(pm.sid).delete()
    # Sub cannot send from the parent's number.
    with raises_twilio(400, 21606):
        sub.client.messages.create(to=handset, from_=sender, body="spoof")
    # Parent's message untouched.
    assert client.messages(pm.sid).fetch().body == "parent's"


def test_sibling_isolation(client, make_subaccount):
    a = make_subaccount()
    b = make_subaccount()
    number = random_number()
    client.api.v2010.accounts(a.sid).incoming_phone_numbers.create(phone_number=number)
    am = a.client.messages.create(to=random_number(), from_=number, body="a's")
    # b's creds on a's URL.
    with raises_twilio((401, 404), (20003, 20404)):
        b.client.api.v2010.accounts(a.sid).messages(am.sid).fetch()
    with raises_twilio((401, 404), (20003, 20404)):
        b.client.api.v2010.accounts(a.sid).messages.list(limit=1)
    # a's message SID under b's own URL.
    with raises_twilio(404, 20404):
        b.client.messages(am.sid).fetch()
    assert am.sid not in {m.sid for m in b.client.messages.list()}
    # A sub cannot manage its sibling account.
    with raises_twilio((401, 404), (20003, 20404)):
        b.client.api.v2010.accounts(a.sid).update(status="suspended")
    assert client.api.v2010.accounts(a.sid).fetch().status == "active"


def test_suspend_and_reactivate(client, make_subaccount):
    sub = make_subaccount()
    assert sub.client.messages.list(limit=1) == []
    s = client.api.v2010.accounts(sub.sid).update(status="suspended")
    assert s.status == "suspended"
    assert client.api.v2010.accounts(sub.sid).fetch().status == "suspended"
    with raises_twilio(401):
        sub.client.messages.list(limit=1)
    r = sub.raw.get("Messages.json")
    assert r.status_code == 401
    assert r.json()["code"] in (20003, 20005)
    a = client.api.v2010.accounts(sub.sid).update(status="active")
    assert a.status == "active"
    assert sub.client.messages.list(limit=1) == []


def test_closed_account_rejects_credentials(client, make_subaccount):
    sub = make_subaccount()
    c = client.api.v2010.accounts(sub.sid).update(status="closed")
    assert c.status == "closed"
    with raises_twilio(401):
        sub.client.messages.list(limit=1)


def test_suspended_subaccount_keys_rejected(client, tern, make_subaccount):
    sub = make_subaccount()
    key = sub.client.api.v2010.account.new_keys.create(friendly_name="k")
    kc = make_client(tern.base_url, key.sid, key.secret, sub.sid)
    assert kc.messages.list(limit=1) == []
    client.api.v2010.accounts(sub.sid).update(status="suspended")
    with raises_twilio(401):
        kc.messages.list(limit=1)
    client.api.v2010.accounts(sub.sid).update(status="active")


def test_invalid_account_status_is_400(client, make_subaccount):
    sub = make_subaccount()
    with raises_twilio(400, 20001):
        client.api.v2010.accounts(sub.sid).update(status="bogus")
    assert client.api.v2010.accounts(sub.sid).fetch().status == "active"


def test_api_key_cannot_manage_keys_or_accounts(client, tern, creds):
    """Standard API keys get 20003 on /Accounts and /Keys (Twilio docs, errors/20003)."""
    key = client.api.v2010.account.new_keys.create(friendly_name="standard")
    kc = make_client(tern.base_url, key.sid, key.secret, creds.account_sid)
    assert kc.messages.list(limit=1) is not None  # the key itself works
    with raises_twilio(401, 20003):
        kc.api.v2010.account.new_keys.create(friendly_name="minted by a key")
    with raises_twilio(401, 20003):
        kc.api.v2010.account.keys.list()
    with raises_twilio(401, 20003):
        kc.api.v2010.accounts.create(friendly_name="sub minted by a key")
    client.api.v2010.account.keys(key.sid).delete()


def test_foreign_and_missing_resources_look_the_same(client, make_subaccount, raw, creds):
    """20404 never reveals whether another account's resource exists."""
    sub = make_subaccount()
    number = random_number()
    client.api.v2010.accounts(sub.sid).incoming_phone_numbers.create(phone_number=number)
    foreign = sub.client.messages.create(to=random_number(), from_=number, body="x").sid
    missing = "SM" + "ab" * 16
    r1 = raw.get(f"Messages/{foreign}.json")
    r2 = raw.get(f"Messages/{missing}.json")
    assert (r1.status_code, r2.status_code) == (404, 404)
    j1, j2 = r1.json(), r2.json()
    assert j1["code"] == j2["code"] == 20404
    assert j1["message"].replace(foreign, "X") == j2["message"].replace(missing, "X")
    # Credentials on an account URL that exists but is not theirs vs. one that does not exist.
    other = make_subaccount()
    r3 = RawApi(other.raw.base_url, other.sid, other.token, sub.sid).get("Messages.json")
    r4 = RawApi(other.raw.base_url, other.sid, other.token, "AC" + "cd" * 16).get("Messages.json")
    assert r3.status_code == r4.status_code and r3.status_code in (401, 404), (
        r3.status_code, r4.status_code)
    assert r3.json()["code"] == r4.json()["code"]


def test_key_and_account_dates_rfc2822(client, raw, creds):
    key = client.api.v2010.account.new_keys.create(friendly_name="dates")
    j = raw.get(f"Keys/{key.sid}.json").json()
    assert RFC2822_RE.match(j["date_created"]), j["date_created"]
    a = raw.get(f"/2010-04-01/Accounts/{creds.account_sid}.json").json()
    assert RFC2822_RE.match(a["date_created"]), a["date_created"]
    client.api.v2010.account.keys(key.sid).delete()


def test_subaccount_cannot_create_subaccounts(make_subaccount):
    sub = make_subaccount()
    with raises_twilio((400, 401, 403)):
        sub.client.api.v2010.accounts.create(friendly_name="grandchild")
