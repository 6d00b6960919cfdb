"""A fake carrier SMSC built on the third-party `smpp34` package (PEERS.md section 5).

    python fake_smsc.py PORT

Accepts every bind, answers each submit_sm with a fresh hex message id and, when the
submit asks for it (registered_delivery & 1), sends a DELIVRD receipt (text form plus
receipted_message_id and message_state TLVs) after DLR_DELAY seconds (default 0.2).

Prints one line per event; submits as `SMSC: submit_sm {json}` so the tests can read what
arrived byte for byte.
"""

import asyncio
import itertools
import json
import os
import sys
import time

import smpp34

HOST, PORT = "127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 2775
ids = itertools.count(1)
DLR_DELAY = float(os.environ.get("DLR_DELAY", "0.2"))


async def send_dlr(esme, ev, msg_id):
    await asyncio.sleep(DLR_DELAY)
    now = time.strftime("%y%m%d%H%M")
    body = (f"id:{msg_id} sub:001 dlvrd:001 submit date:{now} done date:{now} "
            f"stat:DELIVRD err:000 text:{ev.short_message[:20].decode('latin-1')}").encode()
    r = await esme.deliver_sm(
        ev.source_addr, body, source_addr=ev.destination_addr, esm_class=0x04,
        tlvs=[smpp34.Tlv(smpp34.TLV_RECEIPTED_MESSAGE_ID, msg_id.encode() + b"\0"),
              smpp34.Tlv(smpp34.TLV_MESSAGE_STATE, bytes([2]))])  # 2 = DELIVERED
    print("SMSC: DLR", msg_id, "ok:", r.is_success, flush=True)


async def main():
    srv = smpp34.Server(HOST, PORT, system_id="FAKESMSC")
    await srv.start()
    print("SMSC: listening", PORT, flush=True)
    sessions = {}
    tasks = set()
    while True:
        ev = await srv.next()
        if isinstance(ev, smpp34.Esme):
            sessions[ev.session_id] = ev
            print("SMSC: bound", ev.system_id, flush=True)
        elif isinstance(ev, smpp34.SubmitSmEvent):
            msg_id = f"{next(ids):08x}"
            ev.accept(msg_id)
            print("SMSC: submit_sm " + json.dumps({
                "id": msg_id,
                "source_addr": ev.source_addr,
                "source_addr_ton": ev.source_addr_ton,
                "destination_addr": ev.destination_addr,
                "dest_addr_ton": ev.dest_addr_ton,
                "esm_class": ev.esm_class,
                "data_coding": ev.data_coding,
                "registered_delivery": ev.registered_delivery,
                "short_message": ev.short_message.hex(),
            }), flush=True)
            if ev.registered_delivery & 1 and ev.session_id in sessions:
                t = asyncio.create_task(send_dlr(sessions[ev.session_id], ev, msg_id))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
        elif isinstance(ev, smpp34.Unbound):
            sessions.pop(ev.session_id, None)
            print("SMSC: unbound", flush=True)


asyncio.run(main())
