"""A writer killed with SIGKILL mid-write leaves a store that opens, passes the integrity
check and still has every row whose commit it reported."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from appliance.security.keys import ENV_PREFIX, OUTBOX_DB, EnvKeyProvider, generate_key
from appliance.stores.device import Outbox

MIN_COMMITS_BEFORE_KILL = 40
TIMEOUT_S = 60

WRITER = r"""
import os, sys
from appliance.security.keys import EnvKeyProvider
from appliance.stores.device import Outbox
outbox = Outbox.open(sys.argv[1], EnvKeyProvider())
i = 0
while True:
    event_id = outbox.enqueue("event", os.urandom(2048))   # one committed transaction each
    print(event_id, flush=True)                              # reported only after COMMIT returned
    i += 1
"""


def test_sigkill_mid_write_loses_no_committed_row(tmp_path):
    key = generate_key(OUTBOX_DB)
    env = {**os.environ, EnvKeyProvider.variable(OUTBOX_DB): key.material.hex()}
    assert EnvKeyProvider.variable(OUTBOX_DB).startswith(ENV_PREFIX)
    path = tmp_path / "outbox.db"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, env=env,
                              text=True)
    committed: list[int] = []
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while len(committed) < MIN_COMMITS_BEFORE_KILL and time.monotonic() < deadline:
            committed.append(int(writer.stdout.readline()))
        writer.send_signal(signal.SIGKILL)  # while it is in the middle of further writes
    finally:
        writer.kill()
        writer.wait()
    assert writer.returncode == -signal.SIGKILL and len(committed) >= MIN_COMMITS_BEFORE_KILL
    store = Outbox(path, key)
    assert store.integrity_problems() == []
    stored = {e.id for e in store.pending(limit=1_000_000)}
    assert set(committed) <= stored
    store.close()
