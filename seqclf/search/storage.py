"""Where a study lives: Optuna's storages (a journal file by default, or an RDB URL such as
postgresql://), opened with one message per way they can fail. Optuna is imported only here, on use."""

from __future__ import annotations

import logging
import random
import re
import time
from pathlib import Path
from typing import Any

from seqclf.errors import SeqclfError, first_line

INSTALL = 'pip install "seqclf[tune]"'
JOURNAL = "journal.log"  # the default storage, in output.dir/<study>/


def require_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise SeqclfError(f"seqclf tune needs Optuna, an optional extra: {INSTALL} "
                          f"(or pip install optuna; add 'psycopg[binary]' for PostgreSQL storage)") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # a storage error is also logged, with its SQL, before it is raised: seqclf says it once, in one line
    logging.getLogger("optuna.storages._rdb.storage").setLevel(logging.ERROR)
    return optuna


def without_password(url: str) -> str:
    """The storage URL without its password."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def open_storage(url: str | None, folder: Path, create: bool) -> tuple[Any, str]:
    """(Optuna storage, how to show it). The default is a journal file that processes share safely."""
    optuna = require_optuna()
    if url is None:
        path = folder / JOURNAL
        if not create and not path.exists():
            raise SeqclfError(f"no study at {path}: start one with seqclf tune --space SPACE.yaml, or give "
                              f"--storage URL (and --study NAME, --set output.dir=DIR) where it lives")
        folder.mkdir(parents=True, exist_ok=True)
        return _journal(path, folder), str(path)
    # sqlite: wait up to 60 s for another worker's write lock instead of failing "database is locked"
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    try:
        return _rdb(optuna, url, kwargs), without_password(url)
    except ImportError as exc:  # Optuna's message hides the module; SQLAlchemy's says which one
        raise SeqclfError(f"--storage {without_password(url)}: needs a database driver ({exc.__cause__ or exc}); for "
                          f'postgresql:// URLs: pip install "seqclf[tune]" (psycopg 3), or psycopg2-binary '
                          f"with postgresql+psycopg2:// URLs") from None
    except Exception as exc:  # sqlalchemy's many connection and URL errors
        first = first_line(exc)
        raise SeqclfError(f"--storage {without_password(url)}: cannot be opened ({first}); give an Optuna storage "
                          f"URL such as sqlite:///tune.db or postgresql://user:password@host/database") from None


def _rdb(optuna: Any, url: str, kwargs: dict[str, Any]) -> Any:
    """Optuna's RDB storage. It creates its tables on first use, and two creators at once (workers started
    together on several machines) collide in PostgreSQL's catalogue: the loser tries again, tables made."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(4):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        except (IntegrityError, ProgrammingError) as exc:
            if isinstance(exc, ProgrammingError) and "already exists" not in str(exc):
                raise
            time.sleep(0.1 + random.random() * 0.2 * (attempt + 1))
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)


def _journal(path: Path, folder: Path) -> Any:
    """The journal storage at `path`, replayed once; a damaged file (bytes overwritten, NUL bytes) is a SeqclfError."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    try:
        with open(path, "ab+") as handle:  # Optuna skips a last line without its newline, NUL bytes too
            handle.seek(0)
            if any(b"\0" in chunk for chunk in iter(lambda: handle.read(1 << 20), b"")):
                raise ValueError("NUL bytes in the file")
        storage = JournalStorage(JournalFileBackend(str(path)))  # replays the whole journal
        storage.get_all_studies()
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:  # JSONDecodeError: a ValueError
        raise SeqclfError(f"{path}: the study's journal is damaged ({type(exc).__name__}: {first_line(exc)[:120]}), "
                          f"so its trials cannot be read; move it aside to start the study afresh (the trials' runs "
                          f"stay in {folder}), or use another --study NAME") from None
    return storage
