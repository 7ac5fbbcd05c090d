"""Command line: ``galmoss demo``, ``init``, ``fit``, ``collate``, ``flags`` (and the plot, report and galfit commands).

``galmoss demo`` makes a small set of mock galaxies (Sersic profiles drawn by
galmoss, convolved with a Moffat PSF, with sky noise), writes them as FITS
cutouts with sigma images and PSFs, fits them through the seed's API
(Dataset -> define_profiles -> Fitting -> fit -> uncertainty), writes the
results table and image blocks, and prints fitted against true values.

The CLI is a thin layer over the public API: ``main(argv)`` returns an exit code
and can be called in-process.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np



def _api():
    """The public API the demo and the commands use, from the modules themselves (never ``import galmoss``)."""
    from types import SimpleNamespace

    from . import profiles
    from .data import Dataset
    from .params import p
    from .pipeline import Fitting
    from .render import render

    return SimpleNamespace(lp=profiles, p=p, Dataset=Dataset, Fitting=Fitting, render=render)

def _demo(args: argparse.Namespace) -> int:
    import torch
    from astropy.io import fits

    gm = _api()

    out = Path(args.output)
    cutouts = out / "cutouts"
    cutouts.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    n = args.galaxies
    shape = (args.size, args.size)
    truth = {
        "cen_x": args.size / 2 + 0.5 + rng.uniform(-1, 1, n),
        "cen_y": args.size / 2 + 0.5 + rng.uniform(-1, 1, n),
        "pa": rng.uniform(-90, 90, n),
        "axis_r": rng.uniform(0.3, 0.95, n),
        "eff_r": np.exp(rng.uniform(np.log(3.0), np.log(10.0), n)),
        "mag": rng.uniform(16.0, 18.0, n),
        "ser_n": np.exp(rng.uniform(np.log(0.7), np.log(4.0), n)),
    }
    yy, xx = np.mgrid[-12:13, -12:13]
    psf = (1 + (xx**2 + yy**2) / 2.0**2) ** -3.5
    psf /= psf.sum()
    galaxies = gm.lp.Sersic(cen_x=gm.p(truth["cen_x"]), cen_y=gm.p(truth["cen_y"]), pa=gm.p(truth["pa"]),
                            axis_r=gm.p(truth["axis_r"]), eff_r=gm.p(truth["eff_r"]), mag=gm.p(truth["mag"], M0=22.5),
                            ser_n=gm.p(truth["ser_n"]))
    clean = gm.render(galaxies, shape, psf=psf, dtype=torch.float64).numpy()
    sky_sigma = 0.05
    names = [f"demo{i:03d}" for i in range(n)]
    for i, name in enumerate(names):
        image = clean[i] + rng.normal(0, sky_sigma, shape)
        fits.PrimaryHDU(image.astype(np.float32)).writeto(cutouts / f"{name}_image.fits", overwrite=True)
        fits.PrimaryHDU(np.full(shape, sky_sigma, np.float32)).writeto(cutouts / f"{name}_sigma.fits", overwrite=True)
        fits.PrimaryHDU(psf.astype(np.float32)).writeto(cutouts / f"{name}_psf.fits", overwrite=True)
    print(f"wrote {n} mock galaxies ({args.size}x{args.size}, Moffat PSF, sky sigma {sky_sigma}) to {cutouts}")

    # the seed's API, with starts 10-30 % off as a catalogue would give them
    sign = lambda: rng.choice([-1.0, 1.0], n)  # noqa: E731
    sersic = gm.lp.Sersic(
        cen_x=gm.p(truth["cen_x"] + sign() * rng.uniform(0.5, 1.5, n)),
        cen_y=gm.p(truth["cen_y"] + sign() * rng.uniform(0.5, 1.5, n)),
        pa=gm.p(truth["pa"] + sign() * rng.uniform(5, 20, n), angle=True),
        axis_r=gm.p(np.clip(truth["axis_r"] + sign() * 0.1, 0.1, 1.0)),
        eff_r=gm.p(truth["eff_r"] * (1 + sign() * 0.2)),
        mag=gm.p(truth["mag"] + sign() * 0.2, M0=22.5),
        ser_n=gm.p(truth["ser_n"] * (1 + sign() * 0.2), log=True),
    )
    dataset = gm.Dataset(
        galaxy_index=names,
        image_path=[str(cutouts / f"{x}_image.fits") for x in names],
        sigma_path=[str(cutouts / f"{x}_sigma.fits") for x in names],
        psf_path=[str(cutouts / f"{x}_psf.fits") for x in names],
        img_block_path=str(out / "image_blocks"),
        result_path=str(out),
    )
    dataset.define_profiles(sersic=sersic)
    fitting = gm.Fitting(dataset=dataset, batch_size=args.batch_size, iteration=200, device=args.device)
    t0 = time.perf_counter()
    fitting.fit(overwrite=True)  # the demo's own folder: a demo run again (other options) replaces the last
    results = fitting.uncertainty(method="covar_mat")
    elapsed = time.perf_counter() - t0
    print(f"fitted {n} galaxies in {elapsed:.1f} s on {fitting.device} ({n / elapsed:.1f} galaxies/s)\n")
    print(f"{'galaxy':9s} {'param':7s} {'true':>9s} {'fitted':>9s} {'error':>8s} {'pull':>6s}")
    for i, name in enumerate(names[: args.show]):
        for slot in ("mag", "eff_r", "ser_n", "axis_r"):
            fit, err = results[f"sersic_{slot}"][i], results[f"sersic_{slot}_err"][i]
            print(f"{name:9s} {slot:7s} {truth[slot][i]:9.4f} {fit:9.4f} {err:8.4f} {(fit - truth[slot][i]) / err:6.2f}")
    ok = int(np.sum(results["converged"]))
    print(f"\n{ok}/{n} converged; median reduced chi2 {np.nanmedian(results['reduced_chi2']):.3f}")
    print(f"results: {out / 'results.fits'} and {out / 'results.csv'}; image blocks: {out / 'image_blocks'}")
    pair_ok = _demo_neighbour(out, psf, rng, args.device)
    from .plot import write_report

    print(f"report: {write_report(out)}")
    return 0 if ok == n and pair_ok else 1


def _demo_neighbour(out: Path, psf: np.ndarray, rng: np.random.Generator, device) -> bool:
    """A galaxy with a neighbour of equal brightness 13 px away, fitted with no mask and no starts.

    ``Dataset(auto_mask=True, neighbours="fit")`` finds the neighbour
    (photutils), gives it its own Sersic component and fits both; the same
    galaxy fitted without a mask is shown for comparison. Skipped (True) when
    photutils is not installed.
    """
    import torch
    from astropy.io import fits

    gm = _api()

    try:
        from .auto.segment import photutils_or_raise

        photutils_or_raise()
    except ImportError as exc:
        print(f"\nneighbour demo skipped: {exc}")
        return True
    shape = (64, 64)
    truth = {"cen_x": 30.3, "cen_y": 32.8, "pa": 35.0, "axis_r": 0.6, "eff_r": 5.0, "mag": 17.0, "ser_n": 1.5}
    near = {"cen_x": 43.0, "cen_y": 35.5, "pa": -40.0, "axis_r": 0.7, "eff_r": 3.5, "mag": 17.0, "ser_n": 1.0}
    profiles = {f"c{i}": gm.lp.Sersic(**{k: gm.p(v, M0=22.5) if k == "mag" else gm.p(v) for k, v in t.items()})
                for i, t in enumerate((truth, near))}
    clean = gm.render(profiles, shape, psf=psf, dtype=torch.float64).numpy()[0]
    sky_sigma = 0.05
    path = out / "cutouts" / "pair_image.fits"
    fits.PrimaryHDU((clean + 0.1 + rng.normal(0, sky_sigma, shape)).astype(np.float32)).writeto(path, overwrite=True)
    fits.PrimaryHDU(psf.astype(np.float32)).writeto(out / "cutouts" / "pair_psf.fits", overwrite=True)
    print(f"\na galaxy with a neighbour of equal brightness {np.hypot(43.0 - 30.3, 35.5 - 32.8):.0f} px away "
          f"({path}): no mask, no sigma image, no starts")
    rows = {}
    for label, options in (("no mask", {}), ("auto_mask + neighbours='fit'", {"auto_mask": True, "neighbours": "fit"})):
        dataset = gm.Dataset(galaxy_index=["pair"], image_path=[str(path)],
                             psf_path=[str(out / "cutouts" / "pair_psf.fits")], **options)
        dataset.define_profiles(galaxy=gm.lp.Sersic(mag=gm.p(M0=22.5)), sky=gm.lp.Sky())
        fitting = gm.Fitting(dataset=dataset, batch_size=1, device=device, progress=False)
        fitting.fit()
        rows[label] = fitting.uncertainty()[0]
    print(f"  {'fit':30s} {'r_e':>6s} {'mag':>7s} {'n':>5s} {'red. chi2':>9s}  neighbours fitted")
    print(f"  {'truth':30s} {truth['eff_r']:6.2f} {truth['mag']:7.3f} {truth['ser_n']:5.2f}")
    for label, row in rows.items():
        fitted = int(row["n_neighbours_fitted"]) if "n_neighbours_fitted" in row.colnames else 0
        print(f"  {label:30s} {row['galaxy_eff_r']:6.2f} {row['galaxy_mag']:7.3f} {row['galaxy_ser_n']:5.2f} "
              f"{row['reduced_chi2']:9.2f}  {fitted}")
    row = rows["auto_mask + neighbours='fit'"]
    print(f"  the neighbour's own component: centre ({row['nb1_cen_x']:.1f}, {row['nb1_cen_y']:.1f}) "
          f"(true ({near['cen_x']:.1f}, {near['cen_y']:.1f})), mag {row['nb1_mag']:.3f} (true {near['mag']:.3f}), "
          f"r_e {row['nb1_eff_r']:.2f} (true {near['eff_r']:.2f})")
    return bool(abs(row["galaxy_eff_r"] / truth["eff_r"] - 1) < 0.1 and int(row["n_neighbours_fitted"]) == 1)


def _flags(args: argparse.Namespace) -> int:
    from .flags import decode, flag_table

    if args.value is not None:
        print(", ".join(decode(args.value)) or "0: no flag set")
        return 0
    table = flag_table()
    value_width = max(len(str(value)) for value in table["value"])
    name_width = max(len(name) for name in table["name"])
    for row in table:
        print(f"{row['value']:{value_width}d}  {row['name']:{name_width}s}  {row['description']}")
    return 0


class UsageError(ValueError):
    """A mistake in what the user typed or gave; said in one line, exit code 2."""


def _results_folder(value: str, command: str) -> str:
    """The results folder a ``plot`` or ``report`` argument names (a run's results.fits/csv means its folder)."""
    path = Path(value)
    if path.is_file():
        if path.name in ("results.fits", "results.csv"):
            return str(path.parent)
        raise UsageError(f"'{path}' is a file, not a galmoss results folder; give the folder a run wrote "
                         f"(its result_path, holding results.fits), e.g. galmoss {command} results/")
    return value


@contextlib.contextmanager
def _reading(results: str):
    """Name the results folder in an error that came from a reader (astropy, pyarrow) without naming it."""
    from .errors import GalmossError

    try:
        yield
    except (GalmossError, KeyError, FileNotFoundError, PermissionError):
        raise
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the galmoss results in '{results}' ({_one_line(exc)}); give the folder a "
                         "galmoss run wrote, with its results.fits or results.csv intact") from exc


