"""A `python` for the tests' subprocesses that starts in milliseconds instead of seconds.

Every real `python -m seqclf train` spends about 3 s of CPU importing torch and torch._dynamo (torch's
optimizers import it) before it does anything. The suite starts dozens of such processes (the README's
commands, scripts/sweep.sh and bench.sh, signals, parallel runs, the ranks of a distributed run), so on
a 2-core machine most of its time went to those imports.

The server (`serve`, one per pytest run: conftest.py starts it) imports the heavy libraries once, then
forks for each command. The client (`write_client`) is a small script used exactly like `python`:
`CLIENT -m seqclf ...`, `CLIENT script.py ...` or `CLIENT -c CODE ...`. It hands its stdin, stdout and
stderr, working directory, environment and arguments to the server; a forked child runs the command as
a fresh interpreter would (sys.argv, sys.path, `__main__`, exit status, an uncaught exception's
traceback, atexit) and never imports seqclf before the command does. Within a command sys.executable is
the client, so the processes seqclf starts itself (tune's workers, torchrun's ranks) start fast too.

The client forwards the signals a test sends it (SIGINT, SIGTERM, ...) to the command and ends as the
command ended: with its exit status, or killed by the same signal. SIGKILL cannot be forwarded: a killed
client has the server SIGKILL its command, and a test that must kill the training process itself kills
the PID that seqclf reports. Tests about the interpreter itself keep a real one: the entry point, a
config refused before torch is imported, and which seqclf an installed wheel imports.
"""

from __future__ import annotations

import atexit
import ctypes
import gc
import io
import json
import os
import runpy
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback

PRELOAD = ("torch", "torch._dynamo", "torch.distributed", "torchvision", "numpy", "yaml", "rich", "typer",
           "optuna", "optuna.importance", "sqlalchemy", "PIL.Image", "matplotlib.pyplot")
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
HEADER = struct.Struct("!Q")

CLIENT = r'''
import json, os, signal, socket, struct, sys

child, pending = None, []


def forward(signum, frame):
    if child is None:
        pending.append(signum)
    else:
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass


for signum in FORWARDED:
    signal.signal(signum, forward)
fds = []
for fd in (0, 1, 2):
    try:
        os.fstat(fd)
        fds.append(fd)
    except OSError:  # a closed standard stream: the child gets /dev/null there
        fds.append(os.open(os.devnull, os.O_RDWR))
request = {"executable": sys.argv[0], "argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}
request = json.dumps(request).encode()
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(SOCKET)
socket.send_fds(sock, [struct.pack("!Q", len(request))], fds)
sock.sendall(request)
reply = b""
while not reply.endswith(b"\n") or reply.count(b"\n") < 2:
    chunk = sock.recv(64)
    if not chunk:
        sys.stderr.write("forkserver: the server went away\n")
        sys.exit(70)
    reply += chunk
    if child is None and b"\n" in reply:
        child = int(reply.split(b"\n")[0])
        for signum in pending:
            forward(signum, None)
how, value = reply.split(b"\n")[1].split()
if how == b"signal":
    if int(value) in FORWARDED:
        signal.signal(int(value), signal.SIG_DFL)
    os.kill(os.getpid(), int(value))
sys.exit(int(value) if how == b"exit" else 128 + int(value))
'''


def write_client(path: str, socket_path: str) -> str:
    """An executable at `path` that runs its arguments as `python ARGS` would, through the server at socket_path."""
    source = (f"#!{sys.executable} -S\nSOCKET = {socket_path!r}\nFORWARDED = {tuple(map(int, FORWARDED))!r}\n"
              + CLIENT)
    with open(path, "w") as handle:
        handle.write(source)
    os.chmod(path, 0o755)
    return path


def start(folder: str) -> tuple[subprocess.Popen, str]:
    """Start a server whose socket appears in `folder` once it is ready; (the server, its client)."""
    server = subprocess.Popen([sys.executable, __file__, os.path.join(folder, "socket")], stdin=subprocess.DEVNULL)
    return server, write_client(os.path.join(folder, "python"), os.path.join(folder, "socket"))


def wait_until_ready(client: str, timeout: float = 300) -> str:
    """The client, once its server listens (it imports torch first: seconds)."""
    socket_path = os.path.join(os.path.dirname(client), "socket")  # as start() places them
    deadline = time.monotonic() + timeout
    while not os.path.exists(socket_path):
        if os.path.exists(socket_path + ".failed"):
            with open(socket_path + ".failed") as failed:
                raise RuntimeError(f"the fork server failed to start:\n{failed.read()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the fork server never created {socket_path}")
        time.sleep(0.05)
    return client


