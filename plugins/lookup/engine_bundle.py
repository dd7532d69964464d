# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lookup of netops.multihome: the engine and the router runtime packed as one reproducible tar."""
from __future__ import annotations

DOCUMENTATION = """
name: engine_bundle
short_description: Pack the engine and the router runtime into one reproducible tar file
description:
  - Returns the controller path of a tar holding every C(.py) file of two packages, C(engine/)
    (from C(plugins/module_utils/engine)) and C(router/) (the collection's C(router) folder,
    with the C(multihome) command, the monitor and the hook's body), with fixed owners,
    modes and times, so the same sources always give the same bytes and copying it to a
    router is idempotent. The file name carries the content's SHA-256.
  - Unpacked in one directory, C(router) imports the engine as the package C(engine).
options:
  _terms:
    description: The collection's root directory (default, this collection).
    required: false
"""

EXAMPLES = """
- name: Copy the engine bundle
  ansible.builtin.copy:
    src: "{{ lookup('netops.multihome.engine_bundle') }}"
    dest: /usr/local/lib/netops-multihome/runtime.tar
    mode: "0644"
"""

RETURN = """
_raw:
  description: Path of the tar on the controller.
  type: list
  elements: str
"""

import hashlib  # noqa: E402
import io  # noqa: E402
import os  # noqa: E402
import tarfile  # noqa: E402
import tempfile  # noqa: E402

from ansible.errors import AnsibleLookupError  # noqa: E402
from ansible.plugins.lookup import LookupBase  # noqa: E402

COLLECTION_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Package name on the router -> its folder in the collection.
PACKAGES = (("engine", os.path.join("plugins", "module_utils", "engine")), ("router", "router"))


def _sources(root: str):
    """(name in the tar, path on disk) of every .py file of both packages, sorted."""
    out = []
    for package, folder in PACKAGES:
        top = os.path.join(root, folder)
        if not os.path.isfile(os.path.join(top, "__init__.py")):
            raise AnsibleLookupError(f"engine_bundle: {top} is not the {package} package")
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            rel = os.path.relpath(dirpath, top)
            for name in filenames:
                if name.endswith(".py"):
                    arc = os.path.normpath(os.path.join(package, rel, name))
                    out.append((arc, os.path.join(dirpath, name)))
    return sorted(out)


def build(root: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for arc, path in _sources(root):
            with open(path, "rb") as fh:
                data = fh.read()
            info = tarfile.TarInfo(arc)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        data = build(terms[0] if terms else COLLECTION_ROOT)
        digest = hashlib.sha256(data).hexdigest()[:16]
        path = os.path.join(tempfile.gettempdir(), f"netops-multihome-runtime-{digest}.tar")
        if not os.path.exists(path):
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path))
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        return [path]
