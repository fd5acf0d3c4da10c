"""The ``facecodec`` command line. Thin: each command parses options and calls the library.

Commands live in one module per area, ``facecodec/cli/<area>_cmds.py``, each exporting a
``COMMANDS`` list; they are discovered here so that no area needs to know another.
Command modules import heavy libraries (torch, mediapipe) inside the command function,
so ``facecodec bitrate`` starts fast.
"""

from __future__ import annotations

import importlib
import pkgutil
import signal
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


class Interrupted(BaseException):
    """SIGTERM or SIGINT arrived. Raised in the main thread by the handler main() installs,
    so that the writers' ``except BaseException`` / ``finally`` remove their temporary
    ``.part`` files; a BaseException (not KeyboardInterrupt, which click turns into an
    "Aborted!" with a blank line) so that no ``except Exception`` swallows it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _interrupt(signum: int, _frame: object) -> None:
    # a second signal (cleanup stuck?) ends the process the default way, at once
    signal.signal(signum, signal.SIG_DFL)
    raise Interrupted(signum)


def main() -> None:
    """Console entry point: expected errors become one line on stderr and a non-zero exit;
    SIGTERM and SIGINT end the command with its temporary files removed, "interrupted" on
    stderr and the exit status 128 + the signal number (143, 130), like a shell's."""
    # restored on the way out: main() also runs in-process (tests, a host application)
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        _run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run() -> None:
    try:
        cli.main(standalone_mode=False)
    except Interrupted as e:
        click.echo("facecodec: interrupted", err=True)
        sys.exit(128 + e.signum)
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
