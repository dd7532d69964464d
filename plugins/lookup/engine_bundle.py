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
  - The tar is written to a folder only this user can reach (never a predictable shared path),
    and its SHA-256 is checked before the path is returned; an existing file is reused only
    when its own digest matches.
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

import contextlib  # noqa: E402
import hashlib  # noqa: E402
import io  # noqa: E402
import os  # noqa: E402
import stat  # noqa: E402
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


def _private_dir() -> str:
    """This user's cache folder in the temp dir, used only when it is a real folder owned
    by this user that nobody else can write or read; otherwise a fresh private folder."""
    path = os.path.join(tempfile.gettempdir(), f"netops-multihome-{os.getuid()}")
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077:
        return path
    return tempfile.mkdtemp(prefix="netops-multihome-")


def _digest_of(path: str) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            sha.update(chunk)
    return sha.hexdigest()


def write_verified(data: bytes, directory: str) -> str:
    """Path of a file in DIRECTORY holding exactly DATA, checked by its SHA-256 after it is
    written; a file already there is used only when its own digest matches."""
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(directory, f"runtime-{digest}.tar")
    if os.path.isfile(path) and not os.path.islink(path) and _digest_of(path) == digest:
        return path
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".runtime-")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
    if _digest_of(path) != digest:
        raise AnsibleLookupError(f"engine_bundle: {path} does not hold the bundle just written")
    return path


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        data = build(terms[0] if terms else COLLECTION_ROOT)
        return [write_verified(data, _private_dir())]
