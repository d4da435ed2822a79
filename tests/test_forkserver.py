"""The tests' fast `python` (forkserver.py) behaves as a fresh interpreter where the tests rely on it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def run(python: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([python, *args], capture_output=True, text=True, timeout=60, **kwargs)


@pytest.mark.parametrize("python", ["real", "fast"])
def test_streams_status_folder_environment_and_arguments(python: str, fast_python: str, tmp_path: Path) -> None:
    exe = sys.executable if python == "real" else fast_python
    code = ("import os, sys; print(os.getcwd(), os.environ['PROBE'], sys.argv[1:], sys.path[0]); "
            "print(sys.stdin.read().upper(), file=sys.stderr); sys.exit(3)")
    done = run(exe, "-c", code, "a b", "c", cwd=tmp_path, env={**os.environ, "PROBE": "x y"}, input="piped")
    assert done.returncode == 3
    assert done.stdout == f"{tmp_path} x y ['a b', 'c'] \n" and done.stderr == "PIPED\n"
    assert run(exe, "-c", "raise SystemExit('no such thing')").stderr == "no such thing\n"
    crashed = run(exe, "-c", "1 / 0")
    assert crashed.returncode == 1 and "ZeroDivisionError" in crashed.stderr and "Traceback" in crashed.stderr
    script = tmp_path / "script.py"
    script.write_text("import atexit, sys\natexit.register(print, 'bye')\nprint(__name__, sys.argv)\n")
    assert run(exe, str(script), "-x").stdout == f"__main__ {[str(script), '-x']}\nbye\n"
    inner = run(exe, "-c", "import subprocess, sys; subprocess.run([sys.executable, '-c', 'print(42)'])")
    assert inner.stdout == "42\n" and inner.returncode == 0  # a command's own `python` subprocesses work too
    module = run(exe, "-m", "seqclf", "--version")
    assert module.returncode == 0 and module.stdout.startswith("seqclf ")


@pytest.mark.parametrize("python", ["real", "fast"])
def test_signals_reach_the_command_and_its_death_is_mirrored(python: str, fast_python: str, tmp_path: Path) -> None:
    exe = sys.executable if python == "real" else fast_python
    code = ("import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))\n"
            "print('ready', flush=True)\n"
            "for _ in range(1200):\n"
            "    time.sleep(0.05)\n")  # short sleeps: a signal that lands just before one is seen after it
    proc = subprocess.Popen([exe, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 143
    proc = subprocess.Popen([exe, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGINT)  # KeyboardInterrupt, uncaught: the interpreter dies of SIGINT
    assert proc.wait(timeout=30) == -signal.SIGINT
    assert run(exe, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)").returncode == -signal.SIGKILL


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
