"""Shared fixtures for the black-box Tern test suite.

The suite drives a real `tern up` process with the official twilio-python SDK
and raw HTTP.  Synchronisation is done only by polling with a deadline; there
are no fixed sleeps used to "let things settle".
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

# The SDK must talk to the local base URL only; edge/region rewrite the host.
os.environ.pop("TWILIO_EDGE", None)
os.environ.pop("TWILIO_REGION", None)

REPO = Path(__file__).resolve().parents[2]

SID_RE = {
    prefix: re.compile(rf"^{prefix}[0-9a-f]{{32}}$")
    for prefix in ("AC", "SM", "MM", "PN", "SK", "MG")
}
RFC2822_RE = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} \+0000$"
)
# Destinations with this prefix are configured to end "undelivered" / 30003.
UNDELIVERED_PREFIX = "+1415555"
UNDELIVERED_CODE = 30003
# Destinations with this prefix are refused by the simulated carriers at submission
# (ESME_RINVDSTADR), so they end "failed" / 30005 after every carrier was tried.
FAILED_PREFIX = "+1415666"
FAILED_CODE = 30005

SESSION_CONFIG = f"""
[sim]
receipt_delay_ms = 50

[[sim.rules]]
prefix = "{UNDELIVERED_PREFIX}"
delivery_ratio = 0.0
stat = "UNDELIV"
err = 3

[[sim.rules]]
prefix = "{FAILED_PREFIX}"
submit_status = 11

[webhooks]
max_attempts = 3
"""

HTTP_TIMEOUT = 15  # seconds, for every single HTTP request the tests make


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------


def tern_bin() -> Path:
    env = os.environ.get("TERN_BIN")
    if env:
        return Path(env)
    target = os.environ.get("CARGO_TARGET_DIR") or str(REPO / "target")
    return Path(target) / "release" / "tern"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll(fn: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05, desc: str = ""):
    """Call fn until it returns something truthy; return that value.

    Raises AssertionError (with the last value / exception) at the deadline.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    last_exc: Optional[BaseException] = None
    while True:
        try:
            last = fn()
            last_exc = None
            if last:
                return last
        except (TwilioException, requests.RequestException, AssertionError) as exc:
            last_exc = exc
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {desc or fn!r}; "
                f"last value={last!r} last error={last_exc!r}"
            )
        time.sleep(interval)


_used_numbers: set[str] = set()
_numbers_lock = threading.Lock()
_AREA_CODES = ["212", "312", "646", "718", "917", "305", "206", "617", "702", "503", "213", "404"]


def random_number(area: Optional[str] = None) -> str:
    """A fresh, valid-looking US E.164 number never handed out before in this run."""
    with _numbers_lock:
        while True:
            a = area or random.choice(_AREA_CODES)
            n = f"+1{a}{random.randint(201, 989)}{random.randint(0, 9999):04d}"
            if n.startswith(UNDELIVERED_PREFIX) or n.startswith(FAILED_PREFIX):
                continue
            if n not in _used_numbers:
                _used_numbers.add(n)
                return n


def undeliverable_number() -> str:
    with _numbers_lock:
        while True:
            n = f"{UNDELIVERED_PREFIX}{random.randint(0, 9999):04d}"
            if n not in _used_numbers:
                _used_numbers.add(n)
                return n


def failing_number() -> str:
    with _numbers_lock:
        while True:
            n = f"{FAILED_PREFIX}{random.randint(0, 9999):04d}"
            if n not in _used_numbers:
                _used_numbers.add(n)
                return n


@dataclass
class ApiError:
    """Normalised view of an SDK error (TwilioRestException or a failed page fetch)."""

    status: Optional[int]
    code: Optional[int]
    msg: str
    exc: BaseException


def api_error(exc: BaseException) -> ApiError:
    if isinstance(exc, TwilioRestException):
        return ApiError(exc.status, exc.code, str(exc.msg), exc)
    # list()/stream()/page() raise TwilioException("Unable to fetch page", response)
    resp = exc.args[1] if len(exc.args) > 1 else None
    status = getattr(resp, "status_code", None)
    code = None
    text = getattr(resp, "text", "") or ""
    try:
        code = json.loads(text).get("code")
    except (ValueError, AttributeError):
        pass
    return ApiError(status, code, f"{exc.args[0] if exc.args else exc}: {text[:300]}", exc)


