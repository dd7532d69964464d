"""Fixtures shared by the role's unit tests.

The router runtime (``router/``) imports the engine as the top-level package ``engine``,
as it is installed on the router; its tests import both the same way.
"""
from __future__ import annotations

import json
import os
import sys

import pytest
from ansible_collections.netops.multihome.plugins.module_utils.engine.model.role import build_model
from ansible_collections.netops.multihome.plugins.module_utils.engine.paths import Paths

from .test_model import GOOD

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
for _path in (ROOT, os.path.join(ROOT, "plugins", "module_utils")):
    if _path not in sys.path:
        sys.path.insert(0, _path)


@pytest.fixture
def router(tmp_path):
    """A router's file layout under tmp_path with the saved model of the GOOD variables."""
    paths = Paths.default(str(tmp_path))
    os.makedirs(os.path.dirname(paths.model))
    model = build_model(GOOD)
    with open(paths.model, "w") as fh:
        json.dump(model, fh)
    return paths, model
