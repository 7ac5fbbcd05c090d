"""GALFIT input and constraint files: the grammar, GALFIT's meanings, and every error.

Truths: the numbers written in the files (parsing is exact), GALFIT's documented
parameter meanings, and for King/Ferrer the analytic central surface brightness.
"""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest
import torch

import galmoss as gm
from galmoss.galfit import FeedmeError, FeedmeUnsupportedError, build_profiles, parse_constraints, parse_feedme
from galmoss.galfit.profiles import FerrerSB, KingSB
from galmoss.model import Model
from galmoss.params.ties import Tied

# GALFIT's documented example input file (the manual's "galfit.feedme"), written
# out here from the manual's text: control block, a Sersic, a Nuker, an
# exponential disk and a sky.
MANUAL_EXAMPLE = """\
===============================================================================
# IMAGE and GALFIT CONTROL PARAMETERS
A) gal.fits            # Input data image (FITS file)
B) imgblock.fits       # Output data image block
C) none                # Sigma image name (made from data if blank or "none")
D) psf.fits   #        # Input PSF image and (optional) diffusion kernel
E) 1                   # PSF fine sampling factor relative to data
F) none                # Bad pixel mask (FITS image or ASCII coord list)
G) none                # File with parameter constraints (ASCII file)
H) 1    93   1    93   # Image region to fit (xmin xmax ymin ymax)
I) 100    100          # Size of the convolution box (x y)
J) 26.563              # Magnitude photometric zeropoint
K) 0.038  0.038        # Plate scale (dx dy)    [arcsec per pixel]
O) regular             # Display type (regular, curses, both)
P) 0                   # Options: 0=normal run; 1,2=make model/imgblock & quit

# THE OBJECT LIST BELOW can be however long or short as the complexity
# requires.  The user has complete freedom to mix and match the components
# by duplicating each object block.

# INITIAL FITTING PARAMETERS
#
#   column 1:  Parameter number
#   column 2:
#          -- Parameter 0:    the allowed functions are: sersic, nuker, expdisk
#                             edgedisk, devauc, king, moffat, gaussian, ferrer, psf, sky
#          -- Parameter 1-10: value of the initial parameters
#          -- Parameter C0:   For diskiness/boxiness
#                             <0 = disky
#                             >0 = boxy
#          -- Parameter Z:    Outputting image options, the options are:
#                             0 = normal, i.e. subtract final model from the data to create
#                                 the residual image
#                             1 = Leave in the model -- do not subtract from the data
#
#   column 3:  allow parameter to vary (yes = 1, no = 0)
#   column 4:  comment

# Sersic function

 0) sersic             # Object type
 1) 300.  350.  1 1    # position x, y        [pixel]
 3) 20.00      1       # total magnitude
 4) 4.30       1       #     R_e              [Pixels]
 5) 5.20       1       # Sersic exponent (deVauc=4, expdisk=1)
 9) 0.30       1       # axis ratio (b/a)
10) 10.0       1       # position angle (PA)  [Degrees: Up=0, Left=90]
 Z) 0                  #  Skip this model in output image?  (yes=1, no=0)

# Nuker function

 0) nuker              # Object type
 1) 250.  475.  1 1    # position x, y        [pixel]
 3) 17.2       1       #    mu(Rb)            [surface brightness mag. at Rb]
 4) 20.5       1       #     Rb               [pixels]
 5) 1.2        1       #    alpha  (sharpness of transition)
 6) 0.5        1       #    beta   (outer powerlaw slope)
 7) 0.7        1       #    gamma  (inner powerlaw slope)
 9) 0.72       1       # axis ratio (b/a)
10) -25.2      1       # position angle (PA)  [Degrees: Up=0, Left=90]
 Z) 0                  #  Skip this model in output image?  (yes=1, no=0)

# Exponential function

 0) expdisk            # Object type
 1) 405.  145.  1 1    # position x, y        [pixel]
 3) 14.8       1       # total magnitude
 4) 20.0       1       #     Rs               [Pixels]
 9) 0.3        1       # axis ratio (b/a)
10) 30.0       1       # position angle (PA)  [Degrees: Up=0, Left=90]
 Z) 0                  #  Skip this model in output image?  (yes=1, no=0)

# sky

 0) sky
 1) 1.3920     1       # sky background       [ADU counts]
 2) 0.0000     0       # dsky/dx (sky gradient in x)
 3) 0.0000     0       # dsky/dy (sky gradient in y)
 Z) 0                  #  Skip this model in output image?  (yes=1, no=0)

================================================================================
"""


