"""SMPP credentials (a Tern extension): /v1/SmppCredentials, the bootstrap login in
credentials.json, and `tern admin smpp-credential` / `tern admin bootstrap`.

Raw HTTP with Basic auth: the Twilio SDK has no such resource.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from pathlib import Path
from typing import Optional

import pytest
import requests

from conftest import (
    HTTP_TIMEOUT,
    RawApi,
    TernServer,
    _backend_config,
    tern_bin,
)

SC_RE = re.compile(r"^SC[0-9a-f]{32}$")
ISO_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
GENERATED_ID_RE = re.compile(r"^tern[a-z0-9]{8}$")
GENERATED_PW_RE = re.compile(r"^[A-Za-z0-9]{8}$")
BOOTSTRAP_NAME = "Tern bootstrap SMPP login"
PATH = "/v1/SmppCredentials"
FIELDS = {"sid", "account_sid", "system_id", "friendly_name", "date_created", "url"}


def new_system_id() -> str:
    return "py" + uuid.uuid4().hex[:10]


def create(raw: RawApi, **params) -> requests.Response:
    return raw.post(PATH, data=params)


def created(raw: RawApi, **params) -> dict:
    r = create(raw, **params)
    assert r.status_code == 201, r.text
    return r.json()


def list_all(raw: RawApi, page_size: int = 50) -> list[dict]:
    """Every credential of the account, following meta.next_page_url."""
    out: list[dict] = []
    r = raw.get(PATH, params={"PageSize": page_size})
    for _ in range(1000):
        assert r.status_code == 200, r.text
        j = r.json()
        assert j["meta"]["key"] == "credentials"
        out += j["credentials"]
        nxt = j["meta"]["next_page_url"]
        if not nxt:
            return out
        r = raw.get(nxt)
    raise AssertionError("paging does not terminate")


def assert_error(r: requests.Response, status: int, code: int, *needles: str) -> dict:
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text}"
    j = r.json()
    assert j["code"] == code, j
    assert j["status"] == status, j
    assert j["more_info"].endswith(str(code)), j
    for n in needles:
        assert n in j["message"], (n, j["message"])
    return j


# --------------------------------------------------------------------------
# REST API
# --------------------------------------------------------------------------


def test_create_generates_a_system_id_and_password_shown_once(raw, creds, base_url):
    c = created(raw)
    assert set(c) == FIELDS | {"password"}, c
    assert SC_RE.match(c["sid"]), c["sid"]
    assert c["account_sid"] == creds.account_sid
    assert GENERATED_ID_RE.match(c["system_id"]), c["system_id"]
    assert GENERATED_PW_RE.match(c["password"]), c["password"]
    assert c["friendly_name"] == ""
    assert ISO_RE.match(c["date_created"]), c["date_created"]
    assert c["url"] == f"{base_url}{PATH}/{c['sid']}"

    fetched = raw.get(c["url"])
    assert fetched.status_code == 200, fetched.text
    f = fetched.json()
    assert set(f) == FIELDS, f
    assert "password" not in fetched.text and c["password"] not in fetched.text
    assert "argon2" not in fetched.text
    listed = raw.get(PATH)
    assert listed.status_code == 200
    assert c["password"] not in listed.text and "argon2" not in listed.text
    mine = [x for x in listed.json()["credentials"] if x["sid"] == c["sid"]]
    assert mine == [f]

    other = created(raw)
    assert other["system_id"] != c["system_id"]
    assert other["password"] != c["password"]


def test_crud_with_given_values(raw, creds):
    sid_ = new_system_id()
    c = created(raw, SystemId=sid_, Password="p@s w~1", FriendlyName="warehouse ESME")
    assert c["system_id"] == sid_
    assert c["password"] == "p@s w~1"
    assert c["friendly_name"] == "warehouse ESME"
    assert c["account_sid"] == creds.account_sid

    f = raw.get(f"{PATH}/{c['sid']}").json()
    assert (f["sid"], f["system_id"], f["friendly_name"]) == (c["sid"], sid_, "warehouse ESME")
    assert c["sid"] in {x["sid"] for x in list_all(raw)}

    d = raw.delete(f"{PATH}/{c['sid']}")
    assert d.status_code == 204, d.text
    assert d.content == b""
    assert_error(raw.get(f"{PATH}/{c['sid']}"), 404, 20404, c["sid"])
    assert_error(raw.delete(f"{PATH}/{c['sid']}"), 404, 20404)
    assert c["sid"] not in {x["sid"] for x in list_all(raw)}
    # A revoked system_id can be issued again.
    again = created(raw, SystemId=sid_)
    assert again["sid"] != c["sid"]


def test_list_pages_in_creation_order(raw):
    made = [created(raw, FriendlyName=f"page-{i}")["sid"] for i in range(3)]
    first = raw.get(PATH, params={"PageSize": 1})
    assert first.status_code == 200
    j = first.json()
    assert len(j["credentials"]) == 1
    meta = j["meta"]
    assert meta["page"] == 0 and meta["page_size"] == 1 and meta["key"] == "credentials"
    assert meta["next_page_url"] and meta["first_page_url"] and meta["url"]
    assert meta["previous_page_url"] is None
    listed = [c["sid"] for c in list_all(raw, page_size=1)]
    assert len(listed) == len(set(listed)), "a credential appeared twice while paging"
    positions = [listed.index(s) for s in made]
    assert positions == sorted(positions), "credentials must list oldest first"
    assert_error(raw.get(PATH, params={"PageSize": 0}), 400, 20001, "PageSize")


def test_duplicate_system_id_is_409_across_accounts(raw, make_subaccount):
    sid_ = new_system_id()
    first = created(raw, SystemId=sid_)
    assert_error(create(raw, SystemId=sid_), 409, 20001, sid_, "already in use")
    sub = make_subaccount()
    assert_error(create(sub.raw, SystemId=sid_), 409, 20001, sid_)
    # Exact match only: another case is another system_id.
    upper = created(sub.raw, SystemId=sid_.upper())
    assert upper["system_id"] == sid_.upper()
    assert raw.get(f"{PATH}/{first['sid']}").status_code == 200


@pytest.mark.parametrize(
    "params, needles",
    [
        ({"SystemId": ""}, ["SystemId", "empty"]),
        ({"SystemId": "x" * 16}, ["SystemId", "16", "15"]),
        ({"SystemId": "has space"}, ["SystemId", "position 3"]),
        ({"SystemId": "caf\u00e9"}, ["SystemId", "printable ASCII"]),
        ({"SystemId": "nul\u0000x"}, ["SystemId"]),
        ({"Password": ""}, ["Password", "empty"]),
        ({"Password": "ninechars"}, ["Password", "9", "8"]),
        ({"Password": "new\nline"}, ["Password", "printable ASCII"]),
        ({"FriendlyName": "n" * 65}, ["FriendlyName", "64"]),
    ],
)
def test_bad_input_is_400_20001(raw, params, needles):
    before = len(list_all(raw, page_size=1000))
    assert_error(create(raw, **params), 400, 20001, *needles)
    assert len(list_all(raw, page_size=1000)) == before, "a refused create stored something"


def test_limits_are_accepted(raw):
    c = created(raw, SystemId=("L" + new_system_id() + "xyz")[:15], Password="~" * 8,
                FriendlyName="f" * 64)
    assert len(c["system_id"]) == 15 and c["password"] == "~" * 8


def test_tenant_isolation(raw, creds, make_subaccount):
    mine = created(raw, FriendlyName="parent's")
    sub = make_subaccount()
    theirs = created(sub.raw, FriendlyName="sub's")
    assert theirs["account_sid"] == sub.sid

    # Neither sees nor touches the other's: both ways look like a missing resource.
    assert theirs["sid"] not in {c["sid"] for c in list_all(raw)}
    assert mine["sid"] not in {c["sid"] for c in list_all(sub.raw)}
    assert_error(raw.get(f"{PATH}/{theirs['sid']}"), 404, 20404)
    assert_error(raw.delete(f"{PATH}/{theirs['sid']}"), 404, 20404)
    assert_error(sub.raw.get(f"{PATH}/{mine['sid']}"), 404, 20404)
    assert_error(sub.raw.delete(f"{PATH}/{mine['sid']}"), 404, 20404)
    assert sub.raw.get(f"{PATH}/{theirs['sid']}").status_code == 200
    assert raw.get(f"{PATH}/{mine['sid']}").status_code == 200

    sibling = make_subaccount()
    assert_error(sibling.raw.get(f"{PATH}/{theirs['sid']}"), 404, 20404)
    assert_error(sibling.raw.delete(f"{PATH}/{theirs['sid']}"), 404, 20404)
    assert list_all(sibling.raw) == []
    assert sub.raw.get(f"{PATH}/{theirs['sid']}").status_code == 200


def test_malformed_and_unknown_sids_are_404(raw):
    for s in ["nope", "SC" + "0" * 32, "MG" + "0" * 32, "SC" + "g" * 32, "sc" + "0" * 32]:
        assert_error(raw.get(f"{PATH}/{s}"), 404, 20404)
        assert_error(raw.delete(f"{PATH}/{s}"), 404, 20404)


def test_authentication_is_required_and_api_keys_cannot_manage_logins(raw, base_url, creds):
    assert_error(requests.get(base_url + PATH, timeout=HTTP_TIMEOUT), 401, 20003)
    bad = RawApi(base_url, creds.account_sid, "0" * 32)
    assert_error(bad.get(PATH), 401, 20003)
    assert_error(bad.post(PATH), 401, 20003)
    # Like Keys: an API key may send messages but not mint credentials.
    key = raw.post("Keys.json", data={"FriendlyName": "smpp-test"})
    assert key.status_code == 201, key.text
    k = key.json()
    with_key = RawApi(base_url, k["sid"], k["secret"], account_sid=creds.account_sid)
    assert_error(with_key.get(PATH), 401, 20003)
    assert_error(with_key.post(PATH, data={}), 401, 20003)


def test_credentials_json_holds_the_bootstrap_login(raw, creds):
    system_id = creds.raw.get("smpp_system_id")
    password = creds.raw.get("smpp_password")
    assert system_id and GENERATED_ID_RE.match(system_id), creds.raw
    assert password and GENERATED_PW_RE.match(password), "the password is kept in credentials.json"
    ours = [c for c in list_all(raw, page_size=1000) if c["system_id"] == system_id]
    assert len(ours) == 1, ours
    assert ours[0]["friendly_name"] == BOOTSTRAP_NAME
    assert ours[0]["account_sid"] == creds.account_sid


# --------------------------------------------------------------------------
# tern up restarts, tern admin
# --------------------------------------------------------------------------


def run_tern(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([str(tern_bin()), *args], capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    if ok:
        assert p.returncode == 0, f"tern {' '.join(args)} failed ({p.returncode}):\n{p.stderr}"
    return p


def store_args(server: TernServer) -> list[str]:
    """The CLI's view of a server's store: its config (PostgreSQL) or data dir (SQLite)."""
    out = ["--data-dir", str(server.data_dir)]
    if server.config_path:
        out += ["--config", str(server.config_path)]
    return out


@pytest.fixture
def own_server(tmp_path):
    srv = TernServer(tmp_path / "smpp", name="tern-smpp")
    yield srv
    if srv.proc is not None and srv.proc.poll() is None:
        srv.stop()


@pytest.mark.timeout(240)
def test_restart_keeps_the_login_and_a_lost_file_rotates_the_password(own_server):
    srv = own_server
    first = srv.start()
    login = (first.raw["smpp_system_id"], first.raw["smpp_password"])
    api = RawApi(srv.base_url, first.account_sid, first.auth_token)
    [boot] = [c for c in list_all(api) if c["friendly_name"] == BOOTSTRAP_NAME]
    assert srv.stop() == 0

    again = srv.start()
    assert again.account_sid == first.account_sid
    assert (again.raw["smpp_system_id"], again.raw["smpp_password"]) == login
    api = RawApi(srv.base_url, again.account_sid, again.auth_token)
    assert [c for c in list_all(api) if c["friendly_name"] == BOOTSTRAP_NAME] == [boot]
    assert srv.stop() == 0

    # The store keeps only a hash: without the file the password cannot be given back, so
    # the bootstrap login keeps its system_id and gets a new password.
    (srv.data_dir / "credentials.json").unlink()
    rotated = srv.start()
    assert rotated.account_sid == first.account_sid
    assert rotated.raw["smpp_system_id"] == login[0]
    assert rotated.raw["smpp_password"] != login[1]
    assert GENERATED_PW_RE.match(rotated.raw["smpp_password"])
    api = RawApi(srv.base_url, rotated.account_sid, rotated.auth_token)
    boots = [c for c in list_all(api) if c["friendly_name"] == BOOTSTRAP_NAME]
    assert len(boots) == 1 and boots[0]["system_id"] == login[0]
    assert boots[0]["sid"] != boot["sid"]


@pytest.mark.timeout(240)
def test_cli_create_list_revoke_against_a_running_node(own_server):
    srv = own_server
    c = srv.start()
    api = RawApi(srv.base_url, c.account_sid, c.auth_token)
    sid_ = new_system_id()

    out = run_tern("admin", "smpp-credential", "create", *store_args(srv),
                   "--system-id", sid_, "--friendly-name", "from the CLI")
    made = json.loads(out.stdout)
    assert made["system_id"] == sid_ and made["account_sid"] == c.account_sid
    assert GENERATED_PW_RE.match(made["password"]), made
    assert made["friendly_name"] == "from the CLI"
    assert SC_RE.match(made["sid"])
    # The node serves what the CLI wrote.
    f = api.get(f"{PATH}/{made['sid']}")
    assert f.status_code == 200, f.text
    assert f.json()["system_id"] == sid_

    listed = json.loads(run_tern("admin", "smpp-credential", "list", *store_args(srv)).stdout)
    assert [x["sid"] for x in listed if x["system_id"] == sid_] == [made["sid"]]
    assert all("password" not in x for x in listed)
    assert made["password"] not in json.dumps(listed)

    # A subaccount made over the API, addressed with --account.
    sub = api.post("/2010-04-01/Accounts.json", data={"FriendlyName": "cli-sub"}).json()
    sub_made = json.loads(run_tern("admin", "smpp-credential", "create", *store_args(srv),
                                   "--account", sub["sid"], "--password", "pw pw").stdout)
    assert sub_made["account_sid"] == sub["sid"] and sub_made["password"] == "pw pw"
    assert GENERATED_ID_RE.match(sub_made["system_id"])
    sub_list = json.loads(run_tern("admin", "smpp-credential", "list", *store_args(srv),
                                   "--account", sub["sid"]).stdout)
    assert [x["sid"] for x in sub_list] == [sub_made["sid"]]
    # Revoking needs the right account.
    p = run_tern("admin", "smpp-credential", "revoke", *store_args(srv), "--sid",
                 sub_made["sid"], ok=False)
    assert p.returncode != 0
    assert f"has no SMPP credential {sub_made['sid']}" in p.stderr, p.stderr

    gone = json.loads(run_tern("admin", "smpp-credential", "revoke", *store_args(srv),
                               "--sid", made["sid"]).stdout)
    assert gone["revoked"]["sid"] == made["sid"]
    assert api.get(f"{PATH}/{made['sid']}").status_code == 404

    # Precise errors, nothing written.
    for args, needle in [
        (["create", "--system-id", "x" * 16], "--system-id is invalid"),
        (["create", "--password", "123456789"], "--password is invalid"),
        (["create", "--system-id", c.raw["smpp_system_id"]], "is already in use by account"),
        (["create", "--account", "AC123"], "--account must be an account SID"),
        (["create", "--account", "AC" + "0" * 32], "there is no account"),
        (["revoke", "--sid", "SM" + "0" * 32], "--sid must be an SMPP credential SID"),
        (["revoke", "--sid", "SC" + "0" * 32], "has no SMPP credential"),
    ]:
        p = run_tern("admin", "smpp-credential", args[0], *store_args(srv), *args[1:], ok=False)
        assert p.returncode != 0, (args, p.stdout)
        assert needle in p.stderr, (args, p.stderr)
    assert len(list_all(api)) == len(listed) - 1


def bootstrap_config(tmp: Path) -> Path:
    backend = _backend_config()
    text = backend or f'[store]\nurl = "sqlite://{tmp / "boot.db"}"\n'
    path = tmp / "boot.toml"
    path.write_text(text)
    return path


def bootstrap(cfg: Path, creds_file: Optional[Path] = None) -> dict:
    args = ["admin", "bootstrap", "--config", str(cfg)]
    if creds_file is not None:
        args += ["--credentials", str(creds_file)]
    return json.loads(run_tern(*args).stdout)


@pytest.mark.timeout(240)
def test_admin_bootstrap_prints_the_same_login_given_its_file(tmp_path):
    cfg = bootstrap_config(tmp_path)
    file = tmp_path / "creds.json"
    first = bootstrap(cfg, file)
    assert GENERATED_ID_RE.match(first["smpp_system_id"])
    assert GENERATED_PW_RE.match(first["smpp_password"])
    assert json.loads(file.read_text()) == first
    assert file.stat().st_mode & 0o777 == 0o600

    assert bootstrap(cfg, file) == first, "with its file, a second bootstrap prints the same"
    # Without the file the account and system_id stay; the password is rotated.
    rotated = bootstrap(cfg)
    assert rotated["account_sid"] == first["account_sid"]
    assert rotated["auth_token"] == first["auth_token"]
    assert rotated["phone_numbers"] == first["phone_numbers"]
    assert rotated["smpp_system_id"] == first["smpp_system_id"]
    assert rotated["smpp_password"] != first["smpp_password"]
    # The old file no longer verifies: that bootstrap rotates again and rewrites the file.
    again = bootstrap(cfg, file)
    assert again["smpp_system_id"] == first["smpp_system_id"]
    assert again["smpp_password"] not in (first["smpp_password"], rotated["smpp_password"])
    assert json.loads(file.read_text()) == again
    assert bootstrap(cfg, file) == again

    listed = json.loads(run_tern("admin", "smpp-credential", "list", "--config", str(cfg)).stdout)
    assert [x["system_id"] for x in listed] == [first["smpp_system_id"]]
    assert listed[0]["friendly_name"] == BOOTSTRAP_NAME
