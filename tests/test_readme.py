"""The README's shell examples run (on tiny data), so they cannot rot; the docs it links exist.

Each ```sh block runs in bash in one scratch folder, in order, with `seqclf` a function that runs the
command in the test's own process (helpers.run_script) and, for `train`, `bench` and `tune` (2 trials, one job),
appends `--set` flags for a tiny dataset (later flags win, so the README's own data flags are
overridden). A block preceded by `<!-- doctest: skip (why) -->` is not run:
those need apt, a new venv or the network.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from helpers import ROOT, make_dataset, posix_only, run_script

README = ROOT / "README.md"
BLOCK = re.compile(r"(<!-- doctest: skip \(([^)]*)\) -->\n)?```sh\n(.*?)```", re.DOTALL)


def blocks() -> list[tuple[str | None, str]]:
    """(why it is skipped or None, the block's text) for every ```sh block, in order."""
    return [(match.group(2), match.group(3)) for match in BLOCK.finditer(README.read_text())]


def test_the_skip_list_is_small_and_says_why() -> None:
    skipped = [why for why, _ in blocks() if why is not None]
    assert 1 <= len(skipped) <= 3 and all(why.strip() for why in skipped)
    assert len(blocks()) - len(skipped) >= 2


@posix_only  # bash; `seqclf tune --jobs 2` runs with --jobs 1, here (its workers are tested in test_tune.py)
def test_readme_shell_blocks_run(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "tiny", n_train=400, n_test=100)
    work = tmp_path / "work"
    work.mkdir()
    (work / "configs").symlink_to(ROOT / "configs")  # the Quick start's relative configs/ path
    tiny = " ".join(f"--set {item}" for item in [
        "data.name=idx", f"data.root={data}", "data.val_size=100", "model.hidden_size=8", "train.epochs=1",
        "train.batch_size=64", "train.device=cpu", "train.num_threads=1"])
    prelude = f"""set -euo pipefail
seqclf() {{
    case "$1" in
        train|bench|tune) command seqclf "$@" {tiny} $([[ $1 == bench ]] && echo --steps 5) \
            $([[ $1 == tune ]] && echo --trials 2 --jobs 1) ;;
        *) command seqclf "$@" ;;
    esac
}}
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    ran = 0
    for why, text in blocks():
        if why is not None or ("jq " in text and shutil.which("jq") is None):
            continue
        done = run_script(["bash", "-c", prelude + text], cwd=work, env=env, timeout=600)
        assert done.returncode == 0, f"README block failed:\n{text}\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stderr
        ran += 1
    assert ran >= 2 and list((work / "runs").glob("*/best.pt"))


@pytest.mark.parametrize("page", sorted(set(re.findall(r"\]\((docs/[^)#]+\.md)", README.read_text()))))
def test_linked_docs_exist_and_speak_to_users(page: str) -> None:
    text = (ROOT / page).read_text()
    for phrase in ("speed work", "this task", "lent to", "this machine"):  # written for users, not as a report
        assert phrase not in text, (page, phrase)
