"""Scale-out under faults: PostgreSQL and NATS taken away and brought back under load, and
the region's leader killed with another node standing by.

Every test runs `tern serve` nodes against a PostgreSQL cluster and a `nats-server -js` of
its own (temporary directories, free ports), so it can crash and restart them without
touching the shared servers other tests use. Skipped unless TERN_TEST_BACKEND=scaleout.
Binaries: TERN_TEST_PG_BIN (default /usr/lib/postgresql/15/bin) and TERN_TEST_NATS_SERVER
(default /usr/sbin/nats-server).

Every wait polls with a deadline; the load generator paces itself, which is not
synchronisation.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Optional

import pytest
import requests
from twilio.base.exceptions import TwilioRestException

from conftest import BACKEND, HTTP_TIMEOUT, RawApi, free_port, make_client, poll, random_number, tern_bin
from test_smpp_carrier import SimSmsc, carrier_config

pytestmark = [
    pytest.mark.skipif(BACKEND != "scaleout", reason="needs TERN_TEST_BACKEND=scaleout"),
    pytest.mark.slow,
]

PG_BIN = Path(os.environ.get("TERN_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
NATS_BIN = os.environ.get("TERN_TEST_NATS_SERVER", "/usr/sbin/nats-server")
OPERATOR_TOKEN = "op-" + uuid.uuid4().hex
TERMINAL = {"delivered", "undelivered", "failed", "canceled"}


def wait_port(port: int, timeout: float = 30.0) -> None:
    import socket

    def is_open():
        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex(("127.0.0.1", port)) == 0

    poll(is_open, timeout=timeout, desc=f"port {port} to listen")


# --------------------------------------------------------------------------
# private servers
# --------------------------------------------------------------------------


class PrivateNats:
    """`nats-server -js` on a free port with its own store; kill -9 and start it freely."""

    def __init__(self):
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="tern-nats-"))
        self.proc: Optional[subprocess.Popen] = None
        self.url = f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [NATS_BIN, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        wait_port(self.port)

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def close(self) -> None:
        self.kill9()
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivatePostgres:
    """A PostgreSQL cluster in a temporary directory on a free port, trust auth; stopped
    with `pg_ctl stop -m immediate` (a crash: no shutdown checkpoint, recovery on start)."""

    def __init__(self):
        self.port = free_port()
        # Not under pytest's tmp_path: the server runs as `postgres`, which must reach it.
        self.dir = Path(tempfile.mkdtemp(prefix="tern-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/tern"
        self._as_postgres: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            self._as_postgres = ["runuser", "-u", "postgres", "--"]
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "--no-sync")

    def _run(self, *cmd: str) -> None:
        subprocess.run([*self._as_postgres, *cmd], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, cwd=self.dir)

    def start(self) -> None:
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir}"
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                  "-t", "60", "-o", opts, "start")

    def stop(self) -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w",
                  "stop")

    def create_db(self) -> None:
        subprocess.run(["psql", f"postgres://postgres@127.0.0.1:{self.port}/postgres", "-q",
                        "-c", "CREATE DATABASE tern"], check=True, stdout=subprocess.DEVNULL)

    def close(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------
# tern serve nodes
# --------------------------------------------------------------------------


def node_config(name: str, region: str, pg: PrivatePostgres, nats: PrivateNats,
                extra: str = "") -> str:
    return extra + f"""
[node]
name = "{name}"
region = "{region}"

[store]
url = "{pg.url}"

[bus]
url = "{nats.url}"

[operator]
token = "{OPERATOR_TOKEN}"

[sim]
receipt_delay_ms = 50