@contextlib.contextmanager
def raises_twilio(status: Any = None, code: Any = None):
    """Expect an SDK error with the given HTTP status and Twilio error code.

    `status`/`code` may be an int or a collection of acceptable ints.  Works for
    create/fetch/update/delete (TwilioRestException) and for list/stream/page
    (TwilioException "Unable to fetch page" carrying the response).
    """
    holder: dict = {}
    with pytest.raises(TwilioException) as ei:
        yield holder
    err = api_error(ei.value)
    holder["error"] = err
    if status is not None:
        ok = err.status in status if isinstance(status, (set, tuple, list)) else err.status == status
        assert ok, f"expected HTTP {status}, got {err.status} (code {err.code}: {err.msg})"
    if code is not None:
        ok = err.code in code if isinstance(code, (set, tuple, list)) else err.code == code
        assert ok, f"expected error code {code}, got {err.code} (HTTP {err.status}: {err.msg})"


def make_client(base_url: str, username: str, password: str, account_sid: Optional[str] = None) -> Client:
    c = Client(
        username,
        password,
        account_sid,
        http_client=TwilioHttpClient(timeout=HTTP_TIMEOUT),
    )
    c.api.base_url = base_url
    c.messaging.base_url = base_url
    return c


# --------------------------------------------------------------------------
# the server under test
# --------------------------------------------------------------------------


@dataclass
class Creds:
    account_sid: str
    auth_token: str
    api_base_url: str
    phone_numbers: list[str]
    raw: dict = field(default_factory=dict)


_SERVERS: list["TernServer"] = []
# The databases this run made (scaleout backend), dropped when the run ends.
_DATABASES: list[str] = []
PG_ADMIN = os.environ.get("TERN_TEST_POSTGRES_ADMIN", "postgres://postgres@127.0.0.1:5432/postgres")
_CURRENT_TEST = {"nodeid": None}


# Which backends `tern up` runs on: "embedded" (SQLite + in-process queue, the default) or
# "scaleout" (PostgreSQL + NATS JetStream, a fresh database and bus region per server), so
# the same suite proves the same behaviour on both.
BACKEND = os.environ.get("TERN_TEST_BACKEND", "embedded")


def _backend_config() -> str:
    if BACKEND == "embedded":
        return ""
    if BACKEND != "scaleout":
        raise RuntimeError(f"TERN_TEST_BACKEND must be embedded or scaleout, not {BACKEND}")
    tag = "py" + uuid.uuid4().hex[:12]
    subprocess.run(["psql", PG_ADMIN, "-q", "-c", f"CREATE DATABASE tern_{tag}"], check=True,
                   stdout=subprocess.DEVNULL)
    _DATABASES.append(f"tern_{tag}")
    nats = os.environ.get("TERN_TEST_NATS_URL", "nats://127.0.0.1:4222")
    return (f'\n[node]\nname = "{tag}"\nregion = "{tag}"\n'
            f'[store]\nurl = "postgres://postgres@127.0.0.1:5432/tern_{tag}"\n'
            f'[bus]\nurl = "{nats}"\n')


