"""The ``facecodec`` command line. Thin: each command parses options and calls the library.

Commands live in one module per area, ``facecodec/cli/<area>_cmds.py``, each exporting a
``COMMANDS`` list; they are discovered here so that no area needs to know another.
Command modules import heavy libraries (torch, mediapipe) inside the command function,
so ``facecodec bitrate`` starts fast.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import click

from facecodec.errors import FacecodecError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="facecodec")
def cli() -> None:
    """facecodec: a talking face at a few kilobits per second."""


def _register() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.endswith("_cmds"):
            module = importlib.import_module(f"{__name__}.{info.name}")
            for command in module.COMMANDS:
                cli.add_command(command)


_register()


def main() -> None:
    """Console entry point: expected errors become one line on stderr and a non-zero exit."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("facecodec: aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except FacecodecError as e:
        click.echo(f"facecodec: error: {e}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("facecodec: interrupted", err=True)
        sys.exit(130)
