"""Validated input: the shared vocabulary, the role model and the modules' typed params."""
