"""`tern bench messages` against a node of its own: the load generator works end to end."""

from __future__ import annotations

import re
import subprocess

from conftest import TernServer, tern_bin


def test_bench_messages_accepts_and_gets_every_callback(tmp_path):
    srv = TernServer(tmp_path / "bench", name="tern-bench")
    srv.start()
    try:
        run = subprocess.run(
            [str(tern_bin()), "bench", "messages",
             "--credentials", str(srv.data_dir / "credentials.json"),
             "--concurrency", "4", "--duration", "1", "--e2e-messages", "25"],
            capture_output=True, text=True, timeout=180,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        accept = re.search(r"^accept: (\d+) messages .*; (\d+) errors$", run.stdout, re.M)
        assert accept, run.stdout
        assert int(accept.group(1)) > 0 and accept.group(2) == "0", run.stdout
        assert "end to end: 25/25 delivered callbacks" in run.stdout, run.stdout
    finally:
        assert srv.stop() == 0, srv.log_tail()


def test_bench_messages_refuses_an_https_node(tmp_path):
    creds = tmp_path / "credentials.json"
    creds.write_text(
        '{"account_sid": "AC00000000000000000000000000000000", "auth_token": "x",'
        ' "api_base_url": "https://127.0.0.1:1", "phone_numbers": ["+15005550006"]}'
    )
    run = subprocess.run(
        [str(tern_bin()), "bench", "messages", "--credentials", str(creds), "--duration", "1"],
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode != 0
    assert "not http://" in run.stderr, run.stderr
