"""A `python` for the tests' subprocesses that starts in milliseconds instead of seconds.

Every real `python -m seqclf train` spends about 3 s of CPU importing torch and torch._dynamo (torch's
optimizers import it) before it does anything. The suite starts dozens of such processes (the README's
commands, scripts/sweep.sh and bench.sh, signals, parallel runs, the ranks of a distributed run), so on
a 2-core machine most of its time went to those imports.

The server (`serve`, one per pytest run: conftest.py starts it) imports the heavy libraries once, writes
seqclf's bytecode (but does not import seqclf), then forks for each command. The client (forkclient.py,
made executable by `write_client`) is used exactly like `python`: `CLIENT -m seqclf ...`, `CLIENT
script.py ...` or `CLIENT -c CODE ...`, after `-u` or `-B` if given (any other interpreter flag runs a
real interpreter). It hands the server its standard streams, working directory, environment, arguments,
umask, CPU affinity, ignored signals and session; a forked child takes them over and runs the command as
a fresh interpreter would (sys.argv, sys.path, `__main__`, stdio buffering, exit status, an uncaught
exception's traceback, atexit). The child never imports seqclf before the command does, and within a
command sys.executable is the client, so the processes seqclf starts itself (tune's workers, torchrun's
ranks) start fast too.

The client forwards the signals a test sends it (SIGINT, SIGTERM, ...) to the command and ends as the
command ended: with its exit status, or killed by the same signal. SIGKILL cannot be forwarded: a killed
client has the server SIGKILL its command, and a test that must kill the training process itself kills
the PID that seqclf reports.

What a forked child cannot take from its environment as a fresh interpreter would: PYTHONHASHSEED and
the other settings Python reads only at start-up, and what the imported libraries read at import (the
server starts with the tests' environment, so these agree unless a test changes them). The child
re-reads the ones that matter here: TMPDIR, OMP_NUM_THREADS, and a fresh seed for numpy's global
generator. Tests about the interpreter itself keep a real one: the entry point, a config refused before
torch is imported, and which seqclf an installed wheel imports. Where the server cannot run (it needs
Linux), the tests' fast `python` is the real one: slower, and otherwise the same.
"""

from __future__ import annotations

import atexit
import builtins
import compileall
import ctypes
import gc
import importlib.util
import io
import json
import os
import runpy
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import types

import forkclient

PRELOAD = ("torch", "torch._dynamo", "torch.distributed", "torchvision", "numpy", "yaml", "rich", "typer",
           "optuna", "optuna.importance", "sqlalchemy", "PIL.Image", "matplotlib.figure",
           "matplotlib.backends.backend_agg")  # not pyplot: it settles on a backend
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # read by torch at start-up: re-applied per command
default_threads = 0  # torch's thread count in a process started without THREAD_VARIABLES


# ---------------------------------------------------------------- starting a server (conftest.py)


def supported() -> bool:
    """Whether this system has what the server uses: Linux's pidfd_open and PR_SET_PDEATHSIG."""
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return False
    return sys.platform.startswith("linux")


def start(folder: str) -> tuple[subprocess.Popen, str]:
    """Start a server in `folder` (its socket appears there once it serves); (the server, its client)."""
    socket_path = os.path.join(folder, "socket")
    # its own session: a Ctrl-C at the terminal goes to pytest and its commands, not to the server
    server = subprocess.Popen([sys.executable, __file__, socket_path], stdin=subprocess.DEVNULL,
                              start_new_session=True)
    with open(os.path.join(folder, "server.pid"), "w") as handle:
        handle.write(str(server.pid))
    return server, write_client(os.path.join(folder, "python"), socket_path)


def write_client(path: str, socket_path: str) -> str:
    """An executable at `path` that runs its arguments as `python ARGS` would, through the server at socket_path."""
    here = os.path.dirname(os.path.abspath(__file__))
    with open(path, "w") as handle:
        handle.write(f"#!{sys.executable} -S\nimport sys\nsys.path.insert(0, {here!r})\nimport forkclient\n"
                     f"forkclient.main({socket_path!r}, {sys.executable!r})\n")
    os.chmod(path, 0o755)
    return path


def wait_until_ready(client: str, timeout: float = 300) -> str:
    """The client, once its server (see `start`) listens; it imports torch first, which takes seconds."""
    folder = os.path.dirname(client)
    socket_path = os.path.join(folder, "socket")
    with open(os.path.join(folder, "server.pid")) as handle:
        pid = int(handle.read())
    deadline = time.monotonic() + timeout
    while not os.path.exists(socket_path):
        if os.path.exists(socket_path + ".failed"):
            with open(socket_path + ".failed") as failed:
                raise RuntimeError(f"the fork server failed to start:\n{failed.read()}")
        if not _alive(pid):
            raise RuntimeError(f"the fork server (PID {pid}) ended before it served {socket_path}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the fork server never created {socket_path}")
        time.sleep(0.05)
    return client


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


