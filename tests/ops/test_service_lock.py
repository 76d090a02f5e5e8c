"""One process per service identity: the lock beside the status record, held by real
processes (the kernel's ``flock``), refused with the holder's pid, released when its holder
dies however it dies, and never in the way of a service whose folder cannot take the file."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys

import pytest

from appliance.errors import ApplianceError, ErrorCode
from appliance.ops import service_lock
from polling import wait_for

HOLDER = """
import sys, time
from pathlib import Path
from appliance.ops import service_lock
service_lock.hold(Path(sys.argv[1]), "matcher replica matcher-1")
print("held", flush=True)
time.sleep(600)
"""


def test_a_second_holder_is_refused_until_the_first_lets_go(tmp_path):
    status = tmp_path / "run" / "matcher-matcher-1.json"
    with service_lock.hold(status, "matcher replica matcher-1") as held:
        assert held.path == tmp_path / "run" / "matcher-matcher-1.lock"
        with pytest.raises(ApplianceError) as refused:
            service_lock.hold(status, "matcher replica matcher-1")
        assert refused.value.code is ErrorCode.SERVICE_RUNNING
        assert str(refused.value) == ("E531 service already running on this host under that name: matcher replica "
                                      f"matcher-1 (pid {os.getpid()}); start another under a name of its own")
        other = service_lock.hold(tmp_path / "run" / "matcher-matcher-2.json", "matcher replica matcher-2")
        other.release()  # another name is another identity
    service_lock.hold(status, "matcher replica matcher-1").release()


def test_a_killed_holder_leaves_the_name_free(tmp_path):
    status = tmp_path / "run" / "edge-door-1.json"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(status)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ApplianceError, match=f"pid {holder.pid}"):
            service_lock.hold(status, "edge daemon of door-1")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert wait_for(lambda: _free(status), 5)  # no stale file keeps the door from starting again


def test_a_folder_that_cannot_take_the_file_does_not_stop_the_service(tmp_path, caplog):
    (tmp_path / "run").write_text("a file where the folder should be\n")
    with caplog.at_level(logging.WARNING, logger="appliance.ops.service_lock"):
        lock = service_lock.hold(tmp_path / "run" / "edge-door-1.json", "edge daemon of door-1")
    lock.release()
    assert "would not be stopped" in caplog.text


def _free(status) -> bool:
    try:
        service_lock.hold(status, "edge daemon of door-1").release()
    except ApplianceError:
        return False
    return True
