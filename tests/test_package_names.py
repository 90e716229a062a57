"""PortraitSR installs `model`, `training` and `service` as top-level names (docs/architecture.md,
"Package names"). Another distribution providing one of them would shadow our code or be shadowed
by it; this makes that fail loudly instead."""

from __future__ import annotations

from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
OUR_NAMES = ("portraitsr", "model", "training", "service")


@pytest.mark.parametrize("name", OUR_NAMES)
def test_no_other_installed_distribution_provides_our_top_level_names(name):
    assert set(packages_distributions().get(name, [])) == {"portraitsr"}


@pytest.mark.parametrize("name", OUR_NAMES)
def test_our_names_import_this_repository(name):
    module = __import__(name)
    assert Path(module.__file__).resolve().parent.parent == REPO
