"""Fault injection for the reliability tests: a real MLflow server behind a proxy we can cut."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path


class CuttableProxy:
    """A TCP proxy in front of 127.0.0.1:`target_port` that can make the target vanish.

    After `cut()` every open connection is reset and new ones are refused, as when a
    tracking server dies or its network goes. With `cut_on`, the proxy cuts itself when a
    client sends those bytes (a REST path or a JSON key), before forwarding them: the fault
    lands at a chosen point of a job without any hook in the job's code.
    """

    def __init__(self, target_port: int, cut_on: bytes | None = None) -> None:
        self.target_port = target_port
        self.cut_on = cut_on
        self.is_cut = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self.is_cut.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
                upstream.settimeout(None)  # the timeout was for connecting; replies may be slow
            except OSError:
                client.close()
                continue
            with self._lock:
                if self.is_cut.is_set():
                    client.close()
                    upstream.close()
                    return
                self._open.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        tail = b""  # the pattern may straddle two reads
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if from_client and self.cut_on is not None:
                    if self.cut_on in tail + data:
                        self.cut()
                        break
                    tail = (tail + data)[-(len(self.cut_on) - 1) :] if len(self.cut_on) > 1 else b""
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def cut(self) -> None:
        """Refuse new connections and reset the open ones."""
        with self._lock:
            self.is_cut.set()
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread in accept()
            with contextlib.suppress(OSError):
                self._listener.close()
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def mlflow_server(
    root: Path, timeout_s: float = 90, serve_artifacts: bool = False
) -> Iterator[str]:
    """A real `mlflow server` (SQLite backend) on 127.0.0.1; yields its URI.

    Artifacts go to `root/artifacts`: clients write there directly (a file: artifact root),
    or, with `serve_artifacts`, only through the server, which hands out mlflow-artifacts: URIs
    as a cluster's tracking server does.
    """
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    log_path = root / "server.log"
    if serve_artifacts:
        artifacts = ["--serve-artifacts", "--artifacts-destination", str(root / "artifacts")]
    else:
        artifacts = ["--default-artifact-root", (root / "artifacts").as_uri()]
    cmd = [
        str(Path(sys.executable).parent / "mlflow"), "server",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", *artifacts,
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, cwd=root, start_new_session=True
        )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(uri + "/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = log_path.read_text()[-2000:]
                    raise RuntimeError(f"mlflow server did not start: {tail}") from None
                time.sleep(0.3)
        yield uri
    finally:  # the server runs uvicorn workers in its session: stop them all
        for sig, wait_s in ((signal.SIGTERM, 15), (signal.SIGKILL, 15)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
