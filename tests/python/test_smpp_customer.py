"""Tern's customer SMPP server, driven by a third-party ESME: `smpplib` (PyPI, 2.2.4).

The client binds with the bootstrap login from credentials.json (`smpp_system_id`,
`smpp_password`, `smpp_address`) to the session server's `--smpp-listen` port, submits
messages and reads their receipts and inbound messages as `deliver_sm`. What it submitted
is then checked through the official Twilio SDK: a submit is a Message like any other.

smpplib's read loop blocks, so every wait here is `read_once()` under a short socket
timeout in a loop with a deadline (`Esme.wait`); a timeout only makes smpplib send an
enquire_link, which keeps the bind alive.
"""

from __future__ import annotations

import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import pytest
import requests
import smpplib.client
import smpplib.consts as C
import smpplib.exceptions
import smpplib.gsm
import smpplib.smpp

from conftest import (
    HTTP_TIMEOUT,
    SID_RE,
    random_number,
    sim_inbound,
    undeliverable_number,
    wait_message_status,
)

ESME_ROK = 0x00
ESME_RINVBNDSTS = 0x04
ESME_RINVSRCADR = 0x0A
ESME_RINVPASWD = 0x0E
ESM_CLASS_RECEIPT = 0x04
# message_state values (SMPP 3.4 §5.2.28)
STATE_DELIVERED = 2
STATE_UNDELIVERABLE = 5

WAIT = 30.0  # seconds: generous, for a loaded 2-core box


def digits(number: str) -> str:
    return number.lstrip("+")


def text(pdu) -> bytes:
    return pdu.short_message or b""


