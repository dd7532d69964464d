# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lookup of netops.multihome: the engine packed as one reproducible tar on the controller."""
from __future__ import annotations

DOCUMENTATION = """
name: engine_bundle
short_description: Pack the collection's engine into one reproducible tar file
description:
  - Returns the controller path of a tar holding C(plugins/module_utils/engine/*.py) with
    fixed owners, modes and times, so the same sources always give the same bytes and
    copying it to a router is idempotent. The file name carries the content's SHA-256.
options:
  _terms:
    description: The engine directory (default, the collection's own).
    required: false
"""

EXAMPLES = """
- name: Copy the engine bundle
  ansible.builtin.copy:
    src: "{{ lookup('netops.multihome.engine_bundle') }}"
    dest: /usr/local/lib/netops-multihome/engine.tar
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

ENGINE_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "module_utils", "engine"
)


def build(engine_dir: str) -> bytes:
    names = sorted(n for n in os.listdir(engine_dir) if n.endswith(".py"))
    if "__init__.py" not in names:
        raise AnsibleLookupError(f"engine_bundle: {engine_dir} is not the engine package")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in names:
            with open(os.path.join(engine_dir, name), "rb") as fh:
                data = fh.read()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        engine_dir = terms[0] if terms else ENGINE_DIR
        data = build(engine_dir)
        digest = hashlib.sha256(data).hexdigest()[:16]
        path = os.path.join(tempfile.gettempdir(), f"netops-multihome-engine-{digest}.tar")
        if not os.path.exists(path):
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path))
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        return [path]
