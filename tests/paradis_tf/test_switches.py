import pickle
from fractions import Fraction

import pytest

from paradis_tf import Switch, SwitchSet


@pytest.mark.parametrize(
    "text, widths, devices",
    [
        ("1x1.0", (1.0,), 1),
        ("2x0.5", (0.5, 0.5), 2),
        ("4x0.25", (0.25,) * 4, 4),
        ("0.5+0.3+0.2", (0.5, 0.3, 0.2), 3),
        ("1x0.5", (0.5,), 1),
    ],
)
def test_parse_and_print_round_trip(text, widths, devices):
    s = Switch.parse(text)
    assert str(s) == text
    assert s.widths == widths
    assert s.num_devices == devices
    assert Switch.parse(str(s)) == s
    assert Switch(widths) == s


def test_equivalent_spellings_are_one_switch():
    assert Switch.parse("0.5+0.5") == Switch.parse("2x0.5")
    assert str(Switch.parse("0.5+0.5")) == "2x0.5"
    assert Switch.parse(" 2 x .5 ") == Switch.parse("2x0.5")
    assert str(Switch.parse("3x1/3")) == "3x1/3"
    assert Switch.parse("3x1/3").is_full_width


def test_partition_matches_design_formula():
    # [round(C * sum(w_<k)), round(C * sum(w_<=k))), round half up.
    assert Switch.parse("2x0.5").partition(10) == (range(0, 5), range(5, 10))
    assert Switch.parse("4x0.25").partition(10) == (range(0, 3), range(3, 5), range(5, 8), range(8, 10))
    assert Switch.parse("0.5+0.3+0.2").partition(10) == (range(0, 5), range(5, 8), range(8, 10))
    assert Switch.parse("0.5+0.3+0.2").partition(7) == (range(0, 4), range(4, 6), range(6, 7))
    assert Switch.parse("1x0.5").partition(10) == (range(0, 5),)
    assert Switch.parse("1x0.5").active_channels(9) == 5  # 4.5 rounds up
    assert Switch.parse("1x1.0").partition(3) == (range(0, 3),)


def test_partition_is_exact_not_float():
    # 0.1 + 0.2 != 0.3 in floats; widths are exact decimals here.
    s = Switch.parse("0.1+0.2+0.7")
    assert s.boundaries(10) == (0, 1, 3, 10)
    assert s.boundaries(20) == (0, 2, 6, 20)


def test_partition_too_narrow_names_device_and_minimum():
    with pytest.raises(ValueError, match=r"3 channels .* '4x0.25': device 2 \(width 0.25\) would own no channel"):
        Switch.parse("4x0.25").partition(3)
    assert Switch.parse("4x0.25").min_channels() == 4
    # 5 channels: round(4.5) = 5 leaves device 1 empty; 6: round(5.4) = 5.
    assert Switch.parse("0.9+0.1").min_channels() == 6


@pytest.mark.parametrize(
    "bad, pattern",
    [
        ("0.6+0.6", r"sum to at most 1.*1.2"),
        ("3x0.5", r"sum to at most 1"),
        ("2x0", r"widths\[0\] must be in \(0, 1\], received '0'"),
        ("0.5+0+0.5", r"widths\[1\] must be in \(0, 1\]"),
        ("1x-0.5", r"Cannot parse switch '1x-0.5'"),
        ("two halves", r"Cannot parse switch 'two halves'"),
        ("", r"Cannot parse switch ''"),
        ("0x0.5", r"at least one device, received '0x0.5'"),
        ("1x1.5", r"widths\[0\] must be in \(0, 1\], received '1.5'"),
    ],
)
def test_bad_switch_raises_with_value(bad, pattern):
    with pytest.raises(ValueError, match=pattern):
        Switch.parse(bad)


def test_bad_widths_sequence():
    with pytest.raises(ValueError, match=r"widths\[0\] must be in \(0, 1\], received -0.5"):
        Switch([-0.5])
    with pytest.raises(ValueError, match="at least one device"):
        Switch([])
    with pytest.raises(ValueError, match="Switch.parse"):
        Switch("2x0.5")
    with pytest.raises(ValueError, match="received nan"):
        Switch([float("nan")])


def test_switch_immutable_hashable_picklable():
    s = Switch.parse("0.5+0.3+0.2")
    with pytest.raises(AttributeError):
        s.foo = 1
    assert {s: 1}[Switch.parse("0.5+0.3+0.2")] == 1
    assert pickle.loads(pickle.dumps(s)) == s
    assert Switch([Fraction(1, 2), "0.5"]) == Switch.parse("2x0.5")


