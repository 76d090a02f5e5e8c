"""The Debian package that scripts/build-deb.sh makes: inspected, then installed, run, removed
and purged on this machine with dpkg.

The package is built once per module into tmp. Its control fields, conffile, units, wrapper,
copyright and maintainer scripts are checked from the archive (``dpkg-deb``). The install
and removal change the host (users, /opt/appliance, /etc/appliance, /var/lib/appliance), so
that part runs only as root with ``CI=true`` or ``APPLIANCE_TEST_SYSTEM_INSTALL=1``, refuses
to touch a host that already has the package or an /opt/appliance, and always purges.
"""
from __future__ import annotations

import grp
import io
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

import appliance
from appliance import paths

PACKAGE = "face-appliance"
BUILD_TIMEOUT_S = 900
DPKG_TIMEOUT_S = 600
COMMAND_TIMEOUT_S = 300
UNITS = ("appliance-edge.service", "appliance-matcher.service", "appliance-broker.service",
         "appliance-maintenance.service", "appliance-maintenance.timer", "appliance-console.service",
         "appliance-kiosk.service")
SERVICE_USERS = ("appliance", "appliance-broker", "appliance-kiosk")
KIOSK_UNIT = "appliance-kiosk.service"
KIOSK_LINK = Path("/etc/systemd/system/graphical.target.wants") / KIOSK_UNIT  # its [Install] WantedBy
# further matcher replicas on one host: the template is made from the matcher's unit (scripts/install-systemd.sh)
REPLICA_TEMPLATE = "appliance-matcher@.service"
REPLICA_UNIT = "appliance-matcher@matcher-2.service"
REPLICA_LINK = Path("/etc/systemd/system/multi-user.target.wants") / REPLICA_UNIT
VENV = "/opt/appliance/venv"
MODEL_SUFFIXES = (".onnx", ".task", ".tflite", ".dat", ".pth", ".pt", ".caffemodel", ".pb")
KEY_SUFFIXES = (".pem", ".key", ".crt", ".p12", ".pfx", ".bundle", ".pub", ".sig")
MAINTAINER_SCRIPTS = ("preinst", "postinst", "prerm", "postrm")
DEPENDS = ("python3-venv", "libgl1", "libglib2.0-0", "adduser")
# recommended only: the broker host runs mosquitto, a door with a kiosk screen chromium and a CJK font
RECOMMENDS = ("mosquitto", "chromium", "fonts-noto-cjk")


def _run(command: list[str], timeout: float = COMMAND_TIMEOUT_S, env: dict[str, str] | None = None):
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=timeout, cwd="/",
                          env=env if env is not None else dict(os.environ))


