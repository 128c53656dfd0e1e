from dataclasses import dataclass

import pytest
import yaml

from matseg.config import ConfigError, describe, diff_keys, dump_yaml, load_config, option, section, to_dict


@dataclass
class Inner:
    p: float = option(0.5, "a probability", "§1")
    sizes: list[int] = option([3, 5], "kernel sizes")


@dataclass
class Outer:
    n: int = option(10, "count")
    name: str | None = option(None, "optional name")
    mode: str = option("a", "mode", choices=("a", "b"))
    inner: Inner = section(Inner, "inner section")


def test_defaults_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("n: 3\ninner:\n  p: 0.25\n")
    cfg = load_config(Outer, path, ["inner.p=0.75", "name=x"])
    assert cfg.n == 3 and cfg.inner.p == 0.75 and cfg.name == "x" and cfg.inner.sizes == [3, 5]
    assert load_config(Outer).n == 10


def test_int_accepted_for_float_and_parsed_override_tuple():
    cfg = load_config(Outer, None, ["inner.p=1", (["inner", "sizes"], [7])])
    assert cfg.inner.p == 1.0 and isinstance(cfg.inner.p, float) and cfg.inner.sizes == [7]
    # YAML 1.1 reads 1e-4 (no dot in the mantissa) as a string; a number field takes it.
    for text, value in (("1e-4", 1e-4), ("5E-1", 0.5), ("-2.5e+0", -2.5), (".5e1", 5.0)):
        assert load_config(Outer, None, [f"inner.p={text}"]).inner.p == value
    for text in ("1e", "e-4", "abc", "1e-4x"):
        with pytest.raises(ConfigError, match="inner.p: expected a number"):
            load_config(Outer, None, [f"inner.p={text}"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("inner.q=1", "unknown config key.*inner.q.*valid keys: p, sizes"),
        ("n=abc", "n: expected an integer"),
        ("n=1.5", "n: expected an integer"),
        ("mode=c", "mode: 'c' is not one of a, b"),
        ("inner.sizes=5", "expected a list"),
        ("noequals", "must look like key=value"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(Outer, None, [override])


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(Outer, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("n: [1,\n")
    with pytest.raises(ConfigError, match="bad.yaml: cannot read config"):
        load_config(Outer, bad)
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(Outer, tmp_path / "list.yaml")


def test_dump_round_trip_and_describe():
    cfg = load_config(Outer, None, ["n=4", "inner.sizes=[9]"])
    again = load_config(Outer, None, [(k.split("."), v) for k, v in _flatten(yaml.safe_load(dump_yaml(cfg))).items()])
    assert to_dict(again) == to_dict(cfg)
    text = describe(Outer)
    assert "p: 0.5  # a probability [§1]" in text and "inner:" in text
    assert yaml.safe_load(text) == to_dict(Outer())  # the commented defaults are valid YAML


def test_diff_keys():
    assert diff_keys({"a": 1, "b": {"c": 2}}, {"a": 1, "b": {"c": 3}, "d": 0}) == ["b.c", "d"]


def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def test_check_probabilities_on_every_p_field():
    from matseg.config import check_probabilities

    @dataclass
    class P:
        p_a: float = 0.5
        p_b: float | None = None
        other: float = 7.0

    check_probabilities(P())
    with pytest.raises(ValueError, match="p_a must be in"):
        check_probabilities(P(p_a=1.5))
    with pytest.raises(ValueError, match="other must be in"):
        check_probabilities(P(), "other")
    # The 2D generator's sections validate their probabilities through it.
    from matseg.synth2d.scene import Scene2DConfig

    with pytest.raises(ConfigError, match="p_shadow must be in"):
        load_config(Scene2DConfig, None, ["shadows.p_shadow=2"])
