"""Fixtures for the SDK's tests, all against real VMs: a fresh home per test (every VM of it
killed at the end, also when the test fails), the busybox image of
scripts/build-demo-image.sh, the box types' images of scripts/build-images.sh, and a real
registry (Debian's docker-registry) on 127.0.0.1."""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
# Unix socket paths must fit in 107 bytes: homes live under a short directory.
SCRATCH = pathlib.Path(os.environ.get("BOXLITE_TEST_SCRATCH", "/tmp/boxlite-py"))
READY_TIMEOUT = 120.0


def _script_output(*command: str) -> str:
    done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def busybox() -> str:
    """The busybox test image, as an ``oci:PATH:TAG`` reference."""
    return f"oci:{_script_output(str(REPO / 'scripts/build-demo-image.sh'))}:busybox"


def built_image(name: str) -> str:
    """An image of scripts/build-images.sh (python, browser, desktop)."""
    return f"oci:{_script_output(str(REPO / 'scripts/build-images.sh'), name)}:{name}"


def _start_time(pid: int) -> int | None:
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def box_processes(home: pathlib.Path) -> list[int]:
    """The live shims and VMMs recorded in a home (pid files hold "PID START_TIME"): of its
    boxes, and of its standbys (``standby/<kind>/<name>/``)."""
    pids = []
    pid_files = [
        f for d in ("boxes/*", "standby/*/*") for f in home.glob(f"{d}/*.pid")
    ]
    for pid_file in pid_files:
        try:
            text = pid_file.read_text()
        except FileNotFoundError:  # a standby retiring meanwhile
            continue
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 2 and _start_time(int(parts[0])) == int(parts[1]):
                pids.append(int(parts[0]))
    return pids


def wait_until(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def home():
    """A new home; every shim and VMM recorded in it is killed when the test ends."""
    SCRATCH.mkdir(parents=True, exist_ok=True)
    path = pathlib.Path(tempfile.mkdtemp(prefix="h", dir=SCRATCH))
    try:
        yield str(path)
    finally:
        for pid in box_processes(path):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_until(lambda: not box_processes(path), "the home's VMs to be gone", 30)
        shutil.rmtree(path, ignore_errors=True)


class Registry:
    def __init__(self, storage: pathlib.Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = storage / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {storage / 'data'}\nhttp:\n  addr: 127.0.0.1:{self.port}\n"
        )
        self.process = subprocess.Popen(
            ["docker-registry", "serve", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        wait_until(listening, "docker-registry to listen", 20)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def push(self, image: str, target: str) -> None:
        subprocess.run(
            ["skopeo", "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false",
             image, f"docker://{self.host}/{target}"],
            check=True,
        )

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


@pytest.fixture
def registry(tmp_path: pathlib.Path):
    registry = Registry(tmp_path)
    try:
        yield registry
    finally:
        registry.stop()
