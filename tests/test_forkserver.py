"""The tests' fast `python` (forkserver.py, forkclient.py) acts as a fresh interpreter where tests rely on it."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# What a command sees of its process; printed as JSON by a real interpreter and by the fast one.
PROBE = """
import json, os, signal, sys, tempfile
print(json.dumps({
    "cwd": os.getcwd(), "argv": sys.argv, "path0": sys.path[0], "env": os.environ.get("PROBE"),
    "main_file": getattr(sys.modules["__main__"], "__file__", None), "name": __name__,
    "stdin": sys.stdin.read(), "tempdir": tempfile.gettempdir(),
    "sigint": repr(signal.getsignal(signal.SIGINT)), "sigterm": repr(signal.getsignal(signal.SIGTERM)),
    "session_leader": os.getsid(0) == os.getpid(), "umask": os.umask(0o22),
    "stdout_line_buffered": sys.stdout.line_buffering, "stderr_line_buffered": sys.stderr.line_buffering,
}))
"""


def run(python: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([python, *args], capture_output=True, text=True, timeout=60, **kwargs)


def probe(python: str, tmp_path: Path, **kwargs) -> dict:
    env = {**os.environ, "PROBE": "x y", "TMPDIR": str(tmp_path)}
    env.pop("PYTHONUNBUFFERED", None)
    done = run(python, "-c", PROBE, "a b", "c", cwd=tmp_path, env=env, input="one\r\ntwo\n", **kwargs)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_command_sees_what_it_would_see_in_a_fresh_interpreter(fast_python: str, tmp_path: Path) -> None:
    seen = probe(fast_python, tmp_path)
    assert seen == probe(sys.executable, tmp_path)
    assert seen["argv"] == ["-c", "a b", "c"] and seen["stdin"] == "one\r\ntwo\n" and seen["tempdir"] == str(tmp_path)

    def ignore_sigint_umask_077() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        os.umask(0o077)

    inherited = {"preexec_fn": ignore_sigint_umask_077, "start_new_session": True}  # as tune starts its workers
    seen = probe(fast_python, tmp_path, **inherited)
    assert seen == probe(sys.executable, tmp_path, **inherited)
    assert seen["session_leader"] and seen["umask"] == 0o077 and "SIG_IGN" in seen["sigint"]


def test_status_tracebacks_scripts_and_modules(fast_python: str, tmp_path: Path) -> None:
    for exe in (sys.executable, fast_python):
        assert run(exe, "-c", "import sys; sys.exit(3)").returncode == 3
        refused = run(exe, "-c", "raise SystemExit('no such thing')")
        assert (refused.returncode, refused.stderr) == (1, "no such thing\n")
        crashed = run(exe, "-c", "1 / 0")
        assert crashed.returncode == 1 and crashed.stderr.startswith("Traceback")
        assert "ZeroDivisionError" in crashed.stderr and "forkserver" not in crashed.stderr
        script = tmp_path / "script.py"
        script.write_text("import atexit, sys\natexit.register(print, 'bye')\nprint(__name__, sys.argv)\n")
        assert run(exe, str(script), "-x").stdout == f"__main__ {[str(script), '-x']}\nbye\n"
        module = run(exe, "-m", "seqclf", "--version")
        assert module.returncode == 0 and module.stdout.startswith("seqclf ")
        assert run(exe, "-I", "-c", "import sys; print(sys.flags.isolated)").stdout == "1\n"  # a real interpreter
    inner = run(fast_python, "-c", "import subprocess, sys; subprocess.run([sys.executable, '-c', 'print(42)'])")
    assert inner.stdout == "42\n" and inner.returncode == 0  # a command's own `python` subprocesses work too


def test_thread_settings_come_from_the_command(fast_python: str) -> None:
    for threads in ("1", "2"):
        env = {**os.environ, "OMP_NUM_THREADS": threads}
        assert run(fast_python, "-c", "import torch; print(torch.get_num_threads())", env=env).stdout == f"{threads}\n"


def test_dash_u_writes_at_once(fast_python: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    code = "import sys, time; print('now'); sys.stdin.read()"  # holds until the test closes its stdin
    for args, at_once in ((["-u"], True), ([], False)):
        proc = subprocess.Popen([fast_python, *args, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                env=env)
        assert proc.stdout is not None and proc.stdin is not None
        readable, _, _ = select.select([proc.stdout], [], [], 10 if at_once else 0.5)
        assert bool(readable) == at_once
        proc.stdin.close()
        assert proc.stdout.read() == b"now\n" and proc.wait(timeout=30) == 0


@pytest.mark.parametrize("python", ["real", "fast"])
def test_signals_reach_the_command_and_its_death_is_mirrored(python: str, fast_python: str) -> None:
    exe = sys.executable if python == "real" else fast_python
    code = ("import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))\n"
            "print('ready', flush=True)\n"
            "for _ in range(1200):\n"
            "    time.sleep(0.05)\n")  # short sleeps: a signal that lands just before one is seen after it
    for signum, status in ((signal.SIGTERM, 143), (signal.SIGINT, -signal.SIGINT)):  # SIGINT: KeyboardInterrupt
        proc = subprocess.Popen([exe, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        proc.send_signal(signum)
        assert proc.wait(timeout=30) == status
        proc.communicate()
    for name in ("SIGKILL", "SIGPIPE"):
        killed = run(exe, "-c", f"import os, signal; signal.signal(signal.{name}, signal.SIG_DFL) "
                                f"if signal.{name} != signal.SIGKILL else None; os.kill(os.getpid(), signal.{name})")
        assert killed.returncode == -getattr(signal, name)


def test_a_killed_client_takes_its_command_with_it(fast_python: str, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    proc = subprocess.Popen([fast_python, "-c", code])
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.kill()
    proc.wait(timeout=30)
    command = int(pid_file.read_text())
    deadline = time.monotonic() + 30
    while Path(f"/proc/{command}").exists() and "Z" not in Path(f"/proc/{command}/stat").read_text().split()[2]:
        assert time.monotonic() < deadline, "the command outlived its client"
        time.sleep(0.01)