def test_switchset_orders_widest_first_and_resolves():
    ss = SwitchSet("2x0.5,1x0.5,4x0.25,1x1.0")
    assert ss.names == ("1x1.0", "2x0.5", "4x0.25", "1x0.5")
    assert ss.teacher == Switch.parse("1x1.0")
    assert ss.index("4x0.25") == 2
    assert ss.index(Switch.parse("1x0.5")) == 3
    assert ss.index(-1) == 3
    assert ss[1] == Switch.parse("2x0.5")
    assert ss["0.25+0.25+0.25+0.25"] == Switch.parse("4x0.25")
    assert "2x0.5" in ss and "3x1/3" not in ss
    assert ss.max_devices == 4
    assert SwitchSet(ss.get_config()) == ss
    assert SwitchSet(["1x1.0", "2x0.5"]) == SwitchSet("2x0.5, 1x1.0")
    assert pickle.loads(pickle.dumps(ss)) == ss
    assert hash(ss) == hash(SwitchSet(str(ss)))


def test_switchset_errors():
    with pytest.raises(ValueError, match=r"widest switch of total width 1.*\['1x0.5', '2x0.25'\]"):
        SwitchSet("1x0.5,2x0.25")
    with pytest.raises(ValueError, match="'2x0.5' appears twice"):
        SwitchSet("2x0.5,1x1.0,0.5+0.5")
    with pytest.raises(ValueError, match="at least one switch"):
        SwitchSet([])
    ss = SwitchSet("1x1.0,2x0.5")
    with pytest.raises(ValueError, match=r"Unknown switch '4x0.25': this model serves \['1x1.0', '2x0.5'\]"):
        ss.index("4x0.25")
    with pytest.raises(ValueError, match="switch index 2 is out of range"):
        ss.index(2)
    with pytest.raises(ValueError, match="received None"):
        ss.index(None)
    with pytest.raises(ValueError, match="Unknown switch 'banana'"):
        ss.index("banana")


@pytest.mark.parametrize("text, position", [("1x1.0,", 1), ("1x1.0,,2x0.5", 1), (",1x1.0", 0)])
def test_switchset_refuses_an_empty_entry(text, position):
    # A stray comma is a typo: dropping the entry silently changed what was trained.
    with pytest.raises(ValueError, match=rf"switches '{text}' has an empty entry at position {position}"):
        SwitchSet(text)


def test_group_partition_keeps_groups_whole():
    # 4 heads of 16 channels over 0.5+0.3+0.2: heads 2/1/1 (round half up of
    # 4 * 0.5, 4 * 0.8), never the channel split 32/19/13.
    sw = Switch.parse("0.5+0.3+0.2")
    assert sw.partition(64, group=16) == (range(0, 32), range(32, 48), range(48, 64))
    assert sw.partition(64) == (range(0, 32), range(32, 51), range(51, 64))
    assert Switch.parse("2x0.5").partition(12, group=3) == (range(0, 6), range(6, 12))
    assert Switch.parse("1x0.5").active_channels(64, group=16) == 32
    assert Switch.parse("0.5+0.3").active_channels(64, group=16) == 48  # 3 of 4 heads
    assert Switch.parse("0.5+0.3").active_channels(64) == 51
    assert sw.partition(10, group=1) == sw.partition(10)


def test_group_partition_errors_name_the_values():
    with pytest.raises(ValueError, match=r"channels \(10\) must be a multiple of group \(4\)"):
        Switch.parse("2x0.5").partition(10, group=4)
    with pytest.raises(ValueError, match=r"2 groups of 8 channels.*'4x0.25'"):
        Switch.parse("4x0.25").partition(16, group=8)
    with pytest.raises(ValueError, match="group must be a positive int, received 0"):
        Switch.parse("2x0.5").partition(16, group=0)


def test_numpy_widths_are_numbers():
    import numpy as np

    assert Switch(np.array([0.5, 0.5])).name == "2x0.5"  # numpy 2 reprs them as np.float64(0.5)
    assert Switch([np.float32(0.3), np.float32(0.7)]).name == "0.3+0.7"
    assert Switch([np.int64(1)]).name == "1x1.0"
    with pytest.raises(ValueError, match=r"must be a number in \(0, 1\], received np.float32\(nan\)"):
        Switch([np.float32("nan"), 0.5])
