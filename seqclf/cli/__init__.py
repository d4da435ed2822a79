"""The command line: typer command groups over the library (parse, call one function, render)."""
