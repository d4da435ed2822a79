"""The command line: typer command groups over the library (parse, call one function, render)."""


def main() -> None:
    """The `seqclf` command (pyproject's entry point, `seqclf.cli:main` since the first release)."""
    from seqclf.cli.app import main as run

    run()
