"""A signal at a chosen file write: how the tests stop seqclf between an fsync and its rename.

    python tests/faultwrap.py N:SIGNAL[:NAME] -m seqclf ARGS

runs `python -m seqclf ARGS` in this process, which sends itself SIGNAL (SIGKILL, SIGINT, ...) when the
Nth atomic write (of a file named NAME, if given) has been written and fsynced, just before it is
renamed into place (seqclf.store.files.atomic_write). In-process tests arm the same point with
`monkeypatch.setattr(files, "os", at_write(spec))`. seqclf itself has no test hook.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import types


def at_write(spec: str) -> types.SimpleNamespace:
    """An `os` for seqclf.store.files whose `replace` (the rename that ends an atomic write) first sends the
    signal `spec` names ("N:SIGNAL" or "N:SIGNAL:NAME") at its Nth call (for a target named NAME)."""
    count, signame, *only = spec.split(":")
    signum = getattr(signal, signame)
    seen = 0

    def replace(source: str, target: str) -> None:
        nonlocal seen
        if not only or os.path.basename(target) == only[0]:
            seen += 1
            if seen == int(count):
                os.kill(os.getpid(), signum)
        os.replace(source, target)

    return types.SimpleNamespace(**{**vars(os), "replace": replace})


def main() -> None:
    spec, dash_m, module, *args = sys.argv[1:]
    if dash_m != "-m":
        raise SystemExit("usage: python faultwrap.py N:SIGNAL[:NAME] -m MODULE [ARGS ...]")
    from seqclf.store import files

    files.os = at_write(spec)
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
