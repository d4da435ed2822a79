"""The options and arguments several commands share, declared once: `options.JsonOption` in a command's
signature reads as what it is."""

from __future__ import annotations

import typer

FLAG = ""  # the metavar of an on/off flag: nothing after the option's name

SetOption = typer.Option(None, "--set", metavar="KEY=VALUE",
                         help="Override a config key (dotted, value parsed as YAML); repeatable, later wins.")
JsonOption = typer.Option(False, "--json", metavar=FLAG,
                          help="Print one JSON object on stdout; human output goes to stderr.")
QuietOption = typer.Option(False, "--quiet", "-q", metavar=FLAG, help="Print only errors.")
_CONFIG_HELP = "YAML config file, or the name of a shipped config (seqclf config list)."
ConfigOption = typer.Option(..., "--config", "-c", metavar="FILE|NAME", help=_CONFIG_HELP)
OptionalConfigOption = typer.Option(None, "--config", "-c", metavar="FILE|NAME", help=_CONFIG_HELP)
CheckpointArgument = typer.Argument(..., metavar="CHECKPOINT",
                                    help="A checkpoint written by seqclf train (best.pt or last.pt).")
InputsArgument = typer.Argument(..., metavar="INPUT",
                                help="Image files (PNG, JPEG, BMP, GIF, TIFF, WebP, ...), folders of them "
                                     "(recursively), IDX image files (plain or .gz), .npy arrays (H, W) or (N, H, W).")