@dataclass
class Esme:
    """An smpplib client that records everything it reads, keyed for the tests."""

    host: str
    port: int
    client: smpplib.client.Client = field(init=False)
    responses: dict = field(default_factory=dict)  # sequence -> submit_sm_resp / query_sm_resp
    delivers: list = field(default_factory=list)  # every deliver_sm, in order
    errors: list = field(default_factory=list)  # every PDU with a non-zero command_status

    def __post_init__(self):
        # A short socket timeout: read_once returns (after an enquire_link) instead of
        # blocking, so waits can check their deadline.
        self.client = smpplib.client.Client(self.host, self.port, timeout=0.5,
                                            allow_unknown_opt_params=True)
        self.client.set_message_sent_handler(self._on_response)
        self.client.set_query_resp_handler(self._on_response)
        self.client.set_message_received_handler(self._on_deliver)
        # smpplib raises on error PDUs by default; record them and let read_once go on to
        # the submit_sm_resp handler, which files them by sequence.
        self.client.set_error_pdu_handler(self.errors.append)

    def _on_response(self, pdu, **_kw):
        self.responses[pdu.sequence] = pdu

    def _on_deliver(self, pdu, **_kw):
        self.delivers.append(pdu)
        return ESME_ROK

    # -- session ------------------------------------------------------------
    def connect(self):
        self.client.connect()
        return self

    def bind(self, system_id: str, password: str):
        return self.client.bind_transceiver(system_id=system_id, password=password)

    def local_addr(self) -> str:
        host, port = self.client._socket.getsockname()[:2]
        return f"{host}:{port}"

    def close(self):
        if self.client._socket is None:
            return
        if self.client.state in (C.SMPP_CLIENT_STATE_BOUND_TX, C.SMPP_CLIENT_STATE_BOUND_RX,
                                 C.SMPP_CLIENT_STATE_BOUND_TRX):
            try:
                self.client.unbind()
            except (smpplib.exceptions.PDUError, smpplib.exceptions.ConnectionError,
                    socket.timeout, OSError):
                pass
        self.client.disconnect()

    # -- reading --------------------------------------------------------------
    def wait(self, predicate: Callable[[], Any], timeout: float = WAIT, desc: str = "") -> Any:
        """read_once() until predicate() is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            got = predicate()
            if got:
                return got
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {desc or predicate!r}; "
                    f"{len(self.delivers)} deliver_sm read, responses for sequences "
                    f"{sorted(self.responses)[-10:]}, errors {[hex(e.status) for e in self.errors]}")
            self.client.read_once()

    def response(self, sequence: int, timeout: float = WAIT):
        return self.wait(lambda: self.responses.get(sequence), timeout,
                         desc=f"the response to sequence {sequence}")

    def receipt_for(self, sid: str, timeout: float = WAIT):
        def find():
            for p in self.delivers:
                if (p.esm_class & 0x3C) == ESM_CLASS_RECEIPT and \
                        (p.receipted_message_id or b"").rstrip(b"\0").decode() == sid:
                    return p
            return None

        return self.wait(find, timeout, desc=f"a deliver_sm receipt for {sid}")

    # -- writing --------------------------------------------------------------
    def submit(self, source: str, destination: str, short_message: bytes, **kw) -> int:
        kw.setdefault("registered_delivery", 1)
        pdu = self.client.send_message(
            source_addr_ton=C.SMPP_TON_INTL, source_addr_npi=C.SMPP_NPI_ISDN,
            source_addr=digits(source),
            dest_addr_ton=C.SMPP_TON_INTL, dest_addr_npi=C.SMPP_NPI_ISDN,
            destination_addr=digits(destination),
            short_message=short_message, **kw)
        return pdu.sequence

    def submit_ok(self, source: str, destination: str, short_message: bytes, **kw) -> str:
        resp = self.response(self.submit(source, destination, short_message, **kw))
        assert resp.status == ESME_ROK, f"submit_sm_resp status {resp.status:#x}"
        return resp.message_id.decode() if isinstance(resp.message_id, bytes) else resp.message_id


def login(creds) -> tuple[str, int, str, str]:
    host, port = creds.raw["smpp_address"].rsplit(":", 1)
    return host, int(port), creds.raw["smpp_system_id"], creds.raw["smpp_password"]


@pytest.fixture
def esme(creds):
    """A bound transceiver with the bootstrap login."""
    host, port, system_id, password = login(creds)
    e = Esme(host, port).connect()
    resp = e.bind(system_id, password)
    assert resp.status == ESME_ROK
    assert e.client.state == C.SMPP_CLIENT_STATE_BOUND_TRX
    yield e
    e.close()


def operator_binds(tern, creds) -> list[dict]:
    r = requests.get(tern.base_url + "/v1/Operator/SmppBinds", timeout=HTTP_TIMEOUT,
                     headers={"Authorization": f"Bearer {creds.raw['operator_token']}"})
    assert r.status_code == 200, r.text
    return r.json()["binds"]


def assert_receipt(pdu, sid: str, stat: str, state: int):
    body = text(pdu).decode("latin-1")
    assert pdu.esm_class & 0x3C == ESM_CLASS_RECEIPT, pdu.esm_class
    assert f"id:{sid} " in body, body
    assert f"stat:{stat} " in body, body
    assert pdu.receipted_message_id.rstrip(b"\0").decode() == sid
    assert pdu.message_state == state, (pdu.message_state, body)
    return body


# --------------------------------------------------------------------------
# binding
# --------------------------------------------------------------------------


def test_credentials_json_names_the_smpp_server(tern, creds):
    assert creds.raw["smpp_address"] == f"127.0.0.1:{tern.smpp_port}", creds.raw
    assert creds.raw.get("operator_token"), "tern up must write an operator token"


def test_bind_transceiver_with_the_bootstrap_login_is_listed(esme, tern, creds):
    mine = [b for b in operator_binds(tern, creds) if b["peer"] == esme.local_addr()]
    assert len(mine) == 1, operator_binds(tern, creds)
    assert mine[0]["system_id"] == creds.raw["smpp_system_id"]
    assert mine[0]["account_sid"] == creds.account_sid
    assert mine[0]["mode"] == "transceiver"


def test_wrong_password_is_refused_with_rinvpaswd_and_no_session(tern, creds):
    host, port, system_id, password = login(creds)
    wrong = password[:-1] + ("a" if password[-1] != "a" else "b")
    for sid_, pw in [(system_id, wrong), ("nosuch" + uuid.uuid4().hex[:6], password)]:
        e = Esme(host, port).connect()
        try:
            with pytest.raises(smpplib.exceptions.PDUError) as ei:
                e.bind(sid_, pw)
            assert ei.value.args[1] == ESME_RINVPASWD, ei.value.args
            assert e.client.state == C.SMPP_CLIENT_STATE_OPEN, "smpplib must not think it is bound"
            local = e.local_addr()
            assert not [b for b in operator_binds(tern, creds) if b["peer"] == local]
            # No session: a submit on this connection is refused with ESME_RINVBNDSTS.
            # Sent raw, past smpplib's own state check.
            sm = smpplib.smpp.make_pdu(
                "submit_sm", client=e.client, source_addr_ton=1, source_addr_npi=1,
                source_addr=digits(creds.phone_numbers[0]), dest_addr_ton=1, dest_addr_npi=1,
                destination_addr=digits(random_number()), short_message=b"not bound")
            e.client._socket.sendall(sm.generate())
            deadline = time.monotonic() + WAIT
            while True:
                try:
                    pdu = e.client.read_pdu()
                    break
                except socket.timeout:
                    assert time.monotonic() < deadline, "no answer to a submit before bind"
            assert (pdu.command, pdu.sequence) == ("submit_sm_resp", sm.sequence)
            assert pdu.status == ESME_RINVBNDSTS, hex(pdu.status)
        finally:
            e.client.disconnect()


# --------------------------------------------------------------------------
# submits, receipts, queries
# --------------------------------------------------------------------------


def test_submit_gsm7_becomes_a_delivered_message_with_a_receipt(esme, client, creds):
    handset = random_number()
    body = f"Hello from smpplib @ {uuid.uuid4().hex[:8]}!"
    sid = esme.submit_ok(creds.phone_numbers[0], handset, smpplib.gsm.gsm_encode(body),
                         data_coding=C.SMPP_ENCODING_DEFAULT)
    assert SID_RE["SM"].match(sid), sid

    m = wait_message_status(client, sid, "delivered", timeout=WAIT)
    assert m.body == body
    assert m.to == handset and m.from_ == creds.phone_numbers[0]
    assert m.direction == "outbound-api"
    assert m.account_sid == creds.account_sid
    assert m.num_segments == "1"

    receipt = esme.receipt_for(sid)
    rtext = assert_receipt(receipt, sid, "DELIVRD", STATE_DELIVERED)
    assert "err:000" in rtext, rtext
    # The receipt comes from the handset the message went to.
    assert receipt.source_addr.decode() == digits(handset)
    assert receipt.destination_addr.decode() == digits(creds.phone_numbers[0])

    # query_sm answers from the store.
    qseq = esme.client.query_message(message_id=sid, source_addr_ton=1, source_addr_npi=1,
                                     source_addr=digits(creds.phone_numbers[0])).sequence
    q = esme.response(qseq)
    assert q.status == ESME_ROK, hex(q.status)
    assert q.message_state == STATE_DELIVERED
    assert (q.message_id.decode() if isinstance(q.message_id, bytes) else q.message_id) == sid
    assert q.final_date, "a final state has a final_date"


def test_submit_ucs2_keeps_the_text(esme, client, creds):
    handset = random_number()
    body = f"Grüße — Привет, 你好 {uuid.uuid4().hex[:6]}"
    sid = esme.submit_ok(creds.phone_numbers[0], handset, body.encode("utf-16-be"),
                         data_coding=C.SMPP_ENCODING_ISO10646)
    assert SID_RE["SM"].match(sid), sid
    m = wait_message_status(client, sid, "delivered", timeout=WAIT)
    assert m.body == body
    assert_receipt(esme.receipt_for(sid), sid, "DELIVRD", STATE_DELIVERED)


def test_multipart_udh_submit_is_one_message_under_one_sid(esme, client, creds):
    handset = random_number()
    tag = uuid.uuid4().hex[:8]
    # Letters, digits and spaces only: smpplib splits GSM-7 by octets and would cut an
    # escape sequence in two.
    body = f"multipart {tag} " + " ".join(f"part{i:03d} lorem ipsum dolor" for i in range(12))
    assert len(body) > 2 * 153
    parts, encoding, esm_class = smpplib.gsm.make_parts(body)
    assert len(parts) >= 3 and esm_class == C.SMPP_GSMFEAT_UDHI
    seqs = [esme.submit(creds.phone_numbers[0], handset, part, data_coding=encoding,
                        esm_class=esm_class) for part in parts]
    resps = [esme.response(s) for s in seqs]
    assert [r.status for r in resps] == [ESME_ROK] * len(parts)
    ids = {r.message_id.decode() for r in resps}
    assert len(ids) == 1, f"every part must be answered with the same SID: {ids}"
    sid = ids.pop()
    assert SID_RE["SM"].match(sid), sid

    m = wait_message_status(client, sid, "delivered", timeout=WAIT)
    assert m.body == body
    assert int(m.num_segments) == len(parts)
    assert_receipt(esme.receipt_for(sid), sid, "DELIVRD", STATE_DELIVERED)
    # One message, not one per part.
    assert [x.sid for x in client.messages.list(to=handset)] == [sid]


def test_undeliverable_destination_gets_an_undeliv_receipt(esme, client, creds):
    handset = undeliverable_number()
    sid = esme.submit_ok(creds.phone_numbers[0], handset, b"you will not get this")
    m = wait_message_status(client, sid, "undelivered", timeout=WAIT)
    assert m.error_code == 30003
    body = assert_receipt(esme.receipt_for(sid), sid, "UNDELIV", STATE_UNDELIVERABLE)
    assert "err:003" in body, body


def test_foreign_source_number_is_refused_with_rinvsrcadr(esme, client, creds):
    foreign = random_number()
    handset = random_number()
    resp = esme.response(esme.submit(foreign, handset, b"spoofed sender"))
    assert resp.status == ESME_RINVSRCADR, hex(resp.status)
    assert client.messages.list(to=handset) == []
    # The bind survives the refusal.
    assert SID_RE["SM"].match(esme.submit_ok(creds.phone_numbers[0], handset, b"after"))


def test_submit_without_registered_delivery_gets_no_receipt(esme, client, creds):
    handset = random_number()
    quiet = esme.submit_ok(creds.phone_numbers[0], handset, b"no receipt please",
                           registered_delivery=0)
    wait_message_status(client, quiet, "delivered", timeout=WAIT)
    # Only once the first is delivered: a receipt for it would have been queued before the
    # second message existed, so it would not come after the second's receipt.
    loud = esme.submit_ok(creds.phone_numbers[0], handset, b"receipt please")
    wait_message_status(client, loud, "delivered", timeout=WAIT)
    esme.receipt_for(loud)
    assert not [p for p in esme.delivers
                if (p.receipted_message_id or b"").rstrip(b"\0").decode() == quiet]


# --------------------------------------------------------------------------
# inbound
# --------------------------------------------------------------------------


def test_inbound_to_a_number_without_sms_url_arrives_as_deliver_sm(esme, tern, client, creds):
    number = client.incoming_phone_numbers.create(phone_number=random_number())
    assert not number.sms_url
    handset = random_number()
    body = f"inbound over smpp {uuid.uuid4().hex[:8]}"
    r = sim_inbound(tern.base_url, (creds.account_sid, creds.auth_token), handset,
                    number.phone_number, body)
    assert r.status_code == 201, r.text
    sid = r.json()["message_sid"]

    def mine():
        return [p for p in esme.delivers if text(p) == body.encode()]

    [pdu] = esme.wait(mine, desc=f"a deliver_sm with the body {body!r}")
    assert pdu.esm_class & 0x3C == 0, f"an inbound message is not a receipt: {pdu.esm_class}"
    assert pdu.data_coding in (0, 1, 3), pdu.data_coding
    assert pdu.source_addr.decode() == digits(handset)
    assert pdu.destination_addr.decode() == digits(number.phone_number)
    m = client.messages(sid).fetch()
    assert (m.direction, m.status, m.body) == ("inbound", "received", body)
