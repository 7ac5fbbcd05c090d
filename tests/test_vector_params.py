"""Vector parameters (issue 10, item 1): gm.p of K values per galaxy, end to end.

Truths are independent of the fitter: the linear least-squares solution and its
covariance (X^T W X)^-1 computed in numpy from a design matrix, the injected
map of mock galaxies, and the general forward-mode Jacobian for the chunked
large-P route.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from astropy.io import fits
from astropy.table import Table

import galmoss as gm
from galmoss.fitting.batch import Batch, FitMemoryError, FitSettings
from galmoss.fitting.solve import make_objective
from galmoss.model import Model

H = 24
MAP = (4, 4)
K = MAP[0] * MAP[1]
SIGMA = 0.5


def _psf():
    yy, xx = np.mgrid[:9, :9] - 4.0
    return np.exp(-(xx**2 + yy**2) / (2 * 1.3**2))


def _map(values, centre=(12.5, 12.5)):
    n = np.atleast_2d(values).shape[0]
    return gm.lp.PixelMap(pixels=gm.p(values), shape=MAP, cen_x=gm.p(np.full(n, centre[0]), fit=False),
                          cen_y=gm.p(np.full(n, centre[1]), fit=False), scale=3)


def _design(psf):
    """X (M, K): the image of each map pixel alone at unit flux."""
    cols = gm.render(_map(np.eye(K)), (H, H), psf=psf, dtype=torch.float64).numpy()
    return cols.reshape(K, -1).T


def _mock(n, seed):
    rng = np.random.default_rng(seed)
    truth = rng.uniform(20.0, 60.0, (n, K))
    clean = gm.render(_map(truth), (H, H), psf=_psf(), dtype=torch.float64).numpy()
    return truth, clean + rng.normal(0.0, SIGMA, clean.shape)


# ------------------------------------------------------------------ gm.p
def test_vector_parameter_shapes_and_bad_input():
    one_row = gm.p([1.0, 2.0, 3.0], dim="2d")
    assert one_row.is_vector and one_row.size == 3 and one_row.param_length == 1
    per_galaxy = gm.p(np.ones((5, 7)))
    assert per_galaxy.size == 7 and per_galaxy.param_length == 5
    assert tuple(per_galaxy.value().shape) == (5, 7)
    assert not gm.p([1.0, 2.0]).is_vector  # a 1-D sequence without dim stays one value per galaxy
    with pytest.raises(ValueError, match=r"galaxy 0: 2 values, galaxy 1: 1"):
        gm.p([[1.0, 2.0], [3.0]])
    with pytest.raises(ValueError, match=r"dim='2d'"):
        gm.p(np.ones((2, 3)), dim="1d")
    with pytest.raises(ValueError, match="dim must be"):
        gm.p([1.0], dim="3d")
    with pytest.raises(ValueError, match="needs start values"):
        gm.p(dim="2d")
    with pytest.raises(ValueError, match=r"element 2.*outside value_range"):
        gm.p([[0.5, 1.5]], value_range=(0.0, 1.0))


def test_wrong_length_is_refused_naming_parameter_and_lengths():
    with pytest.raises(ValueError, match=r"m\.pixels: the parameter holds 15 values per galaxy but PixelMap expects 16"):
        Model({"m": gm.lp.PixelMap(pixels=gm.p(np.ones(15), dim="2d"), shape=MAP, cen_x=gm.p(12.0, fit=False),
                                   cen_y=gm.p(12.0, fit=False))})
    with pytest.raises(ValueError, match="different numbers of galaxies"):
        Model({"m": _map(np.ones((3, K))), "s": gm.lp.Sky(sky_bg=gm.p([0.0, 1.0]))})
    # a vector in a built-in profile's scalar slot is refused at model build (it used to fail while drawing)
    with pytest.raises(ValueError, match=r"s\.eff_r: the parameter holds 4 values per galaxy but Sersic's eff_r is one "
                                         r"number per galaxy"):
        Model({"s": gm.lp.Sersic(cen_x=gm.p(12.0), cen_y=gm.p(12.0), pa=gm.p(0.0), axis_r=gm.p(0.7),
                                 eff_r=gm.p(np.full((2, 4), 3.0)), mag=gm.p(17.0, M0=22.5), ser_n=gm.p(1.0))})
    with pytest.raises(ValueError, match="centre of a pixel map is fixed"):
        gm.lp.PixelMap(pixels=gm.p(np.ones(K), dim="2d"), shape=MAP, cen_x=gm.p(12.0), cen_y=gm.p(12.0, fit=False))


def test_model_layout_of_a_vector_parameter():
    model = Model({"m": _map(np.full((2, K), 3.0)), "sky": gm.lp.Sky(sky_bg=gm.p([0.1, 0.2]))})
    assert model.n_free == K + 1
    assert model.free_names()[:2] == ["m_pixels_1", "m_pixels_2"] and model.free_names()[-1] == "sky_sky_bg"
    start = model.start_values(np.arange(2))
    theta = model.theta_from_values(start, torch.float64, "cpu")
    assert tuple(theta.shape) == (2, K + 1)
    values = model.values(theta, model.fixed_tensors(start, torch.float64, "cpu"))
    prm = model.profiles["m"].pixels
    assert tuple(values[prm].shape) == (2, K)
    assert torch.allclose(values[prm], torch.full((2, K), 3.0, dtype=torch.float64))
    report = model.report(values)
    assert float(report["m_pixels_16"][1]) == pytest.approx(3.0)


# ---------------------------------------------------- large-P Jacobian route
def _objective_for(profiles, data, dtype=torch.float64):
    model = Model(profiles)
    n = data.shape[0]
    psf = np.broadcast_to(_psf(), (n,) + _psf().shape).copy()
    batch = Batch(np.arange(n), [str(i) for i in range(n)], data, np.full_like(data, SIGMA), np.ones_like(data), psf,
                  [data.shape[1:]] * n, np.zeros(n, np.int64), [[] for _ in range(n)])
    start = model.start_values(batch.positions)
    obj = make_objective(model, batch, start, FitSettings(dtype="float64" if dtype == torch.float64 else "float32"))
    return model, obj, model.theta_from_values(start, dtype, "cpu")


def test_chunked_normal_equations_match_the_general_jacobian():
    truth, data = _mock(2, seed=3)
    sersic = gm.lp.Sersic(cen_x=gm.p([12.2, 12.9]), cen_y=gm.p([12.6, 11.8]), pa=gm.p([20.0, -50.0]),
                          axis_r=gm.p([0.6, 0.8]), eff_r=gm.p([3.0, 2.0]), mag=gm.p([15.0, 15.5], M0=22.5),
                          ser_n=gm.p([1.5, 2.5]))
    model, obj, theta = _objective_for({"s": sersic, "m": _map(truth * 0.9)}, data)
    obj.tangent_memory = 5 * obj.tangent_bytes()  # force chunks of 5 columns
    assert obj._chunks(model.n_free)[1] == 5
    index = torch.arange(2)
    # the Jacobian of the split route (structured Sersic columns, forward mode through the map in
    # chunks) against forward mode through the whole model: the same derivative but for the
    # Sersic's centre, whose structured column is the spectral shift (a few 1e-3 of its peak,
    # tests/test_objective_jacobian.py)
    m_ref, jm_ref = obj._forward_jacobian(lambda t, ix: obj.model_images(t, ix).reshape(t.shape[0], -1), theta, index)
    m, jm = obj.model_and_jacobian(theta, index)
    assert torch.allclose(m, m_ref, rtol=0, atol=1e-10 * float(m_ref.abs().max()))
    error = ((jm - jm_ref).abs() / jm_ref.abs().amax(dim=1, keepdim=True).clamp_min(1e-300)).amax(dim=(0, 1))
    names = model.free_names()
    centre = [k for k, name in enumerate(names) if name in ("s_cen_x", "s_cen_y")]
    others = [k for k in range(len(names)) if k not in centre]
    assert float(error[others].max()) < 1e-8 and float(error[centre].max()) < 5e-3
    # J^T J and J^T r assembled chunk by chunk (forward blocks, reverse passes) against the held J
    r, j = obj.residuals_and_jacobian(theta, index)
    a_ref = torch.einsum("bmp,bmq->bpq", j, j)
    g_ref = torch.einsum("bmp,bm->bp", j, r)
    held = obj.normal_equations(theta, index)  # J of 2 x 576 x 23 fits the budget: held and multiplied
    obj.hold_jacobian = False  # as when J does not fit: reverse passes, never J whole
    for a, g, chi2 in (held, obj.normal_equations(theta, index)):
        assert float((a - a_ref).abs().max() / a_ref.abs().max()) < 1e-10
        assert float((g - g_ref).abs().max() / g_ref.abs().max()) < 1e-10
        assert torch.allclose(chi2, (r**2).sum(1), rtol=1e-12)


# ------------------------------------------------------------- end to end
def test_linear_map_fit_equals_least_squares_and_pulls_are_unit(tmp_path):
    n = 6
    truth, data = _mock(n, seed=11)
    ds = gm.Dataset.from_arrays(data, sigmas=np.full_like(data, SIGMA), psfs=_psf(), result_path=tmp_path / "out",
                                img_block_path=tmp_path / "blocks")
    ds.define_profiles(m=_map(np.full((n, K), 40.0)))
    fitting = gm.Fitting(dataset=ds, batch_size=n, iteration=50, dtype=torch.float64)
    fitting.fit()
    fitting.uncertainty(method="covar_mat")
    res = fitting.results
    assert res["m_pixels"].shape == (n, K) and res["m_pixels_err"].shape == (n, K)
    assert np.all(res["converged"])

    # independent truth: weighted linear least squares in numpy
    x = _design(_psf())
    cov = np.linalg.inv(x.T @ x / SIGMA**2)
    best = np.linalg.solve(x.T @ x, x.T @ data.reshape(n, -1).T).T
    err = np.sqrt(np.diag(cov))[None, :]
    # LM stops when chi2 falls by < 1e-6 relative (chi2 ~ 576): within a few 1e-2 sigma of the minimum
    assert np.abs((res["m_pixels"] - best) / err).max() < 0.05
    # the covariance of a linear model does not depend on where it is evaluated
    assert np.allclose(res["m_pixels_err"], err, rtol=1e-6)

    # pulls of the vector elements against the injected map: N(0, 1) for an efficient fit
    pulls = ((res["m_pixels"] - truth) / res["m_pixels_err"]).ravel()
    assert abs(pulls.mean()) < 3.0 / np.sqrt(pulls.size)
    assert 0.75 < pulls.std() < 1.25

    # the files: an array-valued column in results.fits, flat columns in results.csv
    out = tmp_path / "out"
    table = Table.read(out / "results.fits")
    assert table["m_pixels"].shape == (n, K)
    assert np.allclose(table["m_pixels"], res["m_pixels"])
    header = (out / "results.csv").read_text().splitlines()[0].split(",")
    assert header[1:4] == ["m_pixels_1", "m_pixels_2", "m_pixels_3"] and "m_pixels_16_err" in header
    # the Parquet parts hold one fixed-size list column of K values
    import pyarrow.parquet as pq

    part = pq.read_table(next((out / "parts").glob("part-*.parquet")))
    assert str(part.schema.field("m_pixels").type) == f"fixed_size_list<element: double>[{K}]"
    assert json.loads(part.schema.metadata[b"galmoss_vectors"])["m_pixels"][0] == "m_pixels_1"
    # image-block headers list the elements
    head = fits.getheader(tmp_path / "blocks" / "0.fits", "MODEL")
    value, error = (float(x) for x in head["1_PIXELS_1"].split("+/-"))
    assert value == pytest.approx(res["m_pixels"][0, 0], abs=1e-4)
    assert error == pytest.approx(res["m_pixels_err"][0, 0], abs=1e-4)
    assert "1_PIXELS_16" in head
    # results back into starts: a (N, K) vector parameter
    init = gm.results_to_init(table, "m")
    assert init["pixels"].is_vector and init["pixels"].initial.shape == (n, K)

    # resume reads the parts back, vector columns included
    again = gm.Fitting(dataset=ds, batch_size=n, iteration=50, dtype=torch.float64)
    again.fit(resume=True)
    assert np.array_equal(again.results["m_pixels"], res["m_pixels"])


def test_long_vectors_are_not_listed_in_headers(monkeypatch):
    from galmoss.pipeline import sinks
    from galmoss.pipeline.store import ResultStore

    model = Model({"m": _map(np.ones((1, K)))})
    store = ResultStore(model, ["g"])
    store.values[0, :K] = np.arange(K, dtype=float)  # the map first, then its (fixed) centre
    writer = sinks.BlockWriter(".", model, ["g.fits"])
    monkeypatch.setattr(sinks, "MAX_HEADER_ELEMENTS", 10)
    cards = {key: value for key, value, _ in writer.cards(store, 0, errors=False)}
    assert cards["1_PIXELS"] == f"see table: m_pixels ({K} values)"
    monkeypatch.setattr(sinks, "MAX_HEADER_ELEMENTS", 99)
    cards = {key: value for key, value, _ in writer.cards(store, 0, errors=False)}
    assert cards["HIERARCH 1_PIXELS_3"] == "2.0000"


def test_too_many_values_for_memory_is_an_error_before_fitting(monkeypatch):
    from galmoss.fitting import batch as batch_module
    from galmoss.fitting import memory

    truth, data = _mock(2, seed=5)
    model, obj, _ = _objective_for({"m": _map(truth)}, data)
    monkeypatch.setattr(memory, "available_memory", lambda device: 10 * 2**20)
    b = Batch(np.arange(2), ["a", "b"], data, np.full_like(data, SIGMA), np.ones_like(data), None, [(H, H)] * 2,
              np.zeros(2, np.int64), [[], []])
    need = 2 * batch_module.memory_per_galaxy(model.n_free, len(model.columns), (H, H))
    # the fault barrier does not swallow it: it is the configuration, not one galaxy
    with pytest.raises(FitMemoryError, match=rf"16 free values each needs about .* GiB \(.* GiB to render, "
                                             rf"{need / 2**30:.3g} GiB of 16x16 matrices\)"):
        batch_module.fit_batch_safely(model, b, FitSettings())


def test_fit_and_shards_collated_give_the_same_table_for_a_vector_parameter(tmp_path):
    """One table builder: fit() and shards + collate agree in names, dtypes, shapes and values."""
    from galmoss.pipeline.collate import collate

    n = 4
    truth, data = _mock(n, seed=5)

    def fitting(folder):
        ds = gm.Dataset.from_arrays(data, sigmas=np.full_like(data, SIGMA), psfs=_psf(), result_path=tmp_path / folder,
                                    img_block_path=tmp_path / f"{folder}_blocks")
        ds.define_profiles(m=_map(np.full((n, K), 40.0)), sky=gm.lp.Sky(sky_bg=gm.p(0.0)))
        return gm.Fitting(dataset=ds, batch_size=2, iteration=30, dtype=torch.float64, device="cpu", progress=False)

    whole = fitting("whole")
    whole.fit()
    single = whole.uncertainty("covar_mat")  # covariance errors come with every batch, as in the parts
    for k in (1, 2):  # each shard is one batch of the single run: the same arithmetic
        fitting("shards").fit(shard=(k, 2))
    merged = collate(tmp_path / "shards", write=False).table
    assert merged.colnames == single.colnames
    assert "m_pixels" in merged.colnames and merged["m_pixels"].shape == (n, K)
    for name in single.colnames:
        assert merged[name].dtype == single[name].dtype, name
        assert merged[name].shape == single[name].shape, name
        assert str(merged[name].unit) == str(single[name].unit), name
        if merged[name].dtype.kind == "f":
            np.testing.assert_allclose(merged[name], single[name], rtol=1e-12, atol=0, err_msg=name)
        else:
            assert list(merged[name]) == list(single[name]), name
    # a folder written before run.json listed the vectors and the table's options reads the same
    run = tmp_path / "shards" / "run.json"
    description = json.loads(run.read_text())
    del description["vectors"], description["table"]
    run.write_text(json.dumps(description))
    assert collate(tmp_path / "shards", write=False).table.colnames == single.colnames
    # the fit itself is right: the noise is Gaussian with the given sigma, so chi2 / dof ~ 1
    assert np.all(np.abs(single["reduced_chi2"] - 1.0) < 0.3)
