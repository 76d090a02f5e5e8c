"""The shipped units start, run and stop as systemd would run them.

Every unit in systemd/ is installed by scripts/install-systemd.sh (``--root``), and its own
``ExecStartPre``/``ExecStart`` command lines and ``Environment=`` are run as the service
manager runs them: with a ``NOTIFY_SOCKET`` of the test's own (and ``WATCHDOG_USEC`` for
units with ``WatchdogSec=``). The site is set up the way docs/operations.md tells an
integrator: ``appliance provision ...`` and the installed /etc/appliance/appliance.toml.

What the test changes in the command lines, and why: absolute paths move below a temporary
root (``/var/lib``, ``/etc/appliance``); the broker listens on a free loopback port instead of
8883 on every address; the service users (``appliance``, ``appliance-broker``) are this
test's own user, since this machine has no such accounts; ``WATCHDOG_USEC`` is 2 s
rather than the unit's 30 s so that pings are seen within the test; and ``LoadCredential=``
files are copied into a private folder that ``%d`` (``$CREDENTIALS_DIRECTORY``) names, as the
service manager does. The nightly maintenance's token is made as docs/operations.md says: a
security administrator bootstraps, logs in, adds a system administrator account and creates
its token with scope ``maintenance`` into /etc/appliance/maintenance.token.
"""
from __future__ import annotations

import getpass
import json
import os
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import tarfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import tomlkit

from appliance import paths
from appliance.errors import ErrorCode
from appliance.ops import totp
from unitfiles import service_section
from polling import wait_for

UNIT_NAMES = ("appliance-broker.service", "appliance-matcher.service", "appliance-edge.service",
              "appliance-maintenance.service")
TEST_WATCHDOG_USEC = 2_000_000
START_TIMEOUT_S = 120.0  # the units' TimeoutStartSec
STOP_TIMEOUT_S = 30.0
DEVICE = "door-1"
MATCHER = "matcher-1"
# a second replica on the same host, from the template the install script makes
REPLICA = "matcher-2"
REPLICA_TEMPLATE = "appliance-matcher@.service"
REPLAY_FPS = 4.0
SYSTEMD_EXEC_PREFIXES = "+-@!:"  # privilege and error-handling prefixes of Exec lines
CREDENTIALS_SPECIFIER = "%d"  # systemd's name for the unit's credentials folder
CREDENTIAL_MODE = 0o400
ADMIN_PASSWORD = "Correct-Horse-42-battery"
SECURITY_ADMIN, MAINTENANCE_ACCOUNT, AUDITOR = "sec-admin", "nightly-sys", "auditor-1"


# -- the units as installed ---------------------------------------------------------------
class Rendered:
    """One unit's command lines and environment, moved below ``root``."""

    def __init__(self, unit: Path, root: Path, port: int, instance: str = ""):
        """``instance``: a template's (``appliance-matcher@.service``), as systemd's ``%i``."""
        self.name = unit.name.replace("@.", f"@{instance}.") if instance else unit.name
        self.root, self.port, self.instance = root, port, instance
        self.section = service_section(unit)
        self.pre = [self._command(line) for line in self.section.get("ExecStartPre", [])]
        self.start = self._command(self.section["ExecStart"][0])
        self.environment: dict[str, str] = {}
        for line in self.section.get("Environment", []):
            for item in shlex.split(line):
                key, _, value = item.partition("=")
                self.environment[key] = self._text(value)
        self.watchdog = "WatchdogSec" in self.section
        self.credentials = {cred_id: self._text(source) for cred_id, _, source in
                            (line.partition(":") for line in self.section.get("LoadCredential", []))}

    def environment_with_credentials(self, folder: Path) -> dict[str, str]:
        """The unit's environment once its credentials are loaded into ``folder`` (0400 copies)."""
        folder.mkdir(mode=0o700, exist_ok=True)
        for cred_id, source in self.credentials.items():
            target = folder / cred_id
            shutil.copyfile(source, target)
            target.chmod(CREDENTIAL_MODE)
        env = {key: value.replace(CREDENTIALS_SPECIFIER, str(folder)) for key, value in self.environment.items()}
        return {**env, "CREDENTIALS_DIRECTORY": str(folder)} if self.credentials else env

    def _text(self, text: str) -> str:
        for place in ("/var/lib/", "/etc/appliance"):
            text = text.replace(place, f"{self.root}{place}")
        return text.replace("%i", self.instance) if self.instance else text

    def _command(self, line: str) -> list[str]:
        line = self._text(line.lstrip(SYSTEMD_EXEC_PREFIXES))
        line = line.replace("--port 8883", f"--port {self.port}").replace("--bind 0.0.0.0", "--bind 127.0.0.1")
        line = line.replace("--run-as appliance-broker", f"--run-as {getpass.getuser()}")
        return shlex.split(line)


