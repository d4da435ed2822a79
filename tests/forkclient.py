"""The client half of forkserver.py: `python ARGS` run by the fork server. Standard library only: the
client starts with `python -S`, which is what makes it start in milliseconds.

The protocol, over the server's Unix socket: the client sends an 8-byte length, with its stdin, stdout
and stderr attached (SCM_RIGHTS), then that many bytes of JSON (see `request`). The server answers
"PID\\n" once the command runs and "exit N\\n" or "signal N\\n" when it has ended.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import struct
import sys

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
HEADER = struct.Struct("!Q")
NO_SERVER = 70  # EX_SOFTWARE: the server is gone, nothing ran


def served(args: list[str]) -> bool:
    """Whether the server runs these arguments: [-u] [-B] then -m MODULE, -c CODE or a script."""
    while args[:1] in (["-u"], ["-B"]):
        args = args[1:]
    return (len(args) >= 2 and args[0] in ("-m", "-c")) or (bool(args) and not args[0].startswith("-"))


def request(args: list[str], ignored: list[int]) -> dict:
    """What the command inherits from this process, as a fresh interpreter started here would."""
    umask = os.umask(0)
    os.umask(umask)
    return {"executable": sys.argv[0], "argv": args, "cwd": os.getcwd(), "env": dict(os.environ),
            "umask": umask, "affinity": sorted(os.sched_getaffinity(0)), "ignored": ignored,
            "session": os.getsid(0) == os.getpid(), "group": os.getpgid(0) == os.getpid()}


def main(socket_path: str, python: str) -> None:
    args = sys.argv[1:]
    if not served(args):  # other interpreter flags, or none at all: a real interpreter
        os.execv(python, [python, *args])
    child: int | None = None
    pending: list[int] = []

    def forward(signum: int, frame: object) -> None:
        if child is None:
            pending.append(signum)
            return
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    ignored = [int(s) for s in FORWARDED if signal.getsignal(s) == signal.SIG_IGN]
    for signum in FORWARDED:
        if signum not in ignored:
            signal.signal(signum, forward)
    fds = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            fds.append(fd)
        except OSError:  # a closed standard stream: the command gets /dev/null there
            fds.append(os.open(os.devnull, os.O_RDWR))
    body = json.dumps(request(args, ignored)).encode()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(socket_path)
        socket.send_fds(sock, [HEADER.pack(len(body))], fds)
        sock.sendall(body)
    except OSError as error:
        sys.stderr.write(f"forkclient: no fork server at {socket_path} ({error}); the test run that started it "
                         "has ended\n")
        sys.exit(NO_SERVER)
    reply = b""
    while reply.count(b"\n") < 2:
        chunk = sock.recv(64)
        if not chunk:
            sys.stderr.write("forkclient: the fork server went away before the command ended\n")
            sys.exit(NO_SERVER)
        reply += chunk
        if child is None and b"\n" in reply:
            child = int(reply.split(b"\n")[0])
            for signum in pending:
                forward(signum, None)
    how, value = reply.split(b"\n")[1].split()
    if how == b"exit":
        sys.exit(int(value))
    signum = int(value)  # end as the command ended: killed by the same signal
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the command dumped core already if it was to
    try:
        signal.signal(signum, signal.SIG_DFL)
    except (OSError, ValueError):  # SIGKILL and SIGSTOP have no handler to reset
        pass
    os.kill(os.getpid(), signum)
    sys.exit(128 + signum)  # a signal whose default action is not to end a process
