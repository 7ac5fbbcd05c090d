"""The run options of a fit, checked in one place: :class:`RunOptions`.

``gm.Fitting``'s keywords and a job file's ``[fit]`` table (``galmoss fit``, and
its ``--dry-run``) are both turned into a :class:`RunOptions`, whose
``__post_init__`` checks every option (the device's availability included) and
fills the defaults that depend on others (the iteration limit from the
optimiser settings, the Jacobian chunk from the device). A mistake is a
:class:`~galmoss.errors.ConfigError` naming the option and the fix, raised
before anything is read or fitted. The options are written into ``run.json``
(:meth:`RunOptions.describe`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError, ConfigTypeError
from ..fitting.adam import AdamSettings
from ..fitting.lm import LMSettings
from ..settings import RenderSettings

__all__ = ["RunOptions", "default_device"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "single": torch.float32, "double": torch.float64}
#: the settings objects an option may hold, by option name
SETTINGS_TYPES = {"render_settings": RenderSettings, "lm_settings": LMSettings, "adam_settings": AdamSettings}


def default_device() -> torch.device:
    """CUDA when present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _count(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _device(value) -> torch.device:
    if value is None:
        return default_device()
    try:
        dev = torch.device(value)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device={value!r} is not a device; use 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device={value!r} but this machine has no CUDA device; use device='cpu' "
                              "(or leave device out: CUDA when present, else the CPU)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device={value!r} but only {torch.cuda.device_count()} CUDA devices exist; "
                              f"use 'cuda:0' .. 'cuda:{torch.cuda.device_count() - 1}'")
    elif dev.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ConfigError(f"device={value!r} but MPS is not available here; use device='cpu'")
    elif dev.type != "cpu":
        raise ConfigError(f"device={value!r} is not supported; use 'cpu', 'cuda' or 'cuda:N'")
    return dev


def _dtype(value) -> torch.dtype:
    if value is None:
        return torch.float32
    if isinstance(value, str) and value.lower() in _DTYPES:
        return _DTYPES[value.lower()]
    if value in (torch.float32, torch.float64):
        return value
    if value in (np.float32, np.float64):
        return torch.float32 if value is np.float32 else torch.float64
    raise ConfigError(
        f"dtype={value!r} is not supported; use torch.float32 (fast, default) or torch.float64 "
        "(half precision cannot hold a chi2 of 10^4 pixels)"
    )