def serve(socket_path: str) -> None:
    """Import PRELOAD, then fork a child per connection until the process that started the server is gone."""
    del sys.path[0]  # this file's folder: not on a command's path
    for name in PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    gc.freeze()  # a collection in a command need not touch (and so copy) every page the imports filled
    parent = os.getppid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path + ".starting")
    listener.listen(64)
    listener.settimeout(1.0)
    os.rename(socket_path + ".starting", socket_path)  # the path exists only once connections are served
    while os.getppid() == parent:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            conn = None
        if conn is not None:
            if os.fork() == 0:
                listener.close()
                _die_with_parent(parent=os.getppid())
                _handle(conn)  # never returns
            conn.close()
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass


def _die_with_parent(parent: int) -> None:
    """SIGKILL when the parent ends: stopping the server ends what it started, even after a failed test."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG (Linux)
    if os.getppid() != parent:  # it ended before prctl
        os._exit(1)


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    conn.settimeout(None)
    header, fds, _, _ = socket.recv_fds(conn, HEADER.size, 3)
    (size,) = HEADER.unpack(header)
    body = b""
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            os._exit(0)
        body += chunk
    return json.loads(body), fds


def _handle(conn: socket.socket) -> None:
    """The connection's process: start the command in a child, report its pid, then how it ended."""
    try:
        request, fds = _receive(conn)
        pid = os.fork()
        if pid == 0:
            try:
                _die_with_parent(parent=os.getppid())
                conn.close()
                _run(request, fds)  # never returns
            except BaseException:  # noqa: BLE001 - the command could not even start
                traceback.print_exc()
                os._exit(70)
        for fd in fds:
            os.close(fd)  # the command's pipes reach EOF when the command ends, not when this process does
        conn.sendall(f"{pid}\n".encode())
        watch = os.pidfd_open(pid)
        while True:
            ready, _, _ = select.select([conn, watch], [], [])
            if watch in ready:
                break
            if not conn.recv(1):  # the client is gone (killed by a test's timeout): so is its command
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        how = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit {os.WEXITSTATUS(status)}"
        conn.sendall(f"{how}\n".encode())
    finally:
        os._exit(0)


def _stream(fd: int, mode: str) -> io.TextIOWrapper:
    encoding = os.environ.get("PYTHONIOENCODING", "").split(":")[0] or "utf-8"
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    raw = io.FileIO(fd, mode, closefd=False)
    if mode == "r":
        return io.TextIOWrapper(io.BufferedReader(raw), encoding=encoding)
    return io.TextIOWrapper(io.BufferedWriter(raw), encoding=encoding, errors="backslashreplace" if fd == 2 else
                            "strict", line_buffering=fd == 2 or os.isatty(fd), write_through=unbuffered)


def _run(request: dict, fds: list[int]) -> None:
    """Become the command: its streams, folder, environment and arguments; run it; exit as Python would."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.executable = request["executable"]  # what the command starts with sys.executable starts fast too
    extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]
    argv = list(request["argv"])
    while argv[:1] in (["-u"], ["-B"]):  # as torchrun starts its ranks: `python -u -m ...`
        if argv.pop(0) == "-u":
            os.environ["PYTHONUNBUFFERED"] = "1"
    sys.stdin, sys.stdout, sys.stderr = _stream(0, "r"), _stream(1, "w"), _stream(2, "w")
    code = 0
    try:
        if argv[:1] == ["-m"]:
            sys.path[0:0] = [os.getcwd(), *extra]
            sys.argv = ["-m", *argv[2:]]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        elif argv[:1] == ["-c"]:
            sys.path[0:0] = ["", *extra]
            sys.argv = ["-c", *argv[2:]]
            exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
        else:
            sys.path[0:0] = [os.path.dirname(os.path.abspath(argv[0])), *extra]
            sys.argv = list(argv)
            runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as stop:
        code = _exit_code(stop.code)
    except KeyboardInterrupt as stop:
        _print_traceback(stop)
        _finish()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    except BaseException as error:  # noqa: BLE001 - as the interpreter does: the traceback, then status 1
        _print_traceback(error)
        code = 1
    _finish()
    os._exit(code)


def _print_traceback(error: BaseException) -> None:
    """The traceback from the command's first frame on, as the interpreter prints it."""
    tb = error.__traceback__
    traceback.print_exception(type(error), error, tb.tb_next if tb is not None else None)


def _exit_code(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    print(value, file=sys.stderr)
    return 1


def _finish() -> None:
    """What the interpreter does on the way out: wait for threads, run atexit, flush the streams."""
    try:
        threading._shutdown()  # type: ignore[attr-defined]
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass


if __name__ == "__main__":
    try:
        serve(sys.argv[1])
    except BaseException:  # noqa: BLE001 - say why to the tests waiting for the socket, then fail
        with open(sys.argv[1] + ".failed", "w") as report:
            report.write(traceback.format_exc())
        raise
