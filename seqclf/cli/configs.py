"""`seqclf config ...`: show, check, compare, list and copy configs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from seqclf.cli import options
from seqclf.cli.common import emit_json, reported, sub_app
from seqclf.cli.examples import examples
from seqclf.config.limits import check_path
from seqclf.console import Output
from seqclf.errors import SeqclfError

config_app = sub_app("Show, check, compare, list and copy configs.")


@config_app.command("show", epilog=examples("config show"))
def config_show(
    config: Optional[Path] = options.OptionalConfigOption,
    set_: Optional[List[str]] = options.SetOption,
) -> None:
    """Print the resolved config (defaults, then the file if given, then each --set; validated) as YAML."""
    from seqclf.config import to_yaml

    out = Output()
    with reported(out):
        text = to_yaml(resolved(config, set_ or []))
    sys.stdout.write(text)


def resolved(path: Path | None, overrides: list[str]):  # -> Config
    """What `config show` prints: the validated config, `hidden_size: auto` resolved where the data's shape
    is known without reading it (torchvision's sets: 28x28, 10 classes)."""
    from seqclf.config import AUTO, load_config

    cfg = load_config(path, overrides)
    if cfg.model.hidden_size == AUTO and cfg.data.name not in ("idx", "folder"):  # 10 classes known unread
        from seqclf.data.views import view_shape
        from seqclf.model.classifier import resolve_hidden_size

        cfg = resolve_hidden_size(cfg, view_shape(cfg.data.sequence)[1])
    return cfg


@config_app.command("validate", epilog=examples("config validate"))
def config_validate(
    files: List[Path] = typer.Argument(..., metavar="FILE", help="YAML configs to check."),
    quiet: bool = options.QuietOption,
) -> None:
    """Check config files (keys, types, ranges) without training: exit 0 if all are valid, 2 if not."""
    from seqclf.config import load_config

    out = Output(quiet=quiet)
    with reported(out):
        invalid = 0
        for path in files:
            try:
                load_config(path)
                out.info(f"{path}: ok")
            except SeqclfError as exc:
                out.error(str(exc))
                invalid += 1
        if invalid:
            raise SeqclfError(f"{invalid} of {len(files)} config files are invalid")


@config_app.command("diff", epilog=examples("config diff"))
def config_diff(
    run_a: Path = typer.Argument(..., metavar="RUN_A", help="A run directory, a YAML file or a shipped config name."),
    run_b: Path = typer.Argument(..., metavar="RUN_B", help="Another run directory, YAML file or config name."),
    json_: bool = typer.Option(False, "--json", metavar=options.FLAG,
                               help="Print {key: [value in A, value in B]} as JSON."),
) -> None:
    """Show the config keys that differ between two runs or configs, each side resolved as config show does."""
    from seqclf.config import config_diff as diff
    from seqclf.store.rundir import run_config_path

    out = Output(json_mode=json_)
    with reported(out):
        changes = diff(resolved(run_config_path(check_path("RUN_A", run_a)), []),
                       resolved(run_config_path(check_path("RUN_B", run_b)), []))
    if json_:
        emit_json(changes)
    elif not changes:
        out.info(f"no differences: {run_a} and {run_b} have the same config")
    else:
        shown = lambda value: json.dumps(value) if value is None or isinstance(value, bool) else str(value)  # noqa: E731
        out.table(None, ["key", str(run_a), str(run_b)], [[key, shown(a), shown(b)] for key, (a, b) in changes.items()])


@config_app.command("list", epilog=examples("config list"))
def config_list() -> None:
    """List the configs shipped with seqclf: use one by name (--config lstm) or copy it (seqclf config cp)."""
    from seqclf.config import shipped

    Output().table(None, ["name", "what it trains"], [[name, shipped.describe(name)] for name in shipped.names()])


@config_app.command("cp", epilog=examples("config cp"))
def config_cp(
    name: str = typer.Argument(..., metavar="NAME", help="A shipped config (seqclf config list)."),
    destination: Path = typer.Argument(..., metavar="DEST", help="File to write, or an existing folder."),
) -> None:
    """Copy a shipped config to a file to edit (an existing file is never overwritten)."""
    from seqclf.config import shipped

    out = Output()
    with reported(out):
        written = shipped.copy(name, destination)
    out.info(f"wrote {written}; train with: seqclf train --config {written}")