# ---------------------------------------------------------------- the server


def serve(socket_path: str) -> None:
    """Import PRELOAD, then fork a child per connection until the process that started the server is gone."""
    global default_threads
    del sys.path[0]  # this file's folder: not on a command's path
    for name in THREAD_VARIABLES:
        os.environ.pop(name, None)
    for name in PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    if "torch" in sys.modules:
        default_threads = sys.modules["torch"].get_num_threads()
    _compile("seqclf")
    gc.freeze()  # a collection in a command need not touch (and so copy) every page the imports filled
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path + ".starting")
    listener.listen(64)
    os.rename(socket_path + ".starting", socket_path)  # the path exists only once connections are served
    Server(listener).run(parent=os.getppid())


def _compile(package: str) -> None:
    """Write the package's bytecode, as pip does when it installs one, so that each command loads it instead
    of compiling every module again (where PYTHONDONTWRITEBYTECODE is set, nothing else would write it)."""
    spec = importlib.util.find_spec(package)  # finds it without importing it
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        compileall.compile_dir(folder, quiet=2)  # a read-only checkout: commands compile as before


class Server:
    """One process: accepts clients, forks each command, reports how it ended; no threads (it forks)."""

    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.selector = selectors.DefaultSelector()
        self.selector.register(listener, selectors.EVENT_READ)
        self.commands: dict[int, tuple[socket.socket | None, int]] = {}  # pid: (its client's connection, pidfd)

    def run(self, parent: int) -> None:
        """Serve until the process that started the server is gone."""
        while os.getppid() == parent:
            for key, _ in self.selector.select(timeout=1.0):
                if key.fileobj is self.listener:
                    self.start_command()
                elif isinstance(key.fileobj, socket.socket):
                    self.check_client(key.data, key.fileobj)
                else:
                    self.finish_command(key.data)

    def start_command(self) -> None:
        conn, _ = self.listener.accept()
        try:
            request, fds = _receive(conn)
        except (OSError, ValueError):
            conn.close()
            return
        me = os.getpid()
        pid = os.fork()
        if pid == 0:
            try:
                _die_with(me)
                self.close_all()
                conn.close()
                _run(request, fds)  # never returns
            except BaseException:  # noqa: BLE001 - the command could not even start
                traceback.print_exc()
                os._exit(forkclient.NO_SERVER)
        for fd in fds:
            os.close(fd)  # the command's pipes reach EOF when the command ends, not when the server does
        watch = os.pidfd_open(pid)
        self.commands[pid] = (conn, watch)
        self.selector.register(conn, selectors.EVENT_READ, pid)
        self.selector.register(watch, selectors.EVENT_READ, pid)
        self.send(pid, f"{pid}\n")

    def check_client(self, pid: int, conn: socket.socket) -> None:
        """The client sends nothing after its request: readable means it is gone (a test's timeout killed
        it), and so is its command."""
        if self.commands.get(pid, (None, 0))[0] is not conn:  # dealt with earlier in this round
            return
        try:
            gone = not conn.recv(1)
        except OSError:
            gone = True
        if gone:
            self.drop_client(pid)
            os.kill(pid, signal.SIGKILL)  # its pidfd reports the end

    def finish_command(self, pid: int) -> None:
        if pid not in self.commands:
            return
        _, status = os.waitpid(pid, 0)
        how = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit {os.WEXITSTATUS(status)}"
        self.send(pid, f"{how}\n")
        self.drop_client(pid)
        _, watch = self.commands.pop(pid)
        self.selector.unregister(watch)
        os.close(watch)

    def send(self, pid: int, message: str) -> None:
        conn, _ = self.commands[pid]
        if conn is not None:
            try:
                conn.sendall(message.encode())
            except OSError:  # the client is gone; check_client or finish_command cleans up
                pass

    def drop_client(self, pid: int) -> None:
        conn, watch = self.commands[pid]
        if conn is not None:
            self.selector.unregister(conn)
            conn.close()
            self.commands[pid] = (None, watch)

    def close_all(self) -> None:
        """In a command's process: none of the server's descriptors stay open (a client would wait on them)."""
        for conn, watch in self.commands.values():
            if conn is not None:
                conn.close()
            os.close(watch)
        self.selector.close()
        self.listener.close()