class NotifySocket:
    """The service manager's end of sd_notify: collects every datagram a service sends."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                data = self.sock.recv(4096)
            except OSError:
                continue
            self.messages.extend(data.decode().splitlines())

    def seen(self, state: str) -> bool:
        return any(m == state for m in self.messages)

    def count(self, state: str) -> int:
        return sum(m == state for m in self.messages)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=2)
        self.sock.close()


class RunningUnit:
    def __init__(self, unit: Rendered, logs: Path):
        self.unit = unit
        self.notify = NotifySocket(logs / f"{unit.name}.notify")
        env = {**os.environ, **unit.environment, "NOTIFY_SOCKET": str(self.notify.path)}
        if unit.watchdog:
            env["WATCHDOG_USEC"] = str(TEST_WATCHDOG_USEC)
        self.env = env
        for command in unit.pre:
            result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, f"{unit.name} ExecStartPre {command}: {result.stderr}"
        self.log = logs / f"{unit.name}.log"
        self._log_handle = self.log.open("w")
        self.process = subprocess.Popen(unit.start, env=env, stdout=self._log_handle, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self) -> None:
        wait_until(lambda: self.notify.seen("READY=1") or self.process.poll() is not None, START_TIMEOUT_S,
                   f"{self.unit.name} READY=1")
        assert self.process.poll() is None, f"{self.unit.name} exited {self.process.returncode}:\n{self.output()}"

    def stop(self) -> int:
        """SIGTERM, as ``systemctl stop`` sends it; the exit status within TimeoutStopSec."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT_S)
        finally:
            self._log_handle.close()
            self.notify.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log_handle.close()
        self.notify.close()


def wait_until(predicate, timeout: float, what: str) -> None:
    assert wait_for(predicate, timeout), f"timed out after {timeout:.0f} s waiting for {what}"


# -- the site -----------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _camera_folder() -> Path:
    faces = paths.shared_dir() / "data" / "faces" / "celeba-dev"
    if not faces.is_dir():
        pytest.fail(f"{faces} missing: set APPLIANCE_SHARED_DATA")
    return sorted(p for p in faces.iterdir() if p.is_dir())[0]


def _install(root: Path, port: int) -> tuple[dict[str, Rendered], Callable[..., subprocess.CompletedProcess]]:
    """scripts/install-systemd.sh into ``root``; the units rendered and the host's own CLI
    (the units' ``appliance`` with the units' environment)."""
    subprocess.run(["bash", str(paths.REPO_ROOT / "scripts" / "install-systemd.sh"), "--root", str(root),
                    "--prefix", str(paths.REPO_ROOT)], check=True, capture_output=True, text=True)
    folder = root / "etc" / "systemd" / "system"
    units = {name: Rendered(folder / name, root, port) for name in UNIT_NAMES}
    for instance in (REPLICA, MATCHER):  # the second replica, and one under the first's name
        replica = Rendered(folder / REPLICA_TEMPLATE, root, port, instance)
        units[replica.name] = replica
    env = {**os.environ, **units["appliance-matcher.service"].environment}
    appliance = units["appliance-matcher.service"].start[0]

    def cli(*args: str) -> subprocess.CompletedProcess:
        result = subprocess.run([appliance, *args], env=env, capture_output=True, text=True, timeout=120)
        cli.env = env
        return result

    cli.env = env
    return units, cli


def _configure(cli, **sections: dict) -> None:
    """Edit the host's installed /etc/appliance/appliance.toml as an integrator would."""
    config_file = Path(cli.env["APPLIANCE_CONFIG"])
    document = tomlkit.parse(config_file.read_text())
    for section, values in sections.items():
        table = document.setdefault(section, tomlkit.table())
        for key, value in values.items():
            table[key] = value
    config_file.write_text(tomlkit.dumps(document))


