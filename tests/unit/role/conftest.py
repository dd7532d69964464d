"""Fixtures shared by the role's unit tests."""
from __future__ import annotations

import json
import os

import pytest
from ansible_collections.netops.multihome.plugins.module_utils.engine.paths import Paths
from ansible_collections.netops.multihome.plugins.module_utils.engine.rolemodel import build_model

from .test_model import GOOD


@pytest.fixture
def router(tmp_path):
    """A router's file layout under tmp_path with the saved model of the GOOD variables."""
    paths = Paths.default(str(tmp_path))
    os.makedirs(os.path.dirname(paths.model))
    model = build_model(GOOD)
    with open(paths.model, "w") as fh:
        json.dump(model, fh)
    return paths, model