class TernServer:
    """One `tern up` process with its own data dir, config and log file."""

    def __init__(self, root: Path, config_text: Optional[str] = None, name: str = "tern",
                 port: Optional[int] = None):
        self.name = name
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.root / "data"
        self.data_dir.mkdir(exist_ok=True)
        self.log_path = self.root / "tern.log"
        self.config_path: Optional[Path] = None
        backend = _backend_config()
        if config_text is not None or backend:
            self.config_path = self.root / "config.toml"
            self.config_path.write_text((config_text or "") + backend)
        self.port = port or free_port()
        self.smpp_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.proc: Optional[subprocess.Popen] = None
        self.creds: Optional[Creds] = None
        self._log_fh = None
        self.owner = _CURRENT_TEST["nodeid"]
        _SERVERS.append(self)

    # -- process control ------------------------------------------------
    def start(self, timeout: float = 60.0) -> Creds:
        binary = tern_bin()
        if not binary.exists():
            raise RuntimeError(
                f"tern binary not found at {binary}; build it with "
                "`cargo build --release -p tern` or set TERN_BIN"
            )
        cmd = [str(binary), "up", "--data-dir", str(self.data_dir),
               "--listen", f"127.0.0.1:{self.port}",
               "--smpp-listen", f"127.0.0.1:{self.smpp_port}"]
        if self.config_path:
            cmd += ["--config", str(self.config_path)]
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        env.setdefault("RUST_BACKTRACE", "1")
        env.setdefault("NO_COLOR", "1")
        self._log_fh = open(self.log_path, "ab")
        self._log_fh.write(f"\n===== [{time.strftime('%H:%M:%S')}] {' '.join(cmd)}\n".encode())
        self._log_fh.flush()
        self.proc = subprocess.Popen(cmd, stdout=self._log_fh, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env)
        self.wait_ready(timeout)
        self.creds = self._read_creds(timeout)
        return self.creds

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode} before becoming ready:\n"
                    + self.log_tail()
                )
            try:
                r = requests.get(self.base_url + "/readyz", timeout=2)
                if r.status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() >= deadline:
                raise RuntimeError(f"{self.name} not ready after {timeout}s:\n" + self.log_tail())
            time.sleep(0.05)

    def _read_creds(self, timeout: float) -> Creds:
        path = self.data_dir / "credentials.json"

        def load():
            if not path.exists():
                return None
            try:
                return json.loads(path.read_text())
            except ValueError:
                return None

        raw = poll(load, timeout=timeout, desc=f"{path} to exist")
        return Creds(
            account_sid=raw["account_sid"],
            auth_token=raw["auth_token"],
            api_base_url=raw["api_base_url"],
            phone_numbers=list(raw["phone_numbers"]),
            raw=raw,
        )

    def stop(self, timeout: float = 30.0) -> Optional[int]:
        """SIGTERM and wait; returns the exit code (kills with SIGKILL on timeout)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                rc = None
                self._close_log()
                return rc
        rc = self.proc.returncode
        self._close_log()
        return rc

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._close_log()

    def _close_log(self):
        if self._log_fh:
            self._log_fh.close()
            self._log_fh = None

    def log_tail(self, n: int = 60) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])

    # -- convenience ------------------------------------------------------
    def client(self, creds: Optional[Creds] = None) -> Client:
        c = creds or self.creds
        assert c is not None
        return make_client(self.base_url, c.account_sid, c.auth_token)


def pytest_sessionfinish(session, exitstatus):
    """Drops the databases the run made, so runs do not pile them up on the server."""
    for db in _DATABASES:
        subprocess.run(["psql", PG_ADMIN, "-q", "-c", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def pytest_runtest_setup(item):
    _CURRENT_TEST["nodeid"] = item.nodeid


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, attach the log tail of every server that is running or was made by this test."""
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for s in list(_SERVERS):
            running = s.proc is not None and s.proc.poll() is None
            if running or s.owner == item.nodeid:
                rep.sections.append((f"{s.name} log tail ({s.log_path})", s.log_tail()))


# --------------------------------------------------------------------------
# raw HTTP access to the REST API
# --------------------------------------------------------------------------


