import pytest

from paradis_tf import Switch, SwitchSet
from paradis_tf.layers import GateConfig


def test_coerce_and_round_trip():
    assert GateConfig.coerce("open") == GateConfig(mode="open")
    assert GateConfig.coerce(None) == GateConfig()
    c = GateConfig.coerce({"0.5+0.5": "shut", "4x0.25": "open"})
    assert c.per_switch == (("2x0.5", "shut"), ("4x0.25", "open"))
    assert c.mode_for(Switch.parse("2x0.5")) == "shut"
    assert c.mode_for(Switch.parse("1x1.0")) == "learned"
    full = GateConfig(mode="shut", per_switch={"2x0.5": "learned"}, init_logit=1, relaxation="sigmoid", temperature=0.5)
    assert GateConfig.from_config(full.get_config()) == full
    assert GateConfig.coerce(full.get_config()) == full


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"mode": "dense"}, r"GateConfig.mode must be one of \['learned', 'open', 'shut'\], received 'dense'"),
        ({"per_switch": {"2x0.5": "half"}}, r"per_switch\['2x0.5'\] must be one of .* received 'half'"),
        ({"relaxation": "gumbel"}, r"relaxation must be one of .* received 'gumbel'"),
        ({"temperature": 0}, r"temperature must be a finite number > 0, received 0"),
        ({"temperature": "1"}, r"temperature must be a finite number > 0, received '1'"),
        ({"temperature": float("inf")}, r"temperature must be a finite number > 0, received inf"),
        ({"init_logit": float("nan")}, r"init_logit must be a finite number, received nan"),
        ({"logit_scale": -1}, r"logit_scale must be a finite number > 0, received -1"),
        ({"per_switch": [("2x0.5",)]}, r"\(switch name, mode\) pairs, received \('2x0.5',\)"),
    ],
)
def test_bad_config(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        GateConfig(**kwargs)


def test_unknown_switch_in_overrides():
    with pytest.raises(ValueError, match=r"gates name switch '4x0.25', which is not among"):
        GateConfig.coerce({"4x0.25": "open"}).check_switches(SwitchSet("1x1.0,2x0.5"), "layer")
    with pytest.raises(ValueError, match="gates must be a mode string"):
        GateConfig.coerce(3)
