"""The flag registry: fixed bit values, encode/decode, descriptions, array helpers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import galmoss.flags as flags_module
from galmoss.errors import FlagError
from galmoss.flags import Flag, add_flag, decode, describe, encode, flag_table, has_flag

# The bit values are part of the results file format: pinned here, independently
# of the enum, so renumbering a flag fails this test.
EXPECTED_VALUES = {
    "no_convergence": 1,
    "near_bound": 2,
    "no_covariance": 4,
    "fully_masked": 8,
    "bad_pixels_masked": 16,
    "sigma_estimated": 32,
    "non_finite": 64,
    "read_error": 128,
    "bad_psf": 256,
    "bad_start": 512,
    "no_dof": 1024,
    "fit_error": 2048,
    "block_not_written": 4096,
    "bad_mask": 8192,
    "no_source": 16384,
    "psf_off_centre": 32768,
    "negative_pixels": 65536,
    "psf_larger_than_cutout": 131072,
    "segment_fallback": 1 << 18,
    "chi2_high": 1 << 19,
    "size_runaway": 1 << 20,
    "negligible_component": 1 << 21,
    "at_start": 1 << 22,
    "components_merged": 1 << 23,
    "target_masked": 1 << 24,
    "bootstrap_split": 1 << 25,
    "prior_dominated": 1 << 26,
    "degenerate_component": 1 << 27,
    "psf_undersampled": 1 << 28,
}


def test_every_flag_has_its_pinned_single_bit():
    assert {m.name: int(m) for m in Flag.__members__.values()} == EXPECTED_VALUES
    for name, value in EXPECTED_VALUES.items():
        assert Flag[name] == value
        assert value & (value - 1) == 0  # exactly one bit


def test_decode_encode_round_trip_over_all_values():
    names = list(EXPECTED_VALUES)
    # every combination of the first 12 bits, then each later bit on top of a few of them
    values = list(range(2**12)) + [v | EXPECTED_VALUES[n] for n in names[12:] for v in (0, 1, 2049, 4095)]
    for value in values:
        decoded = decode(value)
        assert encode(decoded) == value
        assert decoded == [n for n in names if value & EXPECTED_VALUES[n]]  # increasing bit order


def test_encode_then_decode_gives_the_names_back():
    for combo in itertools.combinations(EXPECTED_VALUES, 3):
        assert sorted(decode(encode(combo))) == sorted(combo)
    assert encode([]) == 0 and decode(0) == []
    assert encode("bad_psf") == 256  # a single name, not its characters
    assert encode([Flag.no_dof, "no_dof", "NEAR_BOUND"]) == 1024 + 2
    assert encode(Flag.bad_psf | Flag.read_error) == 256 + 128
    assert decode(np.int64(33)) == ["no_convergence", "sigma_estimated"]


def test_unknown_names_and_bits_are_refused_with_the_fix():
    with pytest.raises(FlagError, match="unknown flag name 'no_convergance'.*known flags: no_convergence") as info:
        encode(["no_convergance"])
    assert isinstance(info.value, ValueError)
    with pytest.raises(FlagError, match="bit\\(s\\) \\[40\\].*does not define"):
        decode(2**40 + 1)
    with pytest.raises(FlagError, match="negative"):
        decode(-1)
    with pytest.raises(FlagError, match="not an integer"):
        decode(1.5)


def test_describe():
    assert describe(Flag.no_covariance) == "J^T W J is singular or not positive definite: errors are NaN"
    assert describe("read_error") == "a file of this galaxy could not be read: values are NaN"
    assert describe(1) == "hit the iteration limit before converging"
    assert describe(0) == "fine: no flag set"
    both = describe(Flag.no_convergence | Flag.bad_psf)
    assert both == "no_convergence: hit the iteration limit before converging; bad_psf: the PSF is unusable"


def test_flag_table_lists_every_flag_once():
    table = flag_table()
    assert table.colnames == ["name", "bit", "value", "description"]
    assert list(table["name"]) == list(EXPECTED_VALUES)
    assert list(table["value"]) == list(EXPECTED_VALUES.values())
    assert list(table["bit"]) == list(range(len(EXPECTED_VALUES)))
    for text in table["description"]:
        assert text and "\n" not in text


def test_module_docstring_lists_every_flag():
    doc = flags_module.__doc__
    for name, value in EXPECTED_VALUES.items():
        assert f"``{name}``" in doc
        assert f" {value} " in doc


def test_add_flag_on_numpy_and_torch():
    a = np.zeros(4, dtype=np.int64)
    add_flag(a, "near_bound", where=np.array([True, False, True, False]))
    add_flag(a, Flag.no_convergence, where=np.array([True, True, False, False]))
    add_flag(a, ["sigma_estimated"])
    np.testing.assert_array_equal(a, [35, 33, 34, 32])
    np.testing.assert_array_equal(has_flag(a, "no_convergence"), [True, True, False, False])

    b = np.zeros(2, dtype=np.int32)
    assert add_flag(b, 1024, where=np.array([False, True])) is b
    np.testing.assert_array_equal(b, [0, 1024])

    t = torch.zeros(3, dtype=torch.int64)
    add_flag(t, Flag.non_finite, where=torch.tensor([False, True, True]))
    add_flag(t, "bad_psf", where=torch.tensor([True, False, True]))
    assert t.tolist() == [256, 64, 320]
    assert has_flag(t, Flag.bad_psf).tolist() == [True, False, True]
    assert has_flag(320, ["no_dof", "non_finite"]) is True


def test_add_flag_refuses_arrays_that_cannot_hold_the_bits():
    with pytest.raises(FlagError, match="need an integer dtype"):
        add_flag(np.zeros(2), "bad_psf")
    with pytest.raises(FlagError, match="uint8, which cannot hold bit 8 \\(bad_psf\\)"):
        add_flag(np.zeros(2, dtype=np.uint8), "bad_psf")
    with pytest.raises(FlagError, match="need an integer dtype"):
        add_flag(torch.zeros(2), "bad_psf")
    with pytest.raises(FlagError, match="does not define"):
        add_flag(np.zeros(2, dtype=np.int64), 1 << 40)


def test_components_merged_on_an_int16_array_is_a_clear_error_never_overflow():
    # bit 23 does not fit a signed 16-bit integer: numpy would raise OverflowError
    narrow = np.zeros(3, dtype=np.int16)
    with pytest.raises(FlagError, match="int16, which cannot hold bit 23 \\(components_merged\\).*int64"):
        add_flag(narrow, "components_merged")
    with pytest.raises(FlagError, match="cannot hold bit 23"):
        add_flag(torch.zeros(3, dtype=torch.int16), Flag.components_merged)
    np.testing.assert_array_equal(narrow, 0)  # nothing half-written
    # bit 14 still fits an int16; bit 23 fits int32 and the flag dtype
    assert add_flag(np.zeros(1, dtype=np.int16), "no_source")[0] == 1 << 14
    assert add_flag(np.zeros(1, dtype=np.int32), "components_merged")[0] == 1 << 23
    assert add_flag(np.zeros(1, dtype=flags_module.FLAG_DTYPE), "components_merged")[0] == 1 << 23


def test_registry_matches_the_enum_and_the_docstring_table():
    assert [(info.name, 1 << info.bit) for info in flags_module.REGISTRY] == list(EXPECTED_VALUES.items())
    assert len({info.bit for info in flags_module.REGISTRY}) == len(flags_module.REGISTRY)
    rows = [line.split() for line in flags_module.__doc__.splitlines()]
    table = [(int(r[0]), int(r[1]), r[2].strip("`")) for r in rows if len(r) >= 3 and r[0].isdigit() and r[1].isdigit()]
    assert table == [(info.bit, 1 << info.bit, info.name) for info in flags_module.REGISTRY]
    for info in flags_module.REGISTRY:
        assert describe(info.name) == info.meaning
