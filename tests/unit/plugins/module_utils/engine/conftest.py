"""The engine tests import their shared helpers (prt_support, test_policy_params) by bare
name. Plain pytest puts this directory on sys.path itself; ansible-test units imports tests
through the collection loader and does not, so do it here for both."""
from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