class RawApi:
    """Direct JSON access (no SDK), with Basic auth."""

    def __init__(self, base_url: str, user: str, password: str, account_sid: Optional[str] = None):
        self.base_url = base_url.rstrip("/")
        self.auth = (user, password)
        self.account_sid = account_sid or user
        self.session = requests.Session()

    def url(self, path: str, account_sid: Optional[str] = None) -> str:
        if path.startswith("http://") or path.startswith("https://"):
            return path
        if path.startswith("/"):
            return self.base_url + path
        return f"{self.base_url}/2010-04-01/Accounts/{account_sid or self.account_sid}/{path}"

    def get(self, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", HTTP_TIMEOUT)
        return self.session.get(self.url(path), auth=self.auth, **kw)

    def post(self, path: str, data=None, **kw) -> requests.Response:
        kw.setdefault("timeout", HTTP_TIMEOUT)
        return self.session.post(self.url(path), data=data, auth=self.auth, **kw)

    def delete(self, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", HTTP_TIMEOUT)
        return self.session.delete(self.url(path), auth=self.auth, **kw)


# --------------------------------------------------------------------------
# webhook / status-callback receiver
# --------------------------------------------------------------------------


@dataclass
class Event:
    method: str
    path: str  # path only, without the query
    full_path: str  # path + query, as requested
    url: str  # absolute URL the request was made to
    headers: dict  # lower-cased header names
    multi: dict  # name -> [values]
    params: dict  # name -> first value
    raw: bytes
    signature: Optional[str]
    valid: Optional[bool]  # None: no token known for AccountSid
    response_status: int
    t: float

    @property
    def status(self) -> Optional[str]:
        return self.params.get("MessageStatus")


class _MultiDict(dict):
    """name -> [values]; `getall` makes RequestValidator sign every value."""

    def getall(self, name):
        return self[name]


class Receiver:
    """HTTP server in a thread that records and validates every request."""

    DEFAULT_BODY = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'

    def __init__(self):
        self.events: list[Event] = []
        self.lock = threading.Lock()
        self.tokens: dict[str, str] = {}
        self._responses: dict[str, list[dict]] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # silence
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                receiver._record(self, raw)

            do_POST = _handle
            do_GET = _handle
            do_PUT = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- programming ---------------------------------------------------------
    def add_token(self, account_sid: str, token: str) -> None:
        with self.lock:
            self.tokens[account_sid] = token

    def url(self, name: str = "cb") -> str:
        """A fresh URL on this receiver, unique per call."""
        return f"{self.base_url}/t/{uuid.uuid4().hex}/{name}"

    def respond(self, url: str, body: str = "", status: int = 200,
                content_type: str = "text/xml", count: Optional[int] = None,
                delay: float = 0.0) -> None:
        """Program the answer for requests to url's path.

        Entries are used in order; one with count=N is used N times, then dropped.
        The last entry with count=None sticks.
        """
        path = urlsplit(url).path
        with self.lock:
            self._responses.setdefault(path, []).append(
                {"body": body, "status": status, "content_type": content_type, "count": count,
                 "delay": delay}
            )

    def reset_response(self, url: str) -> None:
        with self.lock:
            self._responses.pop(urlsplit(url).path, None)

    def respond_twiml(self, url: str, message: Optional[str]) -> None:
        """Answer with <Response><Message>message</Message></Response> (or empty)."""
        from twilio.twiml.messaging_response import MessagingResponse

        r = MessagingResponse()
        if message is not None:
            r.message(message)
        self.reset_response(url)
        self.respond(url, str(r), content_type="text/xml")

    def _pick_response(self, path: str) -> dict:
        entries = self._responses.get(path)
        while entries:
            e = entries[0]
            if e["count"] is None:
                return e
            if e["count"] > 0:
                e["count"] -= 1
                if e["count"] == 0:
                    entries.pop(0)
                return e
            entries.pop(0)
        return {"body": "", "status": 200, "content_type": "text/xml", "count": None}

    def _record(self, h: BaseHTTPRequestHandler, raw: bytes) -> None:
        split = urlsplit(h.path)
        url = self.base_url + h.path
        headers = {k.lower(): v for k, v in h.headers.items()}
        multi: dict[str, list[str]] = {}
        ctype = headers.get("content-type", "")
        if h.command == "POST" and "application/x-www-form-urlencoded" in ctype:
            for k, v in parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True):
                multi.setdefault(k, []).append(v)
        elif h.command == "GET":
            for k, v in parse_qsl(split.query, keep_blank_values=True):
                multi.setdefault(k, []).append(v)
        params = {k: v[0] for k, v in multi.items()}
        sig = headers.get("x-twilio-signature")
        with self.lock:
            token = self.tokens.get(params.get("AccountSid", ""))
            resp = self._pick_response(split.path)
        valid: Optional[bool] = None
        if token is not None:
            sign_params = _MultiDict(multi) if h.command == "POST" else {}
            try:
                valid = bool(sig) and RequestValidator(token).validate(url, sign_params, sig)
            except Exception:  # noqa: BLE001 - a validator crash is an invalid signature
                valid = False
        ev = Event(
            method=h.command, path=split.path, full_path=h.path, url=url, headers=headers,
            multi=multi, params=params, raw=raw, signature=sig, valid=valid,
            response_status=resp["status"], t=time.time(),
        )
        with self.lock:
            self.events.append(ev)
        if resp.get("delay"):
            time.sleep(resp["delay"])  # a deliberately slow endpoint, not synchronisation
        body = resp["body"].encode()
        h.send_response(resp["status"])
        h.send_header("Content-Type", resp["content_type"])
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    # -- inspection ----------------------------------------------------------
    def snapshot(self) -> list[Event]:
        with self.lock:
            return list(self.events)

    def events_for(self, url: str) -> list[Event]:
        path = urlsplit(url).path
        return [e for e in self.snapshot() if e.path == path]

    def statuses_for(self, url: str, sid: Optional[str] = None) -> list[str]:
        return [e.status for e in self.events_for(url)
                if sid is None or e.params.get("MessageSid") == sid]

    def wait_for(self, predicate: Callable[[list[Event]], Any], timeout: float = 30.0,
                 desc: str = "") -> Any:
        """Poll the recorded events until predicate(events) is truthy; return it."""
        deadline = time.monotonic() + timeout
        while True:
            evs = self.snapshot()
            r = predicate(evs)
            if r:
                return r
            if time.monotonic() >= deadline:
                tail = [(e.path, e.params.get("MessageStatus"), e.params.get("MessageSid"))
                        for e in evs[-10:]]
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {desc or 'receiver events'}; "
                    f"{len(evs)} events recorded, last: {tail}"
                )
            time.sleep(0.05)

    def wait_status(self, url: str, sid: str, status: str, timeout: float = 30.0) -> list[Event]:
        path = urlsplit(url).path

        def pred(evs):
            mine = [e for e in evs if e.path == path and e.params.get("MessageSid") == sid]
            return mine if any(e.status == status for e in mine) else None

        return self.wait_for(pred, timeout, desc=f"callback {status} for {sid} at {path}")


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="session")
def tern(tmp_path_factory, receiver):
    server = TernServer(tmp_path_factory.mktemp("tern-session"), SESSION_CONFIG, name="tern-session")
    server.start()
    receiver.add_token(server.creds.account_sid, server.creds.auth_token)
    yield server
    rc = server.stop()
    assert rc == 0, f"tern did not exit 0 on SIGTERM (rc={rc}):\n{server.log_tail()}"