def _write(tmp_path, text, name="galfit.feedme"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _without_nuker(text: str) -> str:
    start = text.index("# Nuker function")
    end = text.index("# Exponential function")
    return text[:start] + text[end:]


def test_manual_example_reads_the_nuker(tmp_path):
    """The manual's nuker (beta = 0.5: a divergent total, fine for GALFIT's mu(Rb)) is read with its numbers."""
    comp = parse_feedme(_write(tmp_path, MANUAL_EXAMPLE)).components[1]
    assert comp.kind == "nuker"
    assert [comp.value(k) for k in ("3", "4", "5", "6", "7", "9", "10")] == [17.2, 20.5, 1.2, 0.5, 0.7, 0.72, -25.2]


def test_manual_example_parses_to_galfits_numbers(tmp_path):
    feedme = parse_feedme(_write(tmp_path, _without_nuker(MANUAL_EXAMPLE)))
    assert feedme.image == tmp_path / "gal.fits" and feedme.output == tmp_path / "imgblock.fits"
    assert feedme.sigma is None and feedme.mask is None and feedme.constraints is None
    assert feedme.psf == tmp_path / "psf.fits" and feedme.psf_sampling == 1
    assert feedme.region == (1, 93, 1, 93) and feedme.conv_box == (100, 100)
    assert feedme.zeropoint == 26.563 and feedme.plate_scale == (0.038, 0.038)
    assert feedme.display == "regular" and feedme.mode == 0
    assert [c.kind for c in feedme.components] == ["sersic", "expdisk", "sky"]
    sersic, disk, sky = feedme.components
    assert sersic.params["1"].values == [300.0, 350.0] and sersic.params["1"].fit == [True, True]
    assert [sersic.value(k) for k in ("3", "4", "5", "9", "10")] == [20.0, 4.3, 5.2, 0.3, 10.0]
    assert disk.value("4") == 20.0 and disk.index == 2
    assert sky.params["1"].values == [1.392] and sky.params["2"].fit == [False]

    profiles = build_profiles([feedme])
    assert list(profiles) == ["sersic_1", "expdisk_2", "sky_3"]
    s = profiles["sersic_1"]
    assert isinstance(s, gm.lp.Sersic)
    assert (s.cen_x.initial[0], s.cen_y.initial[0], s.mag.initial[0], s.eff_r.initial[0]) == (300.0, 350.0, 20.0, 4.3)
    assert (s.ser_n.initial[0], s.axis_r.initial[0], s.pa.initial[0]) == (5.2, 0.3, 10.0)
    assert s.mag.M0 == 26.563 and s.pa.angle and not s.box.fit
    d = profiles["expdisk_2"]
    assert isinstance(d, gm.lp.ExpDisk) and d.scale_l.initial[0] == 20.0
    sky = profiles["sky_3"]
    assert sky.sky_bg.initial[0] == 1.392 and sky.sky_bg.fit and not sky.grad_x.fit


def test_grammar_tabs_comments_blank_values_and_spellings(tmp_path):
    text = (
        "# a feedme with GALFIT's looser habits\n"
        "A)\timage.fits\t# tabs\n"
        "B) block.fits\n"
        "C)            # blank: sigma made from the data\n"
        "D) none\n"
        "E) 1\n"
        "F)\n"
        "G) none\n"
        "H) 11 60 21 80\n"
        "I)\n"
        "J) 25.5\n"
        "K) 0.2\n"
        "O) both\n"
        "P) 3\n"
        "S) 0\n"
        "W) default\n"
        "# Component number: 1\n"
        " 0) sersic                 #  Component type\n"
        " 1) 40.5000 50.2500 1 0  #  Position x, y\n"
        " 3) 19.0\t1\n"
        " 4) 3.0 1\n"
        " 5) 1.5 0\n"
        " 6) 0.0000      0          #     ----- \n"
        " 7) 0.0000      0          #     ----- \n"
        " 8) 0.0000      0          #     ----- \n"
        " 9) 0.8 1\n"
        "10) -30 1\n"
        "C0) -0.3 1   # disky\n"
        " Z) 1\n"
        "# Object number: 2\n"
        " 0) devauc\n"
        " 1) 40 50 1 1\n"
        " 3) 20 1\n"
        " 4) 2 1\n"
    )
    feedme = parse_feedme(_write(tmp_path, text))
    assert feedme.sigma is None and feedme.mask is None and feedme.conv_box is None
    assert feedme.region == (11, 60, 21, 80) and feedme.plate_scale == (0.2, 0.2) and feedme.mode == 3
    s, dv = feedme.components
    assert s.skip and not dv.skip
    assert s.params["1"].fit == [True, False] and s.params["C0"].values == [-0.3]
    assert "6" not in s.params  # GALFIT's placeholder lines are read and ignored
    profiles = build_profiles([feedme], origins=[(11, 21)])
    sersic = profiles["sersic_1"]
    # centres move into the H) cutout's frame: x - (xmin - 1), y - (ymin - 1)
    assert sersic.cen_x.initial[0] == 40.5 - 10 and sersic.cen_y.initial[0] == 50.25 - 20
    assert sersic.cen_x.fit and not sersic.cen_y.fit and not sersic.ser_n.fit
    assert sersic.box.initial[0] == -0.3 and sersic.box.fit
    devauc = profiles["devauc_2"]
    assert isinstance(devauc, gm.lp.DeVaucouleurs)
    # 9) and 10) left out: GALFIT's round, unrotated default, held fixed
    assert devauc.axis_r.initial[0] == 1.0 and not devauc.axis_r.fit and devauc.pa.initial[0] == 0.0


_HEAD = "A) a.fits\nB) b.fits\nJ) 25\n"


@pytest.mark.parametrize(
    "body, match, cls",
    [
        (" 0) sersic\n 1) 10 10 1 1\n 3) abc 1\n 4) 3 1\n 5) 1 1\n", r"line 6: parameter 3\) must be a number, got 'abc': '3\) abc 1'", FeedmeError),
        ("this is not a galfit line\n", r"line 4: not a GALFIT line .*'this is not a galfit line'", FeedmeError),
        ("Q) 1\n", r"line 4: unknown control line Q\)", FeedmeError),
        (" 0) sersic\n 1) 10 10 1 1\n 3) 20 1\n 4) 3 1\n 5) 1 1\nB1) 0.07 1\nB2) 0.1 0\n",
         r"line 10: component 1 \(sersic\): B2\) is fixed but B1\) \(line 9\) is free", FeedmeUnsupportedError),
        (" 0) sersic\n 1) 10 10 1 1\n 3) 20 1\n 4) 3 1\n 5) 1 1\nF0) 0.1 10 1 1\n",
         r"line 9: component 1 \(sersic\): Fourier mode numbers start at 1", FeedmeError),
        (" 0) expdisk\n 1) 10 10 1 1\n 3) 20 1\n 4) 3 1\nR0) powerlaw\n",
         r"line 8: component 1 \(expdisk\) has the hidden parameter R0\) \(coordinate rotation\)", FeedmeUnsupportedError),
        (" 0) edgedisk\n 1) 10 10 1 1\n 3) 20 1\n", r"line 4: component 1 \(edgedisk\) lacks parameter\(s\) 4\), 5\)", FeedmeError),
        (" 0) sersic\n 1) 10 10 1 1\n 3) 20 1\n", r"line 4: component 1 \(sersic\) lacks parameter\(s\) 4\), 5\)", FeedmeError),
        (" 0) sersic\n 1) 10 10 1\n", r"line 5: .*parameter 1\) needs 2 value\(s\) and 2 fit toggle", FeedmeError),
        (" 0) sersic\n 3) 20 3\n", r"line 5: a fit toggle must be 0 \(fixed\), 1 \(free\) or 2 \(coupled\), got '3'",
             FeedmeError),
        (" 0) blob\n", r"line 4: unknown component type 'blob'", FeedmeError),
        ("E) 0\n", r"line 4: E\) \(PSF fine-sampling factor\) must be a positive integer, got '0'", FeedmeError),
        ("E) 1.5\n", r"E\) .*positive integer, got '1.5'", FeedmeError),
        ("E) two\n", r"E\) .*positive integer, got 'two'", FeedmeError),
        ("H) 10 5 1 20\n", r"line 4: H\) region must have xmin <= xmax", FeedmeError),
        ("P) 7\n", r"line 4: P\) must be 0", FeedmeError),
        ("D) psf.fits kernel.fits\n", r"diffusion kernel", FeedmeUnsupportedError),
    ],
)
def test_bad_lines_name_file_line_and_text(tmp_path, body, match, cls):
    path = _write(tmp_path, _HEAD + body, "bad.feedme")
    with pytest.raises(cls, match=match) as err:
        parse_feedme(path)
    assert str(path) in str(err.value)


def test_missing_output_line_and_missing_file(tmp_path):
    with pytest.raises(FeedmeError, match=r"B\) \(output image block\) is required"):
        parse_feedme(_write(tmp_path, "A) a.fits\n 0) sky\n 1) 0 1\n"))
    with pytest.raises(FileNotFoundError, match="nothere.feedme"):
        parse_feedme(tmp_path / "nothere.feedme")


# ------------------------------------------------------------------ constraints
_TWO = _HEAD + (
    " 0) sersic\n 1) 30 31 1 1\n 3) 19 1\n 4) 3 1\n 5) 4 1\n 9) 0.8 1\n10) 20 1\n"
    " 0) expdisk\n 1) 30.5 30 1 1\n 3) 18 1\n 4) 6 1\n 9) 0.5 1\n10) 25 1\n"
    " 0) sky\n 1) 0.1 1\n"
)


def _with_constraints(tmp_path, text):
    (tmp_path / "cons.txt").write_text(text)
    feedme = parse_feedme(_write(tmp_path, _TWO.replace("J) 25\n", "J) 25\nG) cons.txt\n")))
    return feedme, parse_constraints(feedme.constraints, feedme.components)


def test_constraint_file_forms(tmp_path):
    feedme, cons = _with_constraints(tmp_path, textwrap.dedent("""\
        # Component/    parameter   constraint     Comment
          1_2            x          offset       # hard
          1_2            y          offset
          2_1            pa         ratio
          1              n          0.7 to 5     # absolute
          2              q          -0.1 0.1     # relative to the start
          2-1            mag        -1  1        # difference
          2/1            4          0.5 3        # ratio of parameter 4 (re / rs)
        """))
    got = [(c.kind, c.components, c.label, c.lo, c.hi) for c in cons]
    assert got == [
        ("offset", (1, 2), "1x", None, None), ("offset", (1, 2), "1y", None, None), ("ratio", (2, 1), "10", None, None),
        ("range", (1,), "5", 0.7, 5.0), ("relative", (2,), "9", -0.1, 0.1),
        ("difference", (2, 1), "3", -1.0, 1.0), ("quotient", (2, 1), "4", 0.5, 3.0),
    ]
    assert cons[0].line == 2


@pytest.mark.parametrize(
    "line, match, cls",
    [
        ("4 n 1 to 2", r"line 1 .*the feedme has no component 4", FeedmeError),
        ("2 n 1 to 2", r"component 2 is a expdisk, which has no parameter 'n'", FeedmeError),
        ("1 gamma 1 to 2", r"component 1 is a sersic, which has no parameter 'gamma'", FeedmeError),
        ("1 r3 1 to 2", r"'r3' belongs to a profile feature galmoss does not have", FeedmeUnsupportedError),
        ("1 wobble 1 to 2", r"unknown parameter name 'wobble'", FeedmeError),
        ("1_2 x sideways", r"must end in 'offset' or 'ratio'", FeedmeError),
        ("1 re factor 2", r"galmoss reads 'lo to hi'", FeedmeUnsupportedError),
        ("1 n 5 to 1", r"needs lo < hi", FeedmeError),
        ("x 1 2", r"cannot read the components 'x'", FeedmeError),
    ],
)
def test_bad_constraints_name_the_line(tmp_path, line, match, cls):
    with pytest.raises(cls, match=match) as err:
        _with_constraints(tmp_path, line + "\n")
    assert "cons.txt, line 1" in str(err.value)


def _model_values(profiles, theta_value: float):
    model = Model(profiles)
    theta = torch.full((1, model.n_free), theta_value, dtype=torch.float64)
    start = model.start_values(np.array([0]))
    values = model.values(theta, model.fixed_tensors(start, torch.float64, "cpu"))
    # the values the model is drawn with, in user units (reports turn q > 1 ellipses round)
    return model, {f"{name}_{slot}": prm.units.to_user(values[prm]).reshape(-1)
                   for name, prof in profiles.items() for slot, prm in prof.parameters().items()}


def test_constraints_become_ranges_and_ties(tmp_path):
    feedme, cons = _with_constraints(tmp_path, "1_2 x offset\n1 n 0.7 to 5\n2 q -0.1 0.1\n2-1 mag -1 1\n2/1 re 0.5 3\n")
    profiles = build_profiles([feedme], [cons])
    s, d = profiles["sersic_1"], profiles["expdisk_2"]
    assert s.ser_n.value_range == (0.7, 5.0)
    assert isinstance(d.cen_x, Tied) and d.cen_x.base is s.cen_x and d.cen_x.link.initial[0] == 0.5
    assert isinstance(d.axis_r, Tied) and d.axis_r.link.value_range == (-0.1, 0.1)
    assert isinstance(d.mag, Tied) and d.mag.base is s.mag and d.mag.link.value_range == (-1.0, 1.0)
    assert isinstance(d.scale_l, Tied) and d.scale_l.op == "ratio" and d.scale_l.link.initial[0] == 2.0
    for theta_value in (-30.0, 0.3, 30.0):  # anywhere in the fitting space, the constraints hold
        _, rep = _model_values(profiles, theta_value)
        assert float(rep["expdisk_2_cen_x"] - rep["sersic_1_cen_x"]) == pytest.approx(0.5, abs=1e-12)
        assert 0.7 <= float(rep["sersic_1_ser_n"]) <= 5.0
        assert -1.0 <= float(rep["expdisk_2_mag"] - rep["sersic_1_mag"]) <= 1.0
        assert 0.5 <= float(rep["expdisk_2_scale_l"] / rep["sersic_1_eff_r"]) <= 3.0
        assert 0.4 - 1e-12 <= float(rep["expdisk_2_axis_r"]) <= 0.6 + 1e-12


def test_conflicting_constraints_are_refused(tmp_path):
    feedme, cons = _with_constraints(tmp_path, "2-1 mag -1 1\n1_2 mag offset\n")
    with pytest.raises(FeedmeUnsupportedError, match=r"cons.txt, line 2 .*already has a range or coupling"):
        build_profiles([feedme], [cons])


@pytest.mark.parametrize("text, lo, hi", [
    ("1_2 x offset\n2 x -1 0.5\n", 30 - 1, 30 + 0.5),     # GALFIT's EXAMPLE.CONSTRAINTS: relative range on a follower
    ("1_2 x offset\n2 x 20 to 40\n", 20 - 0.5, 40 - 0.5),  # absolute: x_2 = x_1 + 0.5
    ("1_2 re ratio\n2 re 3 to 12\n", 1.5, 6.0),           # r_2 = 2 r_1 (starts 3 and 6)
])
def test_a_range_on_a_coupled_parameter_bounds_what_it_follows(tmp_path, text, lo, hi):
    """A hard coupling plus a range on the follower: the range moves onto the followed parameter
    (bounds hand-computed from the starts), and both constraints hold anywhere in the fitting space."""
    feedme, cons = _with_constraints(tmp_path, text)
    profiles = build_profiles([feedme], [cons])
    slot1, slot2 = ("cen_x", "cen_x") if " x " in text else ("eff_r", "scale_l")
    for theta_value in (-30.0, 0.3, 30.0):
        _, rep = _model_values(profiles, theta_value)
        v1, v2 = float(rep[f"sersic_1_{slot1}"]), float(rep[f"expdisk_2_{slot2}"])
        assert lo - 1e-9 <= v1 <= hi + 1e-9
        if slot1 == "cen_x":
            assert v2 - v1 == pytest.approx(0.5, abs=1e-12)
        else:
            assert v2 / v1 == pytest.approx(2.0, rel=1e-12)


# --------------------------------------------------------------- King, Ferrer
@pytest.mark.parametrize("cls, shape", [(KingSB, {"core_r": 1.5, "trunc_r": 9.0, "pow_n": 2.0}),
                                        (FerrerSB, {"trunc_r": 8.0, "trunc_a": 2.0, "trunc_b": 0.5})])
def test_king_and_ferrer_take_galfits_central_surface_brightness(cls, shape):
    mu0, zp, dx, dy, q = 18.0, 25.0, 0.2, 0.25, 0.7
    prof = cls(cen_x=gm.p(12.0), cen_y=gm.p(12.0), pa=gm.p(10.0), axis_r=gm.p(q), mu0=gm.p(mu0, M0=zp),
               pixel_area=dx * dy, **{k: gm.p(v) for k, v in shape.items()})
    central = 10 ** (-0.4 * (mu0 - zp)) * dx * dy  # flux per pixel at r = 0
    y = torch.tensor([[12.0]], dtype=torch.float64)
    assert float(prof.image_via_grid_from((y, y.clone()))) == pytest.approx(central, rel=1e-12)
    # total flux: the central brightness times the area integral, by independent quadrature
    from scipy.integrate import quad

    if cls is KingSB:
        rc, rt, a = shape["core_r"], shape["trunc_r"], shape["pow_n"]
        at = (1 + (rt / rc) ** 2) ** (-1 / a)
        f = lambda r: ((((1 + (r / rc) ** 2) ** (-1 / a)) - at) / (1 - at)) ** a  # noqa: E731
        rmax = rt
    else:
        rout, a, b = shape["trunc_r"], shape["trunc_a"], shape["trunc_b"]
        f = lambda r: (1 - (r / rout) ** (2 - b)) ** a  # noqa: E731
        rmax = rout
    total = central * q * 2 * math.pi * quad(lambda r: f(r) * r, 0, rmax, epsabs=0, epsrel=1e-12)[0]
    image = gm.render(prof, (24, 24), dtype=torch.float64)
    assert float(image.sum()) == pytest.approx(total, rel=1e-6)


# ------------------------------------------------------------- reading the data
def _image_feedme(tmp_path, **lines):
    from astropy.io import fits

    image = np.arange(30 * 40, dtype=np.float64).reshape(30, 40)  # value = 40 * (y - 1) + (x - 1)
    fits.PrimaryHDU(image).writeto(tmp_path / "img.fits", overwrite=True)
    control = {"A": "img.fits", "B": "out.fits", "C": "none", "D": "none", "F": "none", "H": "", "J": "25"}
    control.update(lines)
    text = "".join(f"{k}) {v}\n" for k, v in control.items()) + " 0) sky\n 1) 0 1\n"
    path = tmp_path / "data.feedme"
    path.write_text(text)
    return parse_feedme(path)


def test_section_and_ascii_mask_in_the_full_frame(tmp_path):
    from galmoss.galfit import load_galaxy

    (tmp_path / "bad.txt").write_text("# x y, 1-based, full frame\n12 7\n5 5\n")
    gal = load_galaxy(_image_feedme(tmp_path, H="11 20 6 15", F="bad.txt"), [])
    assert gal.image.shape == (10, 10) and gal.origin == (11, 6)
    # the section's first pixel is the full frame's (11, 6)
    assert gal.image[0, 0] == 40 * 5 + 10
    # (12, 7) is inside the section at row 1, column 1; (5, 5) is outside it
    assert gal.weight[1, 1] == 0 and gal.weight.sum() == 99
    assert gal.flags & gm.flags.Flag.sigma_estimated


@pytest.mark.parametrize("line, value, words", [
    ("C", "nosigma.fits", "C) sigma image"), ("D", "nopsf.fits", "D) PSF"), ("F", "nomask.fits", "F) bad-pixel mask"),
])
def test_a_missing_file_flags_the_galaxy_and_names_it(tmp_path, line, value, words):
    from galmoss.galfit import load_galaxy

    gal = load_galaxy(_image_feedme(tmp_path, **{line: value}), [])
    assert gal.image is None and gal.flags & gm.flags.Flag.read_error
    message = "; ".join(gal.messages)
    assert value in message and "does not exist" in message and words in message


def test_restart_files_never_overwrite(tmp_path):
    from galmoss.galfit.output import restart_path

    block = tmp_path / "gal_block.fits"
    first = restart_path(block)
    assert first.name == "gal_block.galfit.01"
    first.write_text("x")
    assert restart_path(block).name == "gal_block.galfit.02"
