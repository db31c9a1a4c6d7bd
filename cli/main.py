"""The `vqcodec` command: encode, decode, info, sample, convert, train.

Start-up is kept short: a subcommand's module is imported only when that subcommand runs (or `--help` lists
it), and those modules import the model code (torch) inside the command, so `vqcodec --help`, `vqcodec info`
and usage errors never import torch."""
from __future__ import annotations

import importlib
import logging
import signal

import click

from .options import is_verbose, reset_verbose, verbose_option

__all__ = ["cli", "main"]

_COMMANDS = {
    "encode": "commands:encode",
    "decode": "commands:decode",
    "info": "info:info",
    "sample": "commands:sample",
    "convert": "convert:convert",
    "train": "train:train",
}
"""Subcommand name -> "module:attribute" inside vqcodec.cli."""


class LazyGroup(click.Group):
    """A click group whose subcommands (`_COMMANDS`) are imported when first looked up, each given the shared
    -v/--verbose flag so that it works after the subcommand too."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        reset_verbose()  # a new command line (several may run in one process, e.g. click's CliRunner)
        return super().parse_args(ctx, args)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in _COMMANDS:
            return None
        module, attribute = _COMMANDS[cmd_name].split(":")
        command = getattr(importlib.import_module(f"{__package__}.{module}"), attribute)
        if not any(p.name == "verbose" for p in command.params):
            command.params.append(verbose_option())
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vqcodec")
def cli() -> None:
    """vqcodec: a learned codec for images and speech (residual VQ-VAE + range coding under integer priors).

    \b
    Examples:
      vqcodec encode photo.png -o photo.vq          # the top quality
      vqcodec encode photo.png -o small.vq -q 40    # quality 1..100: lower, fewer bytes
      vqcodec decode photo.vq -o photo_out.png
      vqcodec encode speech.wav -o speech.vq        # speech (any rate; coded at 16 kHz)
      vqcodec decode speech.vq -o speech_out.wav
      vqcodec info photo.vq                         # several files: a table; --json for scripts

    \b
    Exit status: 0 done, 1 bad input, 2 usage error, 3 encode --size/--bpp target not reachable (the smallest
    file is written), 128+N interrupted by signal N. -v (before or after the command) logs details.
    """
    logging.basicConfig(level=logging.INFO if is_verbose() else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


cli.params.append(verbose_option())


class Terminated(KeyboardInterrupt):
    """SIGTERM / SIGHUP raised as an interruption, so that an output being written is removed as on Ctrl-C
    (vqcodec.files.atomic_write) instead of the process dying with a temporary file left behind."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_terminated(signum: int, _frame) -> None:
    raise Terminated(signum)


def main() -> None:
    """Console entry point: one-line errors, exit 1 for bad input, 2 for usage errors, 3 for a size target that
    could not be met (encode --size / --bpp; the file is written), no traceback (with -v: the traceback);
    interrupted (Ctrl-C, SIGTERM, SIGHUP): no partial output, exit 128 + the signal's number."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_terminated)
    try:
        status = cli.main(standalone_mode=False)  # a command's ctx.exit(n) comes back as n
        if isinstance(status, int) and status:
            raise SystemExit(status)
    except click.UsageError as e:
        hint = f" (see '{e.ctx.command_path} --help')" if e.ctx else ""
        click.echo(f"vqcodec: usage error: {e.format_message()}{hint}", err=True)
        raise SystemExit(2) from None
    except click.ClickException as e:
        click.echo(f"vqcodec: error: {e.format_message()}", err=True)
        raise SystemExit(e.exit_code) from None
    except (click.Abort, KeyboardInterrupt) as e:  # click turns an interruption into Abort (cause kept)
        cause = e.__cause__ if isinstance(e, click.Abort) else e
        if not isinstance(cause, KeyboardInterrupt):
            click.echo("vqcodec: aborted", err=True)
            raise SystemExit(1) from None
        signum = cause.signum if isinstance(cause, Terminated) else signal.SIGINT
        click.echo(f"vqcodec: interrupted ({signal.Signals(signum).name}); no partial output was left", err=True)
        raise SystemExit(128 + signum) from None
    except BrokenPipeError:
        raise SystemExit(1) from None
    except (OSError, ValueError) as e:  # e.g. missing weights, unwritable folder, bad image
        if is_verbose():
            raise
        click.echo(f"vqcodec: error: {e}", err=True)
        raise SystemExit(1) from None
    except Exception as e:  # a bug: still one line, the traceback with -v
        if is_verbose():
            raise
        click.echo(f"vqcodec: internal error: {type(e).__name__}: {e} (run 'vqcodec -v ...' for the traceback)", err=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