@pytest.fixture(scope="session")
def creds(tern) -> Creds:
    return tern.creds


@pytest.fixture(scope="session")
def base_url(tern) -> str:
    return tern.base_url


@pytest.fixture(scope="session")
def client(tern, creds) -> Client:
    return make_client(tern.base_url, creds.account_sid, creds.auth_token)


@pytest.fixture(scope="session")
def raw(tern, creds) -> RawApi:
    return RawApi(tern.base_url, creds.account_sid, creds.auth_token)


@pytest.fixture
def sender(creds) -> str:
    """A number the main account owns (from credentials.json)."""
    return creds.phone_numbers[0]


@pytest.fixture
def handset() -> str:
    return random_number()


@dataclass
class SubAccount:
    sid: str
    token: str
    client: Client  # authenticated as the subaccount itself
    raw: RawApi


@pytest.fixture
def make_subaccount(client, tern, receiver):
    """Factory: create a fresh subaccount of the main account."""

    def make(name: Optional[str] = None) -> SubAccount:
        acct = client.api.v2010.accounts.create(friendly_name=name or f"sub-{uuid.uuid4().hex[:8]}")
        assert acct.sid and SID_RE["AC"].match(acct.sid), acct.sid
        assert acct.auth_token, "subaccount create must return its auth_token"
        receiver.add_token(acct.sid, acct.auth_token)
        return SubAccount(
            sid=acct.sid,
            token=acct.auth_token,
            client=make_client(tern.base_url, acct.sid, acct.auth_token),
            raw=RawApi(tern.base_url, acct.sid, acct.auth_token),
        )

    return make


def wait_message_status(client: Client, sid: str, statuses, timeout: float = 30.0,
                        account_sid: Optional[str] = None):
    """Poll Messages/{sid} until its status is one of `statuses`; return the instance."""
    if isinstance(statuses, str):
        statuses = {statuses}
    ctx = (client.api.v2010.accounts(account_sid).messages(sid) if account_sid
           else client.messages(sid))
    seen: list[str] = []

    def check():
        m = ctx.fetch()
        if not seen or seen[-1] != m.status:
            seen.append(m.status)
        return m if m.status in statuses else None

    try:
        return poll(check, timeout=timeout, desc=f"message {sid} to reach {sorted(statuses)}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; statuses seen: {seen}") from None


def sim_inbound(base_url: str, auth: tuple[str, str], from_: str, to: str, body: str) -> requests.Response:
    return requests.post(
        base_url + "/sim/v1/Inbound",
        data={"From": from_, "To": to, "Body": body},
        auth=auth,
        timeout=HTTP_TIMEOUT,
    )
