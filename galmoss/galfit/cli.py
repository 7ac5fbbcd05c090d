"""``galmoss galfit FILE... | @list.txt``: the command-line face of :func:`run_galfit`."""

from __future__ import annotations

import argparse
import sys


def add_galfit_parser(sub) -> None:
    """Add the ``galfit`` subcommand to the CLI's subparsers."""
    p = sub.add_parser(
        "galfit",
        help="fit GALFIT input files (feedmes) as batches and write GALFIT's image blocks, restart files and fit.log",
    )
    p.add_argument("files", nargs="+", help="feedme files, or @list.txt holding one path per line")
    p.add_argument("--output", default=".", help="folder for fit.log and results.{fits,csv} (default: here)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--iteration", type=int, default=200, help="iteration limit per galaxy")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument("--paths", choices=("feedme", "cwd"), default="feedme",
                   help="relative file names in a feedme are taken from its folder (default) or from here (GALFIT's rule)")
    p.add_argument("--galfit-convolution", action="store_true",
                   help="GALFIT's convention: models integrated over pixels, then convolved with the PSF image "
                        "(default: the PSF image holds the pixel, as a star's image does)")
    p.set_defaults(run=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    """Run; 0 when every feedme was fitted, 1 when some were not (listed), 2 when none was (or a usage error)."""
    from .feedme import FeedmeError
    from .run import run_galfit

    try:
        table = run_galfit(args.files, output=args.output, batch_size=args.batch_size, iteration=args.iteration,
                           device=args.device, base=args.paths, galfit_convolution=args.galfit_convolution)
    except (FeedmeError, FileNotFoundError, ValueError) as exc:
        print(f"galmoss galfit: {exc}", file=sys.stderr)
        return 2
    failed = [row for row in table if row["flag"] & NOT_FITTED]
    n = len(table)
    print(f"galmoss galfit: {n - len(failed)} of {n} feedmes fitted in {table.meta['elapsed']:.1f} s; "
          f"fit.log and results.fits in {args.output}")
    for row in failed:
        print(f"  not fitted: {row['feedme']}: {row['message']}", file=sys.stderr)
    if not failed:
        return 0
    return 2 if len(failed) == n else 1


def _not_fitted() -> int:
    from ..flags import Flag

    return int(Flag.read_error | Flag.fully_masked | Flag.fit_error | Flag.block_not_written)


#: Flags of a feedme whose fit or outputs are missing (the exit code counts them).
NOT_FITTED = _not_fitted()