def _debian_python() -> str:
    version = _run(["/usr/bin/python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
    assert version.returncode == 0, version.stderr
    return version.stdout.strip()


@pytest.fixture(scope="module")
def deb(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("deb")
    started = time.monotonic()
    built = _run(["bash", str(paths.REPO_ROOT / "scripts" / "build-deb.sh"), "--out", str(out)], BUILD_TIMEOUT_S)
    assert built.returncode == 0, built.stdout + built.stderr
    path = Path(built.stdout.strip().splitlines()[-1])
    assert path.is_file() and path.parent == out and path.suffix == ".deb", built.stdout
    print(f"\nbuild-deb.sh: {time.monotonic() - started:.1f} s, {path.stat().st_size / 1e6:.0f} MB")
    return path


@pytest.fixture(scope="module")
def tree(deb, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


def _field(deb: Path, name: str) -> str:
    result = _run(["dpkg-deb", "--field", str(deb), name])
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _contents(deb: Path) -> list[str]:
    """The archive's paths, without the leading '.'."""
    listed = _run(["dpkg-deb", "--contents", str(deb)])
    assert listed.returncode == 0, listed.stderr
    return [line.split(None, 5)[5].split(" -> ")[0][1:] for line in listed.stdout.splitlines()]


def _control_members(deb: Path) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    control = subprocess.run(["dpkg-deb", "--ctrl-tarfile", str(deb)], capture_output=True, check=True)
    members = {}
    with tarfile.open(fileobj=io.BytesIO(control.stdout)) as archive:
        for member in archive.getmembers():
            if member.isfile():
                members[Path(member.name).name] = (member, archive.extractfile(member).read())
    return members


# -- the archive --------------------------------------------------------------------------
def test_control_fields(deb):
    assert _field(deb, "Package") == PACKAGE
    # a PEP 440 pre-release gets Debian's tilde (scripts/build-deb.sh)
    assert _field(deb, "Version") == re.sub(r"\.?(dev|a|b|rc)(\d+)", r"~\1\2", appliance.__version__)
    architecture = _run(["dpkg", "--print-architecture"]).stdout.strip()
    assert _field(deb, "Architecture") == architecture
    depends = [d.strip() for d in _field(deb, "Depends").split(",")]
    major, minor = _debian_python().split(".")
    assert f"python3 (>= {major}.{minor})" in depends and f"python3 (<< {major}.{int(minor) + 1})" in depends
    assert set(DEPENDS) <= set(depends), depends
    recommends = [r.strip() for r in _field(deb, "Recommends").split(",")]
    assert set(RECOMMENDS) <= set(recommends), recommends
    assert not {"chromium", "fonts-noto-cjk"} & set(depends), "a headless matcher host needs no browser or font"
    description = _field(deb, "Description")
    assert "/opt/appliance/venv" in description and architecture in description and "non-commercial" in description
    info = _run(["dpkg-deb", "--info", str(deb)])
    assert info.returncode == 0 and "conffiles" in info.stdout


def test_dependencies_are_debian_packages(deb):
    """Each is installed here (dpkg knows it) or known to apt: a machine whose package lists
    were never fetched still answers through dpkg for what bootstrap installed."""
    def known_to_apt(package: str) -> bool:  # asked only when dpkg does not know it: apt-cache is slow
        shown = _run(["apt-cache", "show", "--no-all-versions", package])
        return shown.returncode == 0 and f"Package: {package}" in shown.stdout

    for package in (*DEPENDS, "python3", *RECOMMENDS):
        installed = _run(["dpkg-query", "-W", "-f=${Package}", package])
        assert (installed.returncode == 0 and installed.stdout == package) or known_to_apt(package), package


def test_conffile_units_wrapper_and_copyright(deb, tree):
    members = _control_members(deb)
    assert members["conffiles"][1].decode().split() == ["/etc/appliance/appliance.toml"]
    contents = _contents(deb)
    for unit in (*UNITS, REPLICA_TEMPLATE):
        assert f"/lib/systemd/system/{unit}" in contents
    for path in ("/etc/appliance/appliance.toml", "/usr/bin/appliance", "/usr/share/doc/face-appliance/copyright",
                 "/opt/appliance/docs/operations.md"):
        assert path in contents, path
    # the shipped default configuration, byte for byte the one in the packaged wheel
    wheel = next((tree / "opt/appliance/wheels").glob("face_appliance-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        shipped = archive.read("appliance/defaults/config/appliance.toml")
    assert (tree / "etc/appliance/appliance.toml").read_bytes() == shipped
    # the units of systemd/ with the packaged venv, nothing else changed
    for unit in UNITS:
        text = (tree / "lib/systemd/system" / unit).read_text()
        source = (paths.REPO_ROOT / "systemd" / unit).read_text()
        assert text == source.replace("/opt/appliance/.venv", VENV), unit
        for line in text.splitlines():
            if line.startswith(("ExecStart=", "ExecStartPre=")):
                command = line.partition("=")[2].lstrip("+-@!:").split()[0]
                assert command in (f"{VENV}/bin/appliance", f"{VENV}/bin/python", "/usr/sbin/mosquitto"), line
    assert f"ExecStart={VENV}/bin/appliance edge " in (tree / "lib/systemd/system/appliance-edge.service").read_text()
    matcher = (tree / "lib/systemd/system/appliance-matcher.service").read_text()
    assert (tree / "lib/systemd/system" / REPLICA_TEMPLATE).read_text() == matcher.replace(
        "Description=Face appliance matcher\n", "Description=Face appliance matcher replica %i\n").replace(
        "--config /etc/appliance/appliance.toml\n", "--config /etc/appliance/appliance.toml --name %i\n")
    wrapper = tree / "usr/bin/appliance"
    assert wrapper.stat().st_mode & 0o777 == 0o755
    text = wrapper.read_text()
    assert 'APPLIANCE_CONFIG="${APPLIANCE_CONFIG:-/etc/appliance/appliance.toml}"' in text
    assert 'APPLIANCE_DATA_DIR="${APPLIANCE_DATA_DIR:-/var/lib/appliance}"' in text
    assert f'exec "{VENV}/bin/appliance" "$@"' in text
    copyright_text = (tree / "usr/share/doc/face-appliance/copyright").read_text()
    assert "License: Apache-2.0" in copyright_text and "NOT in this package" in copyright_text
    assert "NON-COMMERCIAL" in copyright_text and "w600k-mbf" in copyright_text


def test_wheelhouse_is_pinned_and_holds_no_models_or_keys(deb, tree):
    contents = _contents(deb)
    for path in contents:
        name = path.lower()
        assert not name.endswith(MODEL_SUFFIXES), f"model file in the package: {path}"
        assert not name.endswith(KEY_SUFFIXES) and "private" not in name, f"key in the package: {path}"
    wheels = {p.name.split("-")[0].lower(): p for p in (tree / "opt/appliance/wheels").glob("*.whl")}
    pins = {}
    for line in (paths.REPO_ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.strip().lower().replace("-", "_").replace(".", "_")] = version.strip()
    for needed in ("face_appliance", "numpy", "opencv_contrib_python", "mediapipe", "onnxruntime", "sqlcipher3",
                   "cryptography", "paho_mqtt", "tomlkit", "tqdm"):
        assert needed in wheels, f"{needed} missing from the wheelhouse: {sorted(wheels)}"
    for name, wheel in wheels.items():
        if name in pins:
            assert wheel.name.split("-")[1] == pins[name], f"{wheel.name}: constraints.txt pins {pins[name]}"
    # the project wheel: code, defaults and manifests only
    with zipfile.ZipFile(wheels["face_appliance"]) as archive:
        for name in archive.namelist():
            assert not name.lower().endswith(MODEL_SUFFIXES + KEY_SUFFIXES), name
        assert "appliance/defaults/models/w600k-mbf/manifest.toml" in archive.namelist()


def test_maintainer_scripts_stop_create_and_remove_what_the_package_ships(deb):
    """prerm stops (and on removal disables) every unit in the archive; postinst creates the
    user of every unit and postrm purges it; the system install below runs them for real."""
    members = _control_members(deb)
    prerm = members["prerm"][1].decode()
    stopped = re.search(r'^UNITS="([^"]+)"$', prerm, re.MULTILINE).group(1).split()
    shipped = [Path(p).name for p in _contents(deb) if p.startswith("/lib/systemd/system/appliance-")]
    assert sorted(stopped) == sorted(UNITS) and sorted(shipped) == sorted((*UNITS, REPLICA_TEMPLATE))
    assert re.search(r'^REPLICAS="([^"]+)"$', prerm, re.MULTILINE).group(1) == "appliance-matcher@*.service"
    postinst, postrm = members["postinst"][1].decode(), members["postrm"][1].decode()
    users = " ".join(SERVICE_USERS)
    assert f"for user in {users}; do" in postinst and f"for user in {users}; do" in postrm
    assert "/var/lib/appliance-kiosk" in postrm


def test_maintainer_scripts_parse(deb):
    members = _control_members(deb)
    for script in MAINTAINER_SCRIPTS:
        member, body = members[script]
        assert member.mode & stat.S_IXUSR, script
        text = body.decode()
        assert text.startswith("#!/bin/sh\n") and "\nset -e\n" in text, script
        for shell in ("bash", "sh"):
            parsed = subprocess.run([shell, "-n"], check=False, input=text, capture_output=True, text=True)
            assert parsed.returncode == 0, f"{script} ({shell}): {parsed.stderr}"


# -- the real thing: dpkg on this machine -------------------------------------------------
def _dpkg_knows(package: str) -> bool:
    status = _run(["dpkg-query", "-W", "-f=${Status}", package])
    return status.returncode == 0 and status.stdout.strip() not in ("", "unknown ok not-installed")


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _dpkg(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = _run(["dpkg", *args], DPKG_TIMEOUT_S, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    return result, time.monotonic() - started


SYSTEM_INSTALL = os.geteuid() == 0 and (os.environ.get("CI") == "true"
                                        or os.environ.get("APPLIANCE_TEST_SYSTEM_INSTALL") == "1")


@pytest.mark.skipif(not SYSTEM_INSTALL, reason="installs the package on this machine (users, /opt, /etc, /var): "
                                               "runs only as root with CI=true or APPLIANCE_TEST_SYSTEM_INSTALL=1")
def test_install_run_remove_and_purge(deb):
    if _dpkg_knows(PACKAGE):
        pytest.fail(f"{PACKAGE} is already installed here: not touching a real install")
    if Path("/opt/appliance").exists():
        pytest.fail("/opt/appliance exists: not touching a real install")
    made_by_postinst = [group for group in ("gpio", "render", "input") if not _group_exists(group)]
    # the host's own command, as an administrator types it: from /, no APPLIANCE_* of this run
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLIANCE", "PYTHON", "VIRTUAL_ENV"))}
    timings = {}
    try:
        # a venv someone made by hand in /opt/appliance ("From a wheel") is not replaced
        foreign = Path("/opt/appliance/venv")
        foreign.mkdir(parents=True)
        refused, _ = _dpkg("-i", str(deb))
        assert refused.returncode != 0 and "/opt/appliance/venv exists" in refused.stderr, refused.stderr
        assert foreign.is_dir() and not Path("/usr/bin/appliance").exists()
        shutil.rmtree("/opt/appliance")
        if _dpkg_knows(PACKAGE):
            _dpkg("-P", PACKAGE)

        installed, timings["install"] = _dpkg("-i", str(deb))
        assert installed.returncode == 0, installed.stdout + installed.stderr
        assert "no service enabled" in installed.stdout and "operations.md" in installed.stdout
        checked = _run(["/usr/bin/appliance", "config", "check"], env=env)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert checked.stdout.startswith("/etc/appliance/appliance.toml: ok"), checked.stdout
        listed = _run(["/usr/bin/appliance", "models", "list"], env=env)
        assert listed.returncode == 0, listed.stderr
        for pack in ("w600k-mbf", "dlib-resnet-v1", "mediapipe-face-landmarker", "minifasnet-silentface"):
            assert pack in listed.stdout, listed.stdout
        # the service user's view: what 'sudo -u appliance appliance ...' runs
        as_service = _run(["runuser", "-u", "appliance", "--", "/usr/bin/appliance", "config", "check"], env=env)
        assert as_service.returncode == 0, as_service.stderr
        for user in SERVICE_USERS:
            entry = pwd.getpwnam(user)
            assert entry.pw_uid < 1000 and entry.pw_shell == "/usr/sbin/nologin", entry
        kiosk = pwd.getpwnam("appliance-kiosk")  # the browser never reads the edge's data
        assert kiosk.pw_name not in grp.getgrnam("appliance").gr_mem
        assert kiosk.pw_gid != pwd.getpwnam("appliance").pw_gid
        for group in ("gpio", "video", "render", "input"):  # the units' SupplementaryGroups
            assert _group_exists(group), group
        data = os.stat("/var/lib/appliance")
        assert stat.S_IMODE(data.st_mode) == 0o700 and pwd.getpwuid(data.st_uid).pw_name == "appliance"
        assert Path(VENV, "bin", "python").resolve().parent == Path("/usr/bin")  # Debian's python3
        if shutil.which("systemd-analyze"):
            units = [f"/lib/systemd/system/{unit}" for unit in (*UNITS, REPLICA_TEMPLATE)]
            verified = _run(["systemd-analyze", "verify", *units])
            assert verified.returncode == 0, verified.stderr

        # an upgrade (here: the same version again) makes the venv afresh
        stale = Path(VENV, "stale-marker")
        stale.write_text("from the previous install\n")
        upgraded, timings["upgrade"] = _dpkg("-i", str(deb))
        assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
        assert not stale.exists()
        assert _run(["/usr/bin/appliance", "config", "check"], env=env).returncode == 0

        # an enabled kiosk: prerm disables it on removal (systemctl edits the links, systemd running or not)
        if shutil.which("systemctl"):
            enabled = _run(["systemctl", "enable", KIOSK_UNIT])
            assert enabled.returncode == 0 and KIOSK_LINK.is_symlink(), enabled.stderr
            enabled = _run(["systemctl", "enable", REPLICA_UNIT])  # a second replica on this host
            assert enabled.returncode == 0 and REPLICA_LINK.is_symlink(), enabled.stderr
        # remove: the venv goes, the (edited) configuration, the data and the users stay
        config = Path("/etc/appliance/appliance.toml")
        config.write_text(config.read_text() + "# edited by the integrator\n")
        Path("/var/lib/appliance/biometric.db").write_bytes(b"stand-in for an encrypted store")
        removed, timings["remove"] = _dpkg("-r", PACKAGE)
        assert removed.returncode == 0, removed.stdout + removed.stderr
        assert not Path("/opt/appliance").exists() and not Path("/usr/bin/appliance").exists()
        assert not any(Path("/lib/systemd/system", unit).exists() for unit in (*UNITS, REPLICA_TEMPLATE))
        assert config.read_text().endswith("# edited by the integrator\n")
        assert Path("/var/lib/appliance/biometric.db").exists()
        assert all(_user_exists(user) for user in SERVICE_USERS)
        assert not KIOSK_LINK.exists() and not KIOSK_LINK.is_symlink()
        assert not REPLICA_LINK.exists() and not REPLICA_LINK.is_symlink()
        Path("/var/lib/appliance-kiosk").mkdir(mode=0o700)  # the kiosk's browser profile (StateDirectory)

        # purge: configuration, data (biometric stores and keys) and the users go
        purged, timings["purge"] = _dpkg("-P", PACKAGE)
        assert purged.returncode == 0, purged.stdout + purged.stderr
        for gone in ("/etc/appliance", "/var/lib/appliance", "/var/lib/appliance-kiosk", "/var/cache/appliance",
                     "/opt/appliance"):
            assert not Path(gone).exists(), gone
        for user in SERVICE_USERS:
            assert not _user_exists(user) and not _group_exists(user), user
        assert not _dpkg_knows(PACKAGE)
    finally:
        if _dpkg_knows(PACKAGE):
            _dpkg("-P", PACKAGE)
        for group in made_by_postinst:  # postrm leaves them (the OS uses them): this test removes its own
            if _group_exists(group):
                subprocess.run(["groupdel", group], check=False)
        print("\ndpkg: " + ", ".join(f"{step} {seconds:.1f} s" for step, seconds in timings.items()),
              file=sys.stderr)
