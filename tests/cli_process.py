"""``python -m cli ARGS`` as a process of its own, without paying for the imports each time.

Importing the CLI (SQLAlchemy, SQLModel, the tables, Typer, Rich, Jinja) takes most of a
command's second and a half of CPU; the e2e tests run hundreds of commands. ``run`` keeps,
per environment and folder, a *zygote*: a child that imported ``cli.main`` with that
environment and then waits on a Unix socket. Each command is a ``fork`` of it that runs
``cli`` as ``python -m cli`` would (``runpy``, so the program name and ``sys.argv`` are the
same), with its own stdin, stdout and stderr (files passed over the socket), its own exit
status, non-daemon threads joined and exit handlers run as the interpreter does at exit.
The process is new; only the import is shared — done with the same environment, so what
the CLI reads from it at import (the settings, the broker, the console's width) is what a
fresh process would read. ``test_operator_errors`` forked per command this way first.

``run`` returns what ``subprocess.run(..., capture_output=True)`` returns. If a zygote
cannot start (the CLI fails to import), the command runs as a plain process, which then
fails the same way.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
KEEP = 3  # zygotes kept per test process (one per environment; the oldest is stopped)

ZYGOTE = r"""
import atexit, json, os, runpy, socket, sys, threading, traceback
import cli.main  # noqa: F401  what every command would import first

path = sys.argv[1]
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path + ".tmp")
os.rename(path + ".tmp", path)  # the path exists once the zygote listens
server.listen(64)
server.settimeout(5)
parent = os.getppid()


def child(request, fds):
    for fd, target in zip(fds, (0, 1, 2)):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    sys.argv = ["", *request["args"]]
    code = 0
    try:
        runpy.run_module("cli", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
        if not isinstance(exc.code, int) and exc.code is not None:
            print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        code = 1
    try:  # what the interpreter does at exit: join the threads, run the exit handlers
        threading._shutdown()
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def wait(conn, pid):
    _, status = os.waitpid(pid, 0)
    with conn:
        conn.sendall(json.dumps({"exit": os.waitstatus_to_exitcode(status)}).encode() + b"\n")


while True:
    try:
        conn, _ = server.accept()
    except TimeoutError:
        if os.getppid() != parent:  # the test process is gone: so are we
            break
        continue
    conn.settimeout(None)
    message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
    request = json.loads(message)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        server.close()
        conn.close()
        child(request, fds)
    for fd in fds:
        os.close(fd)
    conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
    threading.Thread(target=wait, args=(conn, pid), daemon=True).start()
"""


class Zygote:
    def __init__(self, env: dict[str, str], cwd: str) -> None:
        self.folder = tempfile.mkdtemp(prefix="cli-zygote-")
        self.path = os.path.join(self.folder, "socket")
        self.process = subprocess.Popen(
            [sys.executable, "-c", ZYGOTE, self.path], cwd=cwd, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not os.path.exists(self.path):
            if self.process.poll() is not None:
                self.broken = True
                return
            time.sleep(0.01)
        self.broken = False

    def run(self, args: list[str], cwd: str, stdin: IO[bytes], stdout: IO[bytes],
            stderr: IO[bytes], timeout: float | None) -> int:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(self.path)
            socket.send_fds(conn, [json.dumps({"args": args, "cwd": cwd}).encode()],
                            [stdin.fileno(), stdout.fileno(), stderr.fileno()])
            reader = conn.makefile("rb")
            pid = json.loads(reader.readline())["pid"]
            conn.settimeout(timeout)
            try:
                line = reader.readline()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
                raise subprocess.TimeoutExpired(args, timeout or 0) from None
            return int(json.loads(line)["exit"])

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.rmdir(self.folder)


_zygotes: OrderedDict[tuple[Any, ...], Zygote] = OrderedDict()
_lock = threading.Lock()


def _zygote(env: dict[str, str], cwd: str) -> Zygote:
    key = (tuple(sorted(env.items())), cwd)
    with _lock:
        found = _zygotes.get(key)
        if found is not None:
            _zygotes.move_to_end(key)
            return found
        made = _zygotes[key] = Zygote(env, cwd)
        while len(_zygotes) > KEEP:
            _zygotes.popitem(last=False)[1].stop()
        return made


@atexit.register
def _stop_all() -> None:
    for zygote in _zygotes.values():
        zygote.stop()
    _zygotes.clear()


def run(args: list[str] | tuple[str, ...], *, env: dict[str, str] | None = None,
        cwd: str | Path | None = None, input: str | None = None,
        timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """``billing ARGS`` (``python -m cli ARGS``) as ``subprocess.run(..., text=True,
    capture_output=True)`` runs it."""
    env = dict(os.environ if env is None else env)
    folder = str(cwd if cwd is not None else ROOT)
    argv = [str(a) for a in args]
    zygote = _zygote(env, folder)
    if zygote.broken:  # the CLI does not import: show how, as a plain process would
        return subprocess.run([sys.executable, "-m", "cli", *argv], capture_output=True,
                              text=True, env=env, cwd=folder, input=input, timeout=timeout)
    with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as stdout, \
            tempfile.TemporaryFile() as stderr:
        if input is not None:
            stdin.write(input.encode())
            stdin.flush()
            stdin.seek(0)
        code = zygote.run(argv, folder, stdin, stdout, stderr, timeout)
        outputs = []
        for stream in (stdout, stderr):
            stream.seek(0)
            text = stream.read().decode()  # as text=True reads it: universal newlines
            outputs.append(text.replace("\r\n", "\n").replace("\r", "\n"))
    return subprocess.CompletedProcess([sys.executable, "-m", "cli", *argv], code, *outputs)