[webhooks]
max_attempts = 8
"""


class ServeNode:
    """One `tern serve` process with its config and log in `root`."""

    def __init__(self, root: Path, name: str, config: str):
        self.name = name
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.config_path = root / f"{name}.toml"
        self.config_path.write_text(config)
        self.log_path = root / f"{name}.log"
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.proc: Optional[subprocess.Popen] = None

    def bootstrap(self) -> dict:
        out = subprocess.run(
            [str(tern_bin()), "admin", "bootstrap", "--config", str(self.config_path),
             "--api-base-url", self.base_url],
            check=True, capture_output=True, text=True, timeout=60)
        return json.loads(out.stdout)

    def start(self) -> None:
        env = dict(os.environ, RUST_LOG="info", NO_COLOR="1")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(tern_bin()), "serve", "--config", str(self.config_path),
                 "--listen", f"127.0.0.1:{self.port}", "--smpp-listen", "127.0.0.1:0"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        poll(lambda: self.ready() == 200, timeout=60, desc=f"{self.name} ready")

    def ready(self) -> Optional[int]:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
        try:
            return requests.get(self.base_url + "/readyz", timeout=HTTP_TIMEOUT).status_code
        except requests.RequestException:
            return None

    def operator_node(self) -> dict:
        r = requests.get(self.base_url + "/v1/Operator/Node", timeout=HTTP_TIMEOUT,
                         headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
        assert r.status_code == 200, r.text
        return r.json()

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill9()

    def log_tail(self, n: int = 80) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


@pytest.fixture
def cluster(tmp_path):
    """A private PostgreSQL and NATS, and a factory of nodes on them; everything is torn
    down afterwards, and node logs are printed when the test fails."""
    pg = PrivatePostgres()
    nats = PrivateNats()
    nodes: list[ServeNode] = []
    region = "r" + uuid.uuid4().hex[:8]
    try:
        pg.start()
        pg.create_db()
        nats.start()

        def make(name: str, extra: str = "") -> ServeNode:
            n = ServeNode(tmp_path, name, node_config(name, region, pg, nats, extra))
            nodes.append(n)
            return n

        yield pg, nats, make
    finally:
        for n in nodes:
            n.kill9()
            print(f"----- {n.name} log tail -----\n{n.log_tail()}")
        nats.close()
        pg.close()


# --------------------------------------------------------------------------
# load
# --------------------------------------------------------------------------


class Load:
    """Threads sending messages through the Twilio SDK until stopped, recording what was
    accepted (201), refused with a Twilio error, or left unanswered (maybe accepted)."""

    def __init__(self, base_url: str, creds: dict, callback: str, threads: int = 3):
        self.client = make_client(base_url, creds["account_sid"], creds["auth_token"])
        self.from_ = creds["phone_numbers"]
        self.callback = callback
        self.accepted: list[str] = []
        self.refused: collections.Counter = collections.Counter()  # (status, code)
        self.unanswered = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self, i: int) -> None:
        n = 0
        while not self.stopping.is_set():
            n += 1
            try:
                m = self.client.messages.create(
                    to=random_number(), from_=self.from_[n % len(self.from_)],
                    body=f"load {i}-{n}", status_callback=self.callback)
                with self.lock:
                    self.accepted.append(m.sid)
            except TwilioRestException as e:
                with self.lock:
                    self.refused[(e.status, e.code)] += 1
            except Exception:  # noqa: BLE001 - a timeout or reset: the outcome is unknown
                with self.lock:
                    self.unanswered += 1
            # Pacing, so that a fast-failing API is not hammered.
            self.stopping.wait(0.02)

    def count(self) -> int:
        with self.lock:
            return len(self.accepted)

    def refusals(self, status: int, code: int) -> int:
        with self.lock:
            return self.refused[(status, code)]

    def stop(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(HTTP_TIMEOUT + 5)


def wait_accepted(load: Load, more_than: int, timeout: float = 60.0) -> int:
    return poll(lambda: load.count() > more_than and load.count(), timeout=timeout,
                desc=f"more than {more_than} messages accepted")


def list_all(raw: RawApi) -> list[dict]:
    out: list[dict] = []
    r = raw.get("Messages.json", params={"PageSize": 1000})
    while True:
        assert r.status_code == 200, r.text
        j = r.json()
        out += j["messages"]
        if not j.get("next_page_uri"):
            return out
        r = raw.get(j["next_page_uri"])


def assert_every_accepted_message_ends_once(load: Load, raw: RawApi, receiver) -> None:
    """Every 201 reaches `delivered` and so does every other message of the account (one a
    request left without an answer, or answered 503 after all, may have been stored);
    no message is stored twice; and each message's final status is called back, any
    repeat carrying the same idempotency token (webhooks are at-least-once)."""
    accepted = list(load.accepted)
    assert len(set(accepted)) == len(accepted)

    def all_terminal():
        listed = list_all(raw)
        by_sid = {m["sid"]: m["status"] for m in listed}
        assert len(by_sid) == len(listed), "a message is listed twice"
        missing = [s for s in accepted if s not in by_sid]
        assert not missing, f"{len(missing)} accepted messages are gone: {missing[:5]}"
        pending = [s for s, status in by_sid.items() if status not in TERMINAL]
        return (not pending) and by_sid

    by_sid = poll(all_terminal, timeout=120, interval=0.5,
                  desc="every message of the account to reach a final status")
    statuses = collections.Counter(by_sid.values())
    assert statuses == {"delivered": len(by_sid)}, statuses
    maybe_stored = load.unanswered + sum(load.refused.values())
    assert len(by_sid) - len(accepted) <= maybe_stored, (len(by_sid), len(accepted), maybe_stored)

    def final_callbacks():
        tokens: dict[str, set] = collections.defaultdict(set)
        for e in receiver.snapshot():
            if e.params.get("MessageStatus") == "delivered":
                tokens[e.params.get("MessageSid")].add(e.headers.get("i-twilio-idempotency-token"))
        return all(tokens[s] for s in by_sid) and tokens

    tokens = poll(final_callbacks, timeout=120, interval=0.5,
                  desc="a delivered callback for every message")
    twice = {s: t for s, t in tokens.items() if s in by_sid and len(t) > 1}
    assert not twice, f"final callbacks made twice, not repeated: {list(twice.items())[:5]}"


def assert_unavailable(resp: requests.Response) -> None:
    """A Twilio-shaped 503 that says when to come back."""
    assert resp.status_code == 503, (resp.status_code, resp.text)
    retry = resp.headers.get("Retry-After")
    assert retry is not None and retry.isdigit() and int(retry) > 0, resp.headers
    body = resp.json()
    assert body["code"] == 20503 and body["status"] == 503, body
    assert body["message"] and body["more_info"].startswith("https://"), body


# --------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------


@pytest.mark.timeout(400)
def test_a_postgres_outage_answers_503_and_loses_no_accepted_message(cluster, receiver):
    pg, _nats, make = cluster
    node = make("pg-a")
    creds = node.bootstrap()
    receiver.add_token(creds["account_sid"], creds["auth_token"])
    node.start()
    raw = RawApi(node.base_url, creds["account_sid"], creds["auth_token"])
    poll(lambda: node.operator_node()["is_leader"], timeout=30, desc="the node to lead")
    load = Load(node.base_url, creds, receiver.url("pg-outage"))
    try:
        before = wait_accepted(load, 30)

        pg.stop()
        poll(lambda: node.ready() == 503, timeout=30, desc="readiness to turn false")
        assert "store" in requests.get(node.base_url + "/readyz", timeout=HTTP_TIMEOUT).text
        probe = raw.post("Messages.json", data={"To": random_number(), "Body": "probe",
                                                "From": creds["phone_numbers"][0]})
        assert_unavailable(probe)
        assert_unavailable(raw.get("Messages.json"))
        poll(lambda: load.refusals(503, 20503) >= 20, timeout=60,
             desc="the SDK to see 503/20503 during the outage")
        # Without the store the leader cannot renew its lease: it steps down.
        poll(lambda: not node.operator_node()["is_leader"], timeout=30,
             desc="the leader to step down")

        pg.start()
        poll(lambda: node.ready() == 200, timeout=60, desc="readiness to come back")
        wait_accepted(load, max(before, load.count()) + 30)
        poll(lambda: node.operator_node()["is_leader"], timeout=30, desc="leadership regained")
    finally:
        load.stop()
    assert load.refused.keys() <= {(503, 20503)}, load.refused
    assert_every_accepted_message_ends_once(load, raw, receiver)


@pytest.mark.timeout(400)
def test_a_nats_outage_keeps_accepting_and_every_message_goes_out_once_it_is_back(
        cluster, receiver):
    _pg, nats, make = cluster
    node = make("nats-a")
    creds = node.bootstrap()
    receiver.add_token(creds["account_sid"], creds["auth_token"])
    node.start()
    raw = RawApi(node.base_url, creds["account_sid"], creds["auth_token"])
    load = Load(node.base_url, creds, receiver.url("nats-outage"))
    try:
        wait_accepted(load, 30)

        nats.kill9()
        poll(lambda: node.ready() == 503, timeout=30, desc="readiness to turn false")
        assert "bus" in requests.get(node.base_url + "/readyz", timeout=HTTP_TIMEOUT).text
        # The store is the durable record: sends are still accepted, their jobs wait.
        during = load.count()
        wait_accepted(load, during + 30)
        # Long enough for publishes to go unacknowledged: their jobs wait in the publisher.
        poll(lambda: "publish not acknowledged; retrying" in node.log_tail(2000), timeout=60,
             desc="a publish to wait for NATS")

        nats.start()
        poll(lambda: node.ready() == 200, timeout=60, desc="readiness to come back")
        wait_accepted(load, load.count() + 30)
    finally:
        load.stop()
    assert not load.refused, load.refused
    assert_every_accepted_message_ends_once(load, raw, receiver)


@pytest.mark.timeout(400)
def test_a_killed_leader_is_replaced_and_its_work_finished_by_the_other_node(
        cluster, receiver, tmp_path):
    """Two nodes bound to one carrier (a `tern sim smsc` of their own), load through the
    leader, which is killed: the other node takes the leader lease within a lease's life,
    finds the dead node's presence run out and publishes the pending jobs again, and
    every message the dead node accepted is delivered."""
    _pg, _nats, make = cluster
    smsc = SimSmsc(tmp_path, "shared-smsc", ("--receipt-delay-ms", "50"))
    smsc.start()
    try:
        carrier = carrier_config("smsc", smsc.port)
        a, b = make("lead-a", carrier), make("lead-b", carrier)
        creds = a.bootstrap()
        receiver.add_token(creds["account_sid"], creds["auth_token"])
        a.start()
        first = poll(lambda: (n := a.operator_node())["is_leader"] and n, timeout=30,
                     desc="the first node to lead")
        assert first["name"] == "lead-a" and first["holder"].startswith("lead-a:")
        leases = {lease["name"]: lease for lease in first["leases"]}
        region = first["region"]
        lease = leases[f"leader/{region}"]
        assert set(leases) == {f"leader/{region}", f"node/{region}/{first['holder']}"}
        assert all(lease["holder"] == first["holder"] for lease in leases.values())
        b.start()
        standby = b.operator_node()
        assert (standby["name"], standby["is_leader"]) == ("lead-b", False)
        assert [lease["name"] for lease in standby["leases"]] == [
            f"node/{region}/{standby['holder']}"]
        # The operator endpoint wants the operator's token.
        r = requests.get(b.base_url + "/v1/Operator/Node", timeout=HTTP_TIMEOUT)
        assert r.status_code == 401

        load = Load(a.base_url, creds, receiver.url("leader-kill"))
        try:
            wait_accepted(load, 30)
            a.kill9()
            killed = time.monotonic()
            taken = poll(lambda: (n := b.operator_node())["is_leader"] and n, timeout=20,
                         interval=0.2, desc="the other node to take the leader lease")
            took = time.monotonic() - killed
        finally:
            load.stop()
        lease_b = {lease["name"]: lease for lease in taken["leases"]}[lease["name"]]
        assert lease_b["holder"] == taken["holder"]
        assert lease_b["epoch"] > lease["epoch"], (lease, lease_b)
        metrics = requests.get(b.base_url + "/metrics", timeout=HTTP_TIMEOUT).text
        assert "tern_leader 1" in metrics
        print(f"leader lease taken over {took:.1f} s after the kill")

        raw = RawApi(b.base_url, creds["account_sid"], creds["auth_token"])
        assert_every_accepted_message_ends_once(load, raw, receiver)
        client = make_client(b.base_url, creds["account_sid"], creds["auth_token"])
        m = client.messages.create(to=random_number(), from_=creds["phone_numbers"][1],
                                   body="after")
        poll(lambda: client.messages(m.sid).fetch().status == "delivered", timeout=60,
             desc="a message after the takeover to be delivered")
    finally:
        smsc.stop()


def carrier_view(node: ServeNode, carrier: str = "smsc") -> dict:
    r = requests.get(node.base_url + "/v1/Operator/Carriers", timeout=HTTP_TIMEOUT,
                     headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
    assert r.status_code == 200, r.text
    [c] = [c for c in r.json()["carriers"] if c["id"] == carrier]
    return c


def slot_states(node: ServeNode, carrier: str = "smsc") -> list[str]:
    c = carrier_view(node, carrier)
    return [b["state"] for b in sorted(c["binds"], key=lambda b: b["slot"])]


def test_bind_slots_are_shared_by_the_nodes_and_a_dead_nodes_slots_move(cluster, tmp_path):
    """A carrier allows two binds; two nodes share it: the first takes both, gives one
    back when the second arrives (each then binds one), and when the first is killed the
    second binds both. The carrier never sees more than its two connections."""
    _pg, _nats, make = cluster
    smsc = SimSmsc(tmp_path, "slots-smsc", ("--receipt-delay-ms", "50"))
    smsc.start()
    seen_max = 0

    def connections() -> int:
        nonlocal seen_max
        n = smsc.stats()["connections"]
        seen_max = max(seen_max, n)
        return n

    try:
        carrier = carrier_config("smsc", smsc.port, binds=2)
        a, b = make("slot-a", carrier), make("slot-b", carrier)
        creds = a.bootstrap()
        a.start()
        poll(lambda: slot_states(a) == ["bound", "bound"], timeout=30, interval=0.1,
             desc="the only node to bind both slots")
        b.start()
        poll(lambda: connections() <= 2 and slot_states(a).count("bound") == 1
             and slot_states(b).count("bound") == 1, timeout=40, interval=0.1,
             desc="one slot each")
        a.kill9()
        killed = time.monotonic()
        poll(lambda: connections() <= 2 and slot_states(b) == ["bound", "bound"], timeout=40,
             interval=0.1, desc="the survivor to bind both slots")
        print(f"slots moved {time.monotonic() - killed:.1f} s after the kill")
        client = make_client(b.base_url, creds["account_sid"], creds["auth_token"])
        m = client.messages.create(to=random_number(), from_=creds["phone_numbers"][0],
                                   body="after the move")
        poll(lambda: client.messages(m.sid).fetch().status == "delivered", timeout=60,
             desc="a message through the moved slots")
        assert seen_max <= 2, f"the carrier saw {seen_max} connections"
    finally:
        smsc.stop()


def metric_sum(node: ServeNode, name: str, **labels: str) -> float:
    """The sum of the samples of metric `name` whose labels include `labels`."""
    text = requests.get(node.base_url + "/metrics", timeout=HTTP_TIMEOUT).text
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_carrier_with_fewer_binds_than_nodes_is_reached_through_the_bound_node(
        cluster, receiver, tmp_path):
    """A carrier allows one bind and the region has two nodes: the node without it hands
    its submissions to the node with it over the bus, so messages routed by either node
    are delivered (and called back) while the carrier sees one connection."""
    _pg, _nats, make = cluster
    smsc = SimSmsc(tmp_path, "one-bind-smsc", ("--receipt-delay-ms", "50"))
    smsc.start()
    try:
        carrier = carrier_config("smsc", smsc.port, binds=1)
        a, b = make("one-a", carrier), make("one-b", carrier)
        creds = a.bootstrap()
        receiver.add_token(creds["account_sid"], creds["auth_token"])
        a.start()
        b.start()
        poll(lambda: (slot_states(a) + slot_states(b)).count("bound") == 1,
             timeout=40, interval=0.2, desc="one node to bind the one slot")
        bound, unbound = (a, b) if "bound" in slot_states(a) else (b, a)
        poll(lambda: carrier_view(unbound)["slots_elsewhere"] == 1, timeout=30, interval=0.2,
             desc="the unbound node to see the slot held elsewhere")
        assert carrier_view(bound)["slots_elsewhere"] == 0
        sids = []
        for node in (unbound, bound, unbound):
            client = make_client(node.base_url, creds["account_sid"], creds["auth_token"])
            for n in range(10):
                m = client.messages.create(to=random_number(), from_=creds["phone_numbers"][0],
                                           body=f"one bind {n}",
                                           status_callback=receiver.url("one-bind"))
                sids.append(m.sid)
        raw = RawApi(bound.base_url, creds["account_sid"], creds["auth_token"])

        def statuses() -> collections.Counter:
            return collections.Counter(raw.get(f"Messages/{sid}.json").json()["status"]
                                       for sid in sids)

        poll(lambda: statuses()["delivered"] == len(sids), timeout=90, interval=0.5,
             desc="every message delivered")
        forwarded = metric_sum(unbound, "tern_carrier_forwarded_total", carrier="smsc",
                               result="answered")
        # Route jobs go to either node (one work queue), so only some are the unbound's.
        print(f"the unbound node handed {forwarded:.0f} submissions to the bound one")
        assert forwarded >= 1, "the unbound node forwarded nothing"
        assert metric_sum(bound, "tern_carrier_forwarded_total") == 0
        assert smsc.stats()["connections"] <= 1

        def called_back() -> set:
            return {e.params.get("MessageSid") for e in receiver.snapshot()
                    if e.params.get("MessageStatus") == "delivered"}

        poll(lambda: set(sids) <= called_back(), timeout=60, interval=0.5,
             desc="a delivered callback for every message")
    finally:
        smsc.stop()


def pending_jobs(pg: PrivatePostgres) -> int:
    out = subprocess.run(["psql", pg.url, "-Atc", "SELECT count(*) FROM jobs"], check=True,
                         capture_output=True, text=True, timeout=30)
    return int(out.stdout.strip())


def test_a_restarting_node_does_not_send_another_nodes_callbacks_again(cluster, receiver):
    """Callbacks are slow (1.5 s each), so both nodes hold webhook jobs when the second
    restarts and, as every starting node does, publishes all pending jobs again: the copies
    of jobs the first node runs are claimed by it and skipped, so each status of each
    message is called back exactly once."""
    pg, _nats, make = cluster
    a, b = make("cb-a"), make("cb-b")
    creds = a.bootstrap()
    receiver.add_token(creds["account_sid"], creds["auth_token"])
    a.start()
    b.start()
    url = receiver.url("slow")
    receiver.respond(url, delay=1.5)
    sids = []
    for node in (a, b):
        client = make_client(node.base_url, creds["account_sid"], creds["auth_token"])
        for n in range(10):
            sids.append(client.messages.create(to=random_number(), from_=creds["phone_numbers"][0],
                                               body=f"slow {n}", status_callback=url).sid)
    poll(lambda: len(receiver.events_for(url)) >= 10, timeout=60, interval=0.1,
         desc="callbacks in flight")
    b.stop()
    b.start()

    def delivered_everywhere():
        return {e.params.get("MessageSid") for e in receiver.events_for(url)
                if e.status == "delivered"} >= set(sids)

    poll(delivered_everywhere, timeout=120, interval=0.5, desc="every delivered callback")
    poll(lambda: pending_jobs(pg) == 0, timeout=60, interval=0.5, desc="no job left")
    calls = collections.Counter((e.params.get("MessageSid"), e.status)
                                for e in receiver.events_for(url))
    twice = {k: n for k, n in calls.items() if n > 1}
    assert not twice, f"called back more than once: {list(twice.items())[:5]}"
    assert all(e.valid for e in receiver.events_for(url))


class Loads:
    """Several loads seen as one (what `assert_every_accepted_message_ends_once` reads)."""

    def __init__(self, loads: list[Load]):
        self.loads = loads

    def stop(self) -> None:
        for load in self.loads:
            load.stop()

    @property
    def accepted(self) -> list[str]:
        return [s for load in self.loads for s in load.accepted]

    @property
    def unanswered(self) -> int:
        return sum(load.unanswered for load in self.loads)

    @property
    def refused(self) -> collections.Counter:
        return sum((load.refused for load in self.loads), collections.Counter())


def test_three_nodes_under_load_lose_one_and_finish_everything_once(cluster, receiver, tmp_path):
    """Three nodes share one carrier of three binds and take load on all three; the
    first (the leader) is killed: another node leads, the dead node's bind slot is bound
    by a survivor, and every message any node accepted is delivered, stored once, its
    final status called back once (repeats only with the same idempotency token)."""
    _pg, _nats, make = cluster
    smsc = SimSmsc(tmp_path, "three-smsc", ("--receipt-delay-ms", "50"))
    smsc.start()
    try:
        carrier = carrier_config("smsc", smsc.port, binds=3)
        nodes = [make(f"three-{n}", carrier) for n in "abc"]
        creds = nodes[0].bootstrap()
        receiver.add_token(creds["account_sid"], creds["auth_token"])
        for n in nodes:
            n.start()
        a, b, c = nodes
        poll(lambda: a.operator_node()["is_leader"], timeout=30, desc="the first node to lead")
        poll(lambda: all(slot_states(n).count("bound") == 1 for n in nodes), timeout=40,
             interval=0.2, desc="one bind slot per node")
        loads = Loads([Load(n.base_url, creds, receiver.url("three"), threads=2) for n in nodes])
        try:
            poll(lambda: len(loads.accepted) > 60, timeout=60, desc="load on every node")
            a.kill9()
            poll(lambda: b.operator_node()["is_leader"] or c.operator_node()["is_leader"],
                 timeout=30, interval=0.2, desc="a survivor to lead")
            poll(lambda: slot_states(b).count("bound") + slot_states(c).count("bound") == 3
                 and smsc.stats()["connections"] <= 3, timeout=40, interval=0.2,
                 desc="the dead node's bind slot to move")
            # More load on the survivors after the move.
            before = len(loads.accepted)
            poll(lambda: len(loads.accepted) > before + 30, timeout=60, desc="load after the kill")
        finally:
            loads.stop()
        raw = RawApi(b.base_url, creds["account_sid"], creds["auth_token"])
        assert_every_accepted_message_ends_once(loads, raw, receiver)
    finally:
        smsc.stop()
