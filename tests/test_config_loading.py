"""The one YAML → typed-configuration loader every package uses (portraitsr/config_loading.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from portraitsr.config_loading import from_mapping
from service.core.settings import load_settings


@dataclass
class Part:
    name: str
    size: int = 1


@dataclass
class Whole:
    rate: float = 1e-3
    sides: tuple[int, ...] = (1, 2)
    pair: tuple[float, float] = (0.0, 1.0)
    mode: Literal["a", "b"] = "a"
    parts: list[Part] = field(default_factory=list)
    part: Part | None = None
    weights: dict[str, int] = field(default_factory=dict)


def test_values_are_brought_to_the_declared_types_and_nested_dataclasses_filled():
    whole = from_mapping(Whole, {"rate": "2e-4", "sides": [4, 8, 16], "pair": [1, 2], "mode": "b",
                                 "parts": [{"name": "x", "size": 2.0}], "part": {"name": "y"}, "weights": {"k": 3}})
    assert whole == Whole(2e-4, (4, 8, 16), (1.0, 2.0), "b", [Part("x", 2)], Part("y"), {"k": 3})
    assert isinstance(whole.sides, tuple) and isinstance(whole.parts[0].size, int)


@pytest.mark.parametrize(("raw", "message"), [
    ({"rte": 1}, r"Whole: unknown keys \['rte'\]"),
    ({"parts": [{"name": "x", "sise": 2}]}, r"parts\[0\]: unknown keys \['sise'\]"),
    ({"part": {"name": "y", "extra": 1}}, r"part: unknown keys \['extra'\]"),
    ({"mode": "c"}, r"mode: expected one of \['a', 'b'\]"),
    ({"parts": [{"name": "x", "size": 1.5}]}, r"parts\[0\]\.size: expected an integer"),
    ({"sides": 4}, r"sides: expected a list"),
])
def test_unknown_keys_and_bad_values_are_errors_that_say_where(raw, message):
    with pytest.raises(ValueError, match=message):
        from_mapping(Whole, raw)


def test_a_service_settings_file_with_an_unknown_key_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("PORTRAITSR_API_KEY", "a client's variable, not a setting")  # ignored in the environment
    good = tmp_path / "good.yaml"
    good.write_text("queue_max_length: 7\n")
    assert load_settings(good).queue_max_length == 7
    typo = tmp_path / "typo.yaml"
    typo.write_text("queue_max_lenght: 7\n")
    with pytest.raises(ValueError, match=r"typo.yaml: unknown keys \['queue_max_lenght'\]"):
        load_settings(typo)
