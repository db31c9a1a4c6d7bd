"""The `vqcodec` command: encode, decode, info, sample, convert, train."""
from __future__ import annotations

import logging
import signal
import sys

import click

from .commands import decode, encode, info, sample
from .convert import convert
from .train import train

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vqcodec")
@click.option("-v", "--verbose", is_flag=True, help="Log progress details to stderr.")
def cli(verbose: bool) -> None:
    """vqcodec: a learned codec for images and speech (residual VQ-VAE + range coding under integer priors).

    \b
    Examples:
      vqcodec encode photo.png -o photo.vq          # the top quality
      vqcodec encode photo.png -o small.vq -q 40    # quality 1..100: lower, fewer bytes
      vqcodec decode photo.vq -o photo_out.png
      vqcodec encode speech.wav -o speech.vq        # speech (any rate; coded at 16 kHz)
      vqcodec decode speech.vq -o speech_out.wav
      vqcodec info photo.vq
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


for _cmd in (encode, decode, info, sample, convert, train):
    cli.add_command(_cmd)


class Terminated(KeyboardInterrupt):
    """SIGTERM / SIGHUP raised as an interruption, so that an output being written is removed as on Ctrl-C
    (vqcodec.files.atomic_write) instead of the process dying with a temporary file left behind."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_terminated(signum: int, _frame) -> None:
    raise Terminated(signum)


def main() -> None:
    """Console entry point: one-line errors, exit 1 for bad input, 2 for usage errors, no traceback;
    interrupted (Ctrl-C, SIGTERM, SIGHUP): no partial output, exit 128 + the signal's number."""
    verbose = "-v" in sys.argv[1:2] or "--verbose" in sys.argv[1:2]
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_terminated)
    try:
        cli.main(standalone_mode=False)
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
        if verbose:
            raise
        click.echo(f"vqcodec: error: {e}", err=True)
        raise SystemExit(1) from None
    except Exception as e:  # a bug: still one line, the traceback with -v
        if verbose:
            raise
        click.echo(f"vqcodec: internal error: {type(e).__name__}: {e} (run 'vqcodec -v ...' for the traceback)", err=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
