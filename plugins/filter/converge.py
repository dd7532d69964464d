"""Filter of netops.multihome: the digest the role's fast path compares with the router's record."""
from __future__ import annotations

import hashlib
import json
import os

from ansible.errors import AnsibleFilterError

COLLECTION_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Everything of the collection that decides what a converge puts on a router.
SOURCES = ("galaxy.yml", "roles/multihome", "plugins", "router")
_collection_digests = {}


def _files(root):
    for source in SOURCES:
        top = os.path.join(root, source)
        if os.path.isfile(top):
            yield top
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for name in sorted(filenames):
                if not name.endswith((".pyc", ".md")):
                    yield os.path.join(dirpath, name)


def collection_digest(root=COLLECTION_ROOT):
    """SHA-256 over the collection's role, plugins and router runtime (names and contents)."""
    if root not in _collection_digests:
        sha = hashlib.sha256()
        for path in _files(root):
            with open(path, "rb") as fh:
                data = fh.read()
            sha.update(f"{os.path.relpath(path, root)}\0{len(data)}\0".encode())
            sha.update(data)
        _collection_digests[root] = sha.hexdigest()
    return _collection_digests[root]


def converge_digest(inputs):
    if not isinstance(inputs, dict):
        raise AnsibleFilterError(f"converge_digest expects a dict of the role's inputs, "
                                 f"got {type(inputs).__name__}")
    try:
        text = json.dumps(inputs, sort_keys=True, default=str)
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"converge_digest: the inputs are not JSON: {exc}") from None
    return hashlib.sha256(f"{collection_digest()}\0{text}".encode()).hexdigest()


class FilterModule:
    def filters(self):
        return {"converge_digest": converge_digest}