def _ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"{result.args}: {result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Two hosts installed as docs/operations.md says: the matcher host (broker, matcher,
    maintenance) provisions the door, whose bundle is imported on the door host (edge)."""
    port = _free_port()
    logs = tmp_path_factory.mktemp("units")
    central_units, central = _install(tmp_path_factory.mktemp("matcher-host"), port)
    door_units, door = _install(tmp_path_factory.mktemp("door-host"), port)
    bundle = tmp_path_factory.mktemp("transfer") / f"{DEVICE}.bundle"
    for step in (("provision", "ca"), ("provision", "broker", "--host", "localhost", "--host", "127.0.0.1"),
                 ("provision", "matcher", MATCHER), ("provision", "matcher", REPLICA),
                 ("provision", "device", DEVICE, "--modes", "verify,identify", "--bundle", str(bundle))):
        _ok(central(*step))
    _configure(central, matcher={"name": MATCHER}, ops={"broker_port": port})

    def door_host() -> None:  # the other host, set up meanwhile: it shares nothing but the bundle
        assert DEVICE in _ok(door("provision", "import", str(bundle)))
        _configure(door, device={"name": DEVICE, "source": str(_camera_folder()), "fps": REPLAY_FPS, "loop": True},
                   ops={"broker_port": port})
        _ok(door("config", "check", "--service", "edge"))

    with ThreadPoolExecutor(1) as pool:
        door_ready = pool.submit(door_host)
        auditor_token = _maintenance_token(central, tmp_path_factory.mktemp("operator"))
        _ok(central("config", "check", "--service", "matcher"))
        door_ready.result()
    units = {**{k: v for k, v in central_units.items() if k != "appliance-edge.service"},
             "appliance-edge.service": door_units["appliance-edge.service"]}
    return {"logs": logs, "units": units, "cli": {"matcher": central, "edge": door}, "auditor_token": auditor_token}


def _maintenance_token(cli, home: Path) -> Path:
    """The post-install step of docs/operations.md: accounts, then the nightly run's token
    (and an auditor's token, for the test to read the audit log with)."""
    cli.env["XDG_RUNTIME_DIR"] = str(home)  # where 'appliance login' keeps this user's session
    password = home / "password"
    password.write_text(ADMIN_PASSWORD + "\n")
    password.chmod(0o600)
    admin = json.loads(_ok(cli("admin", "bootstrap", "--account", SECURITY_ADMIN, "--password-file", str(password),
                               "--json")))
    _ok(cli("login", "--account", SECURITY_ADMIN, "--password-file", str(password),
            "--totp", totp.totp(admin["totp_secret"])))
    _ok(cli("admin", "add", MAINTENANCE_ACCOUNT, "--role", "system_administrator", "--password-file", str(password),
            "--json"))
    token_file = Path(cli.env["APPLIANCE_CONFIG"]).parent / "maintenance.token"
    _ok(cli("admin", "token", "create", "--account", MAINTENANCE_ACCOUNT, "--scope", "maintenance",
            "--label", "nightly maintenance", "--out", str(token_file)))
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    _ok(cli("admin", "add", AUDITOR, "--role", "auditor", "--password-file", str(password), "--json"))
    _ok(cli("admin", "token", "create", "--account", AUDITOR, "--scope", "audit", "--out", str(home / "auditor.token")))
    # the site keeps the shipped central mode, so it records why (docs/operations.md, "Decide the matching mode")
    _ok(cli("site", "matching", "justify", "--reason", "one matcher serves every door of this test site",
            "--basis", "test site: no personal data"))
    # and says who may open which door (docs/access.md): one group, always open, for its one door
    _ok(cli("access", "group", "create", "staff"))
    _ok(cli("access", "grant", "staff", DEVICE))
    _ok(cli("logout"))
    return home / "auditor.token"


def _health(site, service: str, *name: str) -> tuple[int, dict]:
    result = site["cli"][service]("health", "--service", service, *(("--name", *name) if name else ()))
    return result.returncode, json.loads(result.stdout)


def _decisions_by(site, replica: str) -> int:
    """Decisions on record in the central audit log under ``replica``'s name (as the auditor reads it)."""
    exported = json.loads(_ok(site["cli"]["matcher"]("--token", site["auditor_token"].read_text().strip(),
                                                     "audit", "export")))
    return sum(e["actor"] == replica and e["action"].startswith("decision.") for e in exported)


def _status_record(site, service: str, name: str) -> dict:
    data_dir = Path(site["cli"][service].env["APPLIANCE_DATA_DIR"])
    return json.loads((data_dir / "run" / f"{service}-{name}.json").read_text())


# -- the test -----------------------------------------------------------------------------
def test_units_start_ping_report_health_and_stop(site):
    """Broker, matcher, a second replica (the installed template) and edge (folder source)
    together, started only from units and config."""
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        pytest.fail("mosquitto missing: scripts/bootstrap.sh installs it")
    units, logs = site["units"], site["logs"]
    running: list[RunningUnit] = []
    try:
        broker = RunningUnit(units["appliance-broker.service"], logs)
        running.append(broker)
        broker.wait_ready()

        matcher = RunningUnit(units["appliance-matcher.service"], logs)
        running.append(matcher)
        matcher.wait_ready()
        wait_until(lambda: matcher.notify.count("WATCHDOG=1") >= 2, 10, "matcher watchdog pings")
        assert _status_record(site, "matcher", MATCHER)["state"] == "running"

        # a second replica on this host, from the template (one per core: docs/deployment.md)
        replica = RunningUnit(units[f"appliance-matcher@{REPLICA}.service"], logs)
        running.append(replica)
        replica.wait_ready()
        wait_until(lambda: replica.notify.count("WATCHDOG=1") >= 1, 10, "the second replica's watchdog ping")
        assert _status_record(site, "matcher", REPLICA)["state"] == "running"
        # one under a name that already runs is refused at once, naming the process that has it
        twin = RunningUnit(units[f"appliance-matcher@{MATCHER}.service"], logs)
        running.append(twin)
        assert twin.process.wait(timeout=START_TIMEOUT_S) == ErrorCode.SERVICE_RUNNING.exit_status, twin.output()
        assert f"matcher replica {MATCHER} (pid {matcher.process.pid}); start another" in twin.output()
        assert not twin.notify.seen("READY=1")

        edge = RunningUnit(units["appliance-edge.service"], logs)
        running.append(edge)
        edge.wait_ready()
        wait_until(lambda: edge.notify.count("WATCHDOG=1") >= 2, 20, "edge watchdog pings")
        record = _status_record(site, "edge", DEVICE)
        assert record["state"] == "running" and record["model_loaded"], record

        for service in ("matcher", "edge"):
            if not wait_for(lambda service=service: _health(site, service)[0] == 0, 20):
                pytest.fail(f"{service} health not green: {_health(site, service)}")
        assert {c["name"]: c["status"] for c in _health(site, "matcher")[1]["checks"]}["flood"] == "ok"
        assert _health(site, "matcher", REPLICA)[0] == 0, _health(site, "matcher", REPLICA)

        # the first replica stops: its health turns red with the reason; the second decides the door's passes
        assert matcher.stop() == 0, matcher.output()
        assert matcher.notify.seen("STOPPING=1")
        code, report = _health(site, "matcher")
        assert code == 2 and any("stopped" in c["detail"] for c in report["checks"] if c["status"] == "fail"), report
        before = _decisions_by(site, REPLICA)
        if not wait_for(lambda: _decisions_by(site, REPLICA) > before and _health(site, "edge")[0] == 0, 60):
            pytest.fail(f"no decision by {REPLICA} after {MATCHER} stopped: {_health(site, 'edge')}")

        # the last replica stops: the edge says so
        assert replica.stop() == 0, replica.output()
        # the door notices at its next unanswered request (the replay keeps people coming)
        if not wait_for(lambda: _health(site, "edge")[0] == 2, 30):
            pytest.fail(f"edge health still {_health(site, 'edge')} with the matcher stopped:\n{edge.output()}")
        failed = {c["name"]: c["detail"] for c in _health(site, "edge")[1]["checks"] if c["status"] == "fail"}
        assert "does not answer" in failed.get("matcher", ""), failed

        assert edge.stop() == 0, edge.output()
        assert edge.notify.seen("STOPPING=1")
        assert _status_record(site, "edge", DEVICE)["state"] == "stopped"
        assert broker.stop() == 0, broker.output()
    finally:
        for unit in running:
            unit.kill()


def test_maintenance_unit_runs_once_and_backs_up(site, tmp_path):
    unit = site["units"]["appliance-maintenance.service"]
    assert unit.credentials, "the unit loads its token as a credential"
    env = {**os.environ, **unit.environment_with_credentials(tmp_path / "credentials")}
    result = subprocess.run(unit.start, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["backups_kept"] >= 1
    assert any((Path(unit.environment["APPLIANCE_DATA_DIR"]) / "backups").iterdir())
    # the nightly run acted as its account (not as the OS user), and only with its token
    no_token = {k: v for k, v in env.items() if k not in ("APPLIANCE_TOKEN_FILE", "APPLIANCE_TOKEN")}
    refused = subprocess.run(unit.start, capture_output=True, text=True, env=no_token, timeout=300)
    assert refused.returncode == ErrorCode.AUTH_REQUIRED.exit_status, refused.stderr
    cli = site["cli"]["matcher"]
    exported = json.loads(_ok(cli("--token", site["auditor_token"].read_text().strip(), "audit", "export")))
    backups = [e for e in exported if e["action"].startswith("backup")]
    assert backups and {e["actor"] for e in backups} == {MAINTENANCE_ACCOUNT}, backups



def test_bundle_holds_only_what_the_door_needs(site, tmp_path):
    central = site["cli"]["matcher"]
    bundle = tmp_path / "door.bundle"
    _ok(central("provision", "export", DEVICE, "--bundle", str(bundle)))
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o600
    with tarfile.open(bundle) as archive:
        names = set(archive.getnames())
    assert {"pki/ca.crt", f"pki/clients/{DEVICE}.crt", f"pki/clients/{DEVICE}.key", "directory.json"} <= names
    assert not any(n.endswith("ca.key") or n.startswith("keys/") or n.endswith(".db") for n in names), names
    refused = central("provision", "export", DEVICE, "--bundle", str(bundle))  # never overwritten
    assert refused.returncode != 0
    unknown = central("provision", "export", "door-unknown", "--bundle", str(tmp_path / "x.bundle"))
    assert unknown.returncode == 3 and "not provisioned" in unknown.stderr