def _die_with(parent: int) -> None:
    """SIGKILL when `parent` ends: stopping the server ends what it started, even after a failed test."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG (Linux)
    if os.getppid() != parent:  # it ended before prctl
        os._exit(1)


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    """The client's request, sent at once after it connects (a stuck client cannot hold the server long)."""
    conn.settimeout(10)
    header, fds, _, _ = socket.recv_fds(conn, forkclient.HEADER.size, 3)
    (size,) = forkclient.HEADER.unpack(header)
    body = b""
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            for fd in fds:
                os.close(fd)
            raise ConnectionError("the client went away before its request was complete")
        body += chunk
    conn.setblocking(False)
    return json.loads(body), fds


# ---------------------------------------------------------------- the command, in its own process


def _run(request: dict, fds: list[int]) -> None:
    """Become the command: what it inherits from the client; run it; exit as Python would."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    if request["session"]:
        os.setsid()
    elif request["group"]:
        os.setpgid(0, 0)
    os.umask(request["umask"])
    os.sched_setaffinity(0, request["affinity"])
    for signum in forkclient.FORWARDED:
        default = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
        signal.signal(signum, signal.SIG_IGN if signum in request["ignored"] else default)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    _reread_environment()
    sys.executable = request["executable"]  # what the command starts with sys.executable starts fast too
    argv = list(request["argv"])
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    while argv[:1] in (["-u"], ["-B"]):  # as torchrun starts its ranks: `python -u -m ...`
        if argv.pop(0) == "-u":
            unbuffered = True
        else:
            sys.dont_write_bytecode = True
    sys.stdin = sys.__stdin__ = _stream(0, "r", unbuffered)
    sys.stdout = sys.__stdout__ = _stream(1, "w", unbuffered)
    sys.stderr = sys.__stderr__ = _stream(2, "w", unbuffered)
    extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]
    code = 0
    try:
        if argv[0] == "-m":
            sys.path[0:0] = [os.getcwd(), *extra]
            sys.argv = ["-m", *argv[2:]]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        elif argv[0] == "-c":
            sys.path[0:0] = ["", *extra]
            sys.argv = ["-c", *argv[2:]]
            main = types.ModuleType("__main__")
            main.__builtins__ = builtins
            sys.modules["__main__"] = main
            exec(compile(argv[1], "<string>", "exec"), main.__dict__)
        else:
            sys.path[0:0] = [os.path.dirname(os.path.abspath(argv[0])), *extra]
            sys.argv = list(argv)
            runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as stop:
        code = _exit_code(stop.code)
    except KeyboardInterrupt as stop:  # the interpreter's way: the traceback, then death by SIGINT
        _print_traceback(stop)
        _finish()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        os._exit(128 + signal.SIGINT)
    except BaseException as error:  # noqa: BLE001 - as the interpreter does: the traceback, then status 1
        _print_traceback(error)
        code = 1
    _finish()
    os._exit(code)


def _reread_environment() -> None:
    """What a fresh interpreter would take from the command's environment but the server read already."""
    tempfile.tempdir = None  # TMPDIR
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()  # a new process seeds numpy's global generator from the OS
    if "torch" in sys.modules:
        wanted = next((os.environ[name] for name in THREAD_VARIABLES if os.environ.get(name, "").isdigit()), "")
        sys.modules["torch"].set_num_threads(int(wanted) if int(wanted or 0) > 0 else default_threads)


def _stream(fd: int, mode: str, unbuffered: bool) -> io.TextIOWrapper:
    """sys.stdin, sys.stdout or sys.stderr as the interpreter makes them on Linux."""
    encoding = os.environ.get("PYTHONIOENCODING", "").split(":")[0] or "utf-8"
    raw = io.FileIO(fd, mode, closefd=False)
    if mode == "r":
        return io.TextIOWrapper(io.BufferedReader(raw), encoding=encoding, newline="\n")
    if unbuffered:  # -u: text goes straight to the file descriptor
        return io.TextIOWrapper(raw, encoding=encoding, errors="backslashreplace" if fd == 2 else "strict",
                                newline="\n", write_through=True)
    return io.TextIOWrapper(io.BufferedWriter(raw), encoding=encoding, newline="\n",
                            errors="backslashreplace" if fd == 2 else "strict",
                            line_buffering=fd == 2 or os.isatty(fd))


def _print_traceback(error: BaseException) -> None:
    """The traceback from the command's first frame on, through sys.excepthook as the interpreter does."""
    tb = error.__traceback__
    error = error.with_traceback(tb.tb_next if tb is not None else None)  # from the command's first frame on
    sys.excepthook(type(error), error, error.__traceback__)


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