def _plot(args: argparse.Namespace) -> int:
    from .io.naming import safe_file_names
    from .plot import plot_fit

    results = _results_folder(args.results, "plot")
    # a galaxy name is not a path: "../x" must not write outside the current folder
    out = Path(args.out) if args.out else Path(safe_file_names([str(args.galaxy)], suffix="_fit.png")[0])
    with _reading(results):
        plot_fit(results, args.galaxy, blocks=args.blocks, out=out, dpi=args.dpi)
    print(f"wrote {out}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from .plot import write_report

    results = _results_folder(args.results, "report")
    with _reading(results):
        path = write_report(results, args.out, blocks=args.blocks)
    print(f"report: {path}")
    return 0


def _shard(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard {text!r}: give K/N, two whole numbers, e.g. --shard 3/8") from None
    if not 1 <= k <= n:
        raise UsageError(f"--shard {text}: K must be between 1 and N ({n}); e.g. --shard 1/{max(n, 1)} up to "
                         f"--shard {max(n, 1)}/{max(n, 1)}")
    return k, n


def _dask(text: str | None) -> str | int | None:
    """The scheduler address, or the number of local workers of ``local:N``; dask checked importable."""
    if not text:
        return None
    try:
        import dask.distributed  # noqa: F401
    except ImportError:
        # with this galmoss installed, pip keeps it and adds the extra's packages
        raise UsageError(f"--dask {text}: dask is not installed; pip install \"galmoss[distributed]\" where this "
                         "galmoss is installed (or pip install \"dask[distributed]\"), or leave --dask out") from None
    if text.startswith("local:"):
        count = text.split(":", 1)[1]
        if not count.isdigit() or int(count) < 1:
            raise UsageError(f"--dask {text}: give the number of local workers, at least 1, e.g. --dask local:4")
        return int(count)
    return text


def _fit(args: argparse.Namespace) -> int:
    from .pipeline.job import JOB_ONLY_FIT_KEYS, load_job

    shard, dask = _shard(args.shard), _dask(args.dask)
    if args.resume and args.overwrite:
        raise UsageError("--resume keeps the parts that --overwrite removes; give one of them")
    job_path = Path(args.job)
    if job_path.is_file():
        try:
            job_path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UsageError(f"job file '{job_path}' is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    job = load_job(args.job)
    if args.dry_run:
        gm = _api()

        fit = {k: v for k, v in job.fit.items() if k not in JOB_ONLY_FIT_KEYS}
        # every check a run makes before its first fit (the output folder, one galaxy read), fitting nothing
        gm.Fitting(job.dataset, progress=False, **fit).check(resume=args.resume, shard=shard,
                                                             overwrite=args.overwrite)
        print(job.describe())
        print("dry run: the job is valid; nothing was fitted")
        return 0
    return _run_job(job, args, shard, dask)


def _run_job(job, args: argparse.Namespace, shard, dask) -> int:
    gm = _api()

    from .errors import GalmossError
    from .io.naming import open_append

    log_name = f"fit-{shard[0]}of{shard[1]}.log" if shard else "fit.log"
    try:
        job.output.mkdir(parents=True, exist_ok=True)
        # never through a symlink: fit.log is appended to, and a link could point anywhere
        stream = open_append(job.output / log_name)
    except GalmossError:
        raise
    except OSError as exc:
        raise UsageError(f"output folder '{job.output}' cannot be written ({getattr(exc, 'strerror', None) or exc}); "
                         f"choose another [output] folder in {job.path} or make it writable "
                         "(nothing has been fitted)") from None
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("galmoss")
    logger.addHandler(handler)
    handler.setLevel(logging.INFO)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    client = cluster = None
    try:
        if dask is not None:
            from dask.distributed import Client, LocalCluster

            if isinstance(dask, int):
                cluster = LocalCluster(n_workers=dask, threads_per_worker=1, dashboard_address=None)
                client = Client(cluster)
            else:
                client = Client(dask)
        fit = dict(job.fit)
        uncertainty = fit.pop("uncertainty", "covar_mat")
        n_resample = fit.pop("n_resample", 100)
        seed = fit.pop("seed", 0)
        fitting = gm.Fitting(job.dataset, client=client, progress=None if not args.quiet else False, **fit)
        fitting.resume_command = f"galmoss fit {args.job} --resume" + (f" --shard {args.shard}" if shard else "")
        t0 = time.perf_counter()
        try:
            results = fitting.fit(resume=args.resume, shard=shard, overwrite=args.overwrite)
        except KeyboardInterrupt:
            kept = 0 if fitting.store is None else int(np.count_nonzero(fitting.store.done))
            print(f"galmoss fit: interrupted; {kept} galaxies fitted and kept in {job.output}; resume with: "
                  f"{fitting.resume_command}", file=sys.stderr)
            return 130
        if uncertainty != "none":
            results = fitting.uncertainty(uncertainty, n_resample=n_resample, seed=seed)
        elapsed = time.perf_counter() - t0
        done = int(np.sum(np.isfinite(np.asarray(results["reduced_chi2"] if "reduced_chi2" in results.colnames
                                                  else results["reduced_deviance"]))))
        print(f"fitted {len(results)} galaxies in {elapsed:.1f} s ({done} with a result); "
              + (f"parts in {job.output / 'parts'} (merge with: galmoss collate {job.output})" if shard
                 else f"results in {job.output / 'results.fits'}"))
    finally:
        logger.removeHandler(handler)
        handler.close()
        stream.close()
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    return 0


def _collate(args: argparse.Namespace) -> int:
    from .errors import GalmossError
    from .pipeline.collate import collate

    folder = Path(args.folder)
    if not folder.is_dir():
        raise UsageError(f"'{folder}' is not a folder; give the output folder the shards wrote into "
                         "(the [output] folder of the job)")
    try:
        report = collate(folder)
    except GalmossError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:  # a run.json or galaxies file cut short or edited
        reason = exc.args[0] if isinstance(exc, KeyError) and exc.args else (getattr(exc, "strerror", None) or exc)
        raise UsageError(f"'{folder}' is not a complete galmoss result folder ({type(exc).__name__}: {reason}); "
                         "run the job's shards again into it, or give the right folder") from None
    print(report.summary())
    return 1 if (report.missing or report.unreadable) and not args.allow_missing else 0


def _init(args: argparse.Namespace) -> int:
    from .io.jobfile import build_catalog, job_template

    job = Path(args.job)
    catalog = Path(args.catalog)
    for path, what in ((job, "job file"), (catalog if args.images else None, "catalogue")):
        if path is not None and path.exists():
            raise UsageError(f"{what} '{path}' already exists; galmoss init never writes over a file: give another "
                             f"name ({'--job' if what == 'job file' else '--catalog'}) or remove it")
    for path in (job, catalog):
        path.parent.mkdir(parents=True, exist_ok=True)
    if args.images:
        n = build_catalog(args.images, catalog)
        print(f"wrote {catalog}: {n} galaxies (galaxy_index, image); add sigma, psf or mask columns as you have them")
    relative = os.path.relpath(catalog.resolve(), job.parent.resolve())
    with open(job, "x", encoding="utf-8") as fh:  # "x": never over an existing file
        fh.write(job_template(Path(relative).as_posix()))
    print(f"wrote {job}: every key with its default; check it with: galmoss fit {job} --dry-run")
    return 0


def _one_line(exc: BaseException) -> str:
    """An exception as one line that names what went wrong (and, for a bare OS error, what to check)."""
    import errno

    if isinstance(exc, KeyError) and exc.args:
        text = str(exc.args[0])
    elif isinstance(exc, UnicodeDecodeError):
        text = f"a file is not UTF-8 text ({exc}); save it as UTF-8"
    elif isinstance(exc, OSError) and type(exc).__module__ == "builtins" and exc.filename is not None:
        hint = {errno.EACCES: "check its permissions or choose another path",
                errno.EPERM: "check its permissions or choose another path",
                errno.EROFS: "the disk is read-only: choose another path",
                errno.ENOENT: "check the path",
                errno.ENOSPC: "the disk is full: free space or choose another path"}.get(exc.errno, "check the path")
        text = f"'{exc.filename}': {exc.strerror or exc}; {hint}"
    elif isinstance(exc, ImportError):
        text = f"{exc}; install it (pip install \"galmoss[all]\" installs every optional package)"
    else:
        text = str(exc) or type(exc).__name__
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


class _Parser(argparse.ArgumentParser):
    """Every (sub)command shows its defaults in --help and says a usage error in one line."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message}; see {self.prog} --help\n")


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit code.

    A mistake in the user's input (a file, key, galaxy or option) is printed as one line
    on stderr, exit code 2; ``--debug`` prints the traceback too.
    """
    from . import __version__

    parser = _Parser(prog="galmoss", description="Batched galaxy light-profile fitting.")
    parser.add_argument("--version", action="version", version=f"galmoss {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser("demo", help="make mock galaxies, fit them end to end, print the results")
    demo.add_argument("--galaxies", type=int, default=16, help="number of mock galaxies")
    demo.add_argument("--size", type=int, default=64, help="cutout size in pixels")
    demo.add_argument("--batch-size", type=int, default=16, help="galaxies fitted together")
    demo.add_argument("--output", default="galmoss_demo_output", help="folder for the cutouts, results and report")
    demo.add_argument("--device", default=None, help="cpu or cuda (None: cuda when present)")
    demo.add_argument("--seed", type=int, default=1, help="random seed of the mocks")
    demo.add_argument("--show", type=int, default=3, help="galaxies to print")
    demo.set_defaults(run=_demo)
    fit = sub.add_parser("fit", help="run a job file (catalogue in, results out as the run goes)")
    fit.add_argument("job", help="the job file (TOML); every key: docs/jobfile.md, or galmoss init")
    fit.add_argument("--dry-run", action="store_true", help="check the job and print the model; fit nothing")
    fit.add_argument("--shard", default=None, help="K/N: fit the K-th of N parts of the catalogue (parts only)")
    fit.add_argument("--resume", action="store_true", help="keep the galaxies already in the output's parts")
    fit.add_argument("--overwrite", action="store_true",
                     help="remove galmoss's outputs in the output folder (parts, run.json, galaxies.parquet, "
                          "results.*) first")
    fit.add_argument("--dask", default=None, help="a dask scheduler ADDRESS, or local:N for N local workers")
    fit.add_argument("--quiet", action="store_true", help="no progress bar")
    fit.set_defaults(run=_fit)
    collate = sub.add_parser("collate", help="merge the result parts of shards into results.fits / .csv")
    collate.add_argument("folder", help="the output folder the shards wrote into")
    collate.add_argument("--allow-missing", action="store_true", help="exit 0 even when galaxies are missing")
    collate.set_defaults(run=_collate)
    flags = sub.add_parser("flags", help="list the result flags, or decode a flag value")
    flags.add_argument("value", nargs="?", type=int, help="a flag value to decode (None: list every flag)")
    flags.set_defaults(run=_flags)
    plot = sub.add_parser("plot", help="draw one galaxy's fit (data, model, residual, profile) from a results folder")
    plot.add_argument("results", help="the run's results folder (result_path, or galmoss galfit's --output)")
    plot.add_argument("--galaxy", required=True, help="the galaxy's galaxy_index")
    plot.add_argument("--out", default=None, help="image file to write (None: <galaxy>_fit.png, a safe file name)")
    plot.add_argument("--blocks", default=None, help="image-block folder, if not found from the results folder")
    plot.add_argument("--dpi", type=int, default=100, help="resolution of the image")
    plot.set_defaults(run=_plot)
    report = sub.add_parser("report", help="write a self-contained HTML report of a run")
    report.add_argument("results", help="the run's results folder (result_path, or galmoss galfit's --output)")
    report.add_argument("--out", default=None, help="HTML file to write (None: RESULTS/report.html)")
    report.add_argument("--blocks", default=None, help="image-block folder, if not found from the results folder")
    report.set_defaults(run=_report)
    init = sub.add_parser("init", help="write a commented job file (every key and its default), and a catalogue")
    init.add_argument("--images", default=None,
                      help="a glob of FITS cutouts, quoted ('cutouts/*.fits'): write a catalogue of them too")
    init.add_argument("--job", default="job.toml", help="the job file to write (never over an existing file)")
    init.add_argument("--catalog", default="catalog.csv", help="the catalogue the job reads (written with --images)")
    init.set_defaults(run=_init)
    from .galfit.cli import add_galfit_parser

    add_galfit_parser(sub)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, a usage error: a code, not an exit, for in-process callers
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    from .errors import GalmossError

    try:
        return args.run(args)
    except (GalmossError, UsageError, ValueError, KeyError, OSError, ImportError) as exc:
        # input the user gave (a file, key, galaxy, option): one line and the fix, no traceback
        if args.debug:
            import traceback

            traceback.print_exc()
        print(f"galmoss {args.command}: {_one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
