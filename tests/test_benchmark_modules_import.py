"""Every benchmark and check module imports: a module moved or renamed elsewhere breaks here, in
CI, rather than an hour into a benchmark run by hand. (They do no work at import time.)"""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from service_helpers import REPO

FIRST_PARTY = {"benchmarks", "checks", "service", "training", "model", "portraitsr"}
MODULES = sorted(
    f"{package}.{info.name}"
    for package in ("benchmarks", "checks")
    for info in pkgutil.iter_modules([str(REPO / package)])
)


@pytest.mark.parametrize("name", MODULES)
def test_the_module_imports(name):
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] in FIRST_PARTY:
            raise  # one of ours: a broken import
        pytest.skip(f"an optional package is not installed: {error.name}")
