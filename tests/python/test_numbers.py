"""IncomingPhoneNumbers CRUD and ownership."""

from __future__ import annotations

from conftest import RFC2822_RE, SID_RE, random_number, raises_twilio


def test_credentials_numbers_are_listed(client, creds):
    assert len(creds.phone_numbers) == 2
    assert len(set(creds.phone_numbers)) == 2
    for n in creds.phone_numbers:
        assert n.startswith("+1") and len(n) == 12 and n[1:].isdigit(), n
    owned = {p.phone_number for p in client.incoming_phone_numbers.list()}
    assert set(creds.phone_numbers) <= owned


def test_number_crud(client, creds, receiver, raw):
    number = random_number()
    sms_url = receiver.url("sms")
    fallback = receiver.url("fallback")
    status_cb = receiver.url("pn-status")
    voice = receiver.url("voice")
    pn = client.incoming_phone_numbers.create(
        phone_number=number, sms_url=sms_url, sms_method="POST", sms_fallback_url=fallback,
        status_callback=status_cb, voice_url=voice, friendly_name="crud",
    )
    assert SID_RE["PN"].match(pn.sid), pn.sid
    assert pn.account_sid == creds.account_sid
    assert pn.phone_number == number
    assert pn.sms_url == sms_url
    assert pn.sms_method == "POST"
    assert pn.sms_fallback_url == fallback
    assert pn.status_callback == status_cb
    assert pn.voice_url == voice
    assert pn.uri == f"/2010-04-01/Accounts/{creds.account_sid}/IncomingPhoneNumbers/{pn.sid}.json"

    j = raw.get(f"IncomingPhoneNumbers/{pn.sid}.json").json()
    assert RFC2822_RE.match(j["date_created"]), j["date_created"]

    fetched = client.incoming_phone_numbers(pn.sid).fetch()
    assert fetched.phone_number == number and fetched.sms_url == sms_url

    assert pn.sid in {p.sid for p in client.incoming_phone_numbers.list()}
    r = raw.get("IncomingPhoneNumbers.json", params={"PageSize": 1})
    assert r.status_code == 200
    body = r.json()
    assert "incoming_phone_numbers" in body and len(body["incoming_phone_numbers"]) == 1
    assert body["next_page_uri"] and body["next_page_uri"].startswith("/2010-04-01/")

    new_url = receiver.url("sms2")
    upd = client.incoming_phone_numbers(pn.sid).update(sms_url=new_url, sms_method="GET")
    assert upd.sms_url == new_url
    assert upd.sms_method == "GET"
    again = client.incoming_phone_numbers(pn.sid).fetch()
    assert again.sms_url == new_url and again.sms_method == "GET"
    assert again.voice_url == voice, "update must not clear other fields"

    assert client.incoming_phone_numbers(pn.sid).delete() is True
    with raises_twilio(404, 20404):
        client.incoming_phone_numbers(pn.sid).fetch()
    assert pn.sid not in {p.sid for p in client.incoming_phone_numbers.list()}
    # Released: it can be provisioned again.
    pn2 = client.incoming_phone_numbers.create(phone_number=number)
    assert pn2.sid != pn.sid
    assert pn2.phone_number == number


def test_new_number_can_send(client, handset):
    number = random_number()
    client.incoming_phone_numbers.create(phone_number=number)
    m = client.messages.create(to=handset, from_=number, body="from a new number")
    assert m.from_ == number


def test_deleted_number_cannot_send(client, handset):
    number = random_number()
    pn = client.incoming_phone_numbers.create(phone_number=number)
    client.incoming_phone_numbers(pn.sid).delete()
    with raises_twilio(400, 21606):
        client.messages.create(to=handset, from_=number, body="x")


def test_duplicate_number_rejected(client, make_subaccount):
    number = random_number()
    client.incoming_phone_numbers.create(phone_number=number)
    with raises_twilio(400):
        client.incoming_phone_numbers.create(phone_number=number)
    sub = make_subaccount()
    with raises_twilio(400):
        client.api.v2010.accounts(sub.sid).incoming_phone_numbers.create(phone_number=number)
    with raises_twilio(400):
        client.incoming_phone_numbers.create(phone_number=client_number(client))


def client_number(client):
    return client.incoming_phone_numbers.list(limit=1)[0].phone_number


def test_invalid_number_rejected(client):
    for bad in ("+1234", "12125551234x", "not a number"):
        with raises_twilio(400):
            client.incoming_phone_numbers.create(phone_number=bad)


def test_other_account_cannot_see_number(client, make_subaccount):
    number = random_number()
    pn = client.incoming_phone_numbers.create(phone_number=number)
    sub = make_subaccount()
    with raises_twilio(404, 20404):
        sub.client.incoming_phone_numbers(pn.sid).fetch()
    with raises_twilio(404, 20404):
        sub.client.incoming_phone_numbers(pn.sid).update(sms_url="http://127.0.0.1:1/x")
    with raises_twilio(404, 20404):
        sub.client.incoming_phone_numbers(pn.sid).delete()
    assert pn.sid not in {p.sid for p in sub.client.incoming_phone_numbers.list()}
    assert client.incoming_phone_numbers(pn.sid).fetch().sms_url in (None, "")
    # The sub cannot send from it either.
    with raises_twilio(400, 21606):
        sub.client.messages.create(to=random_number(), from_=number, body="x")