@dataclass(frozen=True)
class RunOptions:
    """How a run fits: every option of ``gm.Fitting`` but the dataset and the dask client.

    Parameters are those of :class:`~galmoss.pipeline.fitting.Fitting`. After
    construction every field holds its checked, resolved value: ``method`` in
    lower case, ``likelihood`` the likelihood's name, ``device`` a
    ``torch.device``, ``dtype`` a ``torch.dtype``, ``iteration`` an integer,
    ``lm_settings`` / ``adam_settings`` with that iteration limit, and
    ``jacobian_chunk`` an integer (32 on the CPU, 512 on a GPU by default).
    ``render_settings`` stays None when not given (the dataset's own are used).

    Raises
    ------
    ConfigError
        An option that cannot be used, naming it and the fix.
    """

    batch_size: int = 64
    iteration: int | None = None
    method: str = "LM"
    likelihood: str = "chi2"
    device: torch.device | str | None = None
    dtype: torch.dtype | str | None = None
    render_settings: RenderSettings | None = None
    lm_settings: LMSettings | None = None
    adam_settings: AdamSettings | None = None
    jacobian_chunk: int | None = None
    progress: bool | None = None
    restarts: bool = True
    read_workers: int = 2
    prepare_workers: int = 0
    pad_shapes: bool = True
    threads: int | None = 1
    priors: str | None = None

    def __post_init__(self) -> None:
        from ..fitting.likelihoods import get_likelihood

        def put(name, value):
            object.__setattr__(self, name, value)

        put("batch_size", _count("batch_size", self.batch_size))
        if str(self.method).lower() not in ("lm", "adam"):
            raise ConfigError(f"method={self.method!r}; choose 'LM' (Levenberg-Marquardt) or 'adam'")
        put("method", str(self.method).lower())
        for name, kind in SETTINGS_TYPES.items():
            value = getattr(self, name)
            if value is not None and not isinstance(value, kind):
                raise ConfigTypeError(f"{name} must be a {kind.__name__}, got {type(value).__name__}")
        lm, adam = self.lm_settings or LMSettings(), self.adam_settings or AdamSettings()
        iteration = self.iteration
        if iteration is None:
            iteration = (lm.max_iterations if self.lm_settings is not None
                         else adam.max_iterations if self.adam_settings is not None else 200)
        iteration = _count("iteration", iteration)
        for given, what in ((self.lm_settings, "lm_settings"), (self.adam_settings, "adam_settings")):
            if given is not None and given.max_iterations not in (iteration, type(given)().max_iterations):
                raise ConfigError(f"iteration={iteration} but {what}.max_iterations={given.max_iterations}; "
                                  "give the limit once")
        put("iteration", iteration)
        put("lm_settings", dataclasses.replace(lm, max_iterations=iteration))
        put("adam_settings", dataclasses.replace(adam, max_iterations=iteration))
        try:
            put("likelihood", get_likelihood(self.likelihood).name)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        put("device", _device(self.device))
        put("dtype", _dtype(self.dtype))
        chunk = self.jacobian_chunk
        put("jacobian_chunk", _count("jacobian_chunk", chunk) if chunk is not None
            else (32 if self.device.type == "cpu" else 512))
        put("restarts", bool(self.restarts))
        put("read_workers", _count("read_workers", self.read_workers))
        put("prepare_workers", _count("prepare_workers", self.prepare_workers, minimum=0))
        put("pad_shapes", bool(self.pad_shapes))
        put("threads", _count("threads", self.threads) if self.threads is not None else None)
        from ..params.priors import PRESETS

        if self.priors is not None:
            if not isinstance(self.priors, str) or self.priors.lower() not in PRESETS:
                raise ConfigError(f"priors={self.priors!r}: choose one of {', '.join(sorted(PRESETS))} (a name), or "
                                  "leave it out (no preset; priors given on parameters still apply)")
            put("priors", self.priors.lower())

    @classmethod
    def fields(cls) -> list[str]:
        """The option names (a job file's ``[fit]`` keys are these)."""
        return [f.name for f in dataclasses.fields(cls)]

    #: options that change a galaxy's fitted values (a resume with others would mix two fits in one table);
    #: the rest (batch_size, threads, device, read_workers, prepare_workers, jacobian_chunk, pad_shapes,
    #: progress) only change how fast the same fit runs
    ANSWER_OPTIONS = ("iteration", "method", "likelihood", "dtype", "render_settings", "lm_settings",
                      "adam_settings", "restarts", "priors")

    def describe(self) -> dict:
        """The options as JSON values (for ``run.json``)."""
        out = {}
        for name in self.fields():
            value = getattr(self, name)
            if dataclasses.is_dataclass(value):
                value = dataclasses.asdict(value)
            elif isinstance(value, (torch.device, torch.dtype)):
                value = str(value)
            out[name] = value
        return out


#: the methods of ``Fitting.uncertainty`` (a job file's ``uncertainty`` takes these or "none")
UNCERTAINTY_METHODS = ("covar_mat", "bootstrap")


def check_uncertainty(method: str, n_resample, iteration=None, seed=0) -> tuple[str, int, int | None, int]:
    """The options of ``Fitting.uncertainty`` (a job file's ``uncertainty``, ``n_resample``, ``seed``), checked.

    Called by ``uncertainty()`` before anything else and by a job file's
    loading (so ``galmoss fit`` and its ``--dry-run`` refuse them before any fit).

    Raises
    ------
    ConfigError
        Naming the option and the fix.
    """
    if method not in UNCERTAINTY_METHODS:
        raise ConfigError(f"uncertainty method={method!r}: choose {' or '.join(repr(m) for m in UNCERTAINTY_METHODS)}")
    n_resample = _count("n_resample", n_resample, 2)
    if iteration is not None:
        iteration = _count("iteration", iteration)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigTypeError(f"seed must be an integer, got {seed!r}")
    return method, n_resample, iteration, int(seed)
