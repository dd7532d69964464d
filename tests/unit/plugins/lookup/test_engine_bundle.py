"""engine_bundle on the controller's real filesystem: nothing another local user planted is used."""
from __future__ import annotations

import hashlib
import os
import tempfile

import pytest
from ansible_collections.netops.multihome.plugins.lookup import engine_bundle


@pytest.fixture
def tmpdir_only(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def run_lookup() -> str:
    return engine_bundle.LookupModule().run([])[0]


def expected() -> bytes:
    return engine_bundle.build(engine_bundle.COLLECTION_ROOT)


def test_a_tar_planted_at_the_old_predictable_path_is_not_used(tmpdir_only) -> None:
    digest = hashlib.sha256(expected()).hexdigest()
    planted = tmpdir_only / f"netops-multihome-runtime-{digest[:16]}.tar"
    planted.write_bytes(b"evil")
    path = run_lookup()
    assert path != str(planted)
    with open(path, "rb") as fh:
        assert fh.read() == expected()
    assert planted.read_bytes() == b"evil"


def test_a_planted_file_in_the_bundle_folder_is_replaced_not_trusted(tmpdir_only) -> None:
    path = run_lookup()
    with open(path, "wb") as fh:
        fh.write(b"evil")
    assert run_lookup() == path
    with open(path, "rb") as fh:
        assert fh.read() == expected()


def test_another_users_folder_at_the_cache_path_is_not_used(tmpdir_only) -> None:
    """Needs root, as the lab does: the folder is handed to nobody (uid 65534)."""
    theirs = tmpdir_only / f"netops-multihome-{os.getuid()}"
    theirs.mkdir(mode=0o777)
    os.chmod(theirs, 0o777)
    os.chown(theirs, 65534, 65534)
    path = run_lookup()
    assert not path.startswith(str(theirs) + os.sep)
    st = os.stat(os.path.dirname(path))
    assert st.st_uid == os.getuid() and not st.st_mode & 0o077


def test_a_symlink_at_the_cache_path_is_not_followed(tmpdir_only) -> None:
    elsewhere = tmpdir_only / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (tmpdir_only / f"netops-multihome-{os.getuid()}").symlink_to(elsewhere)
    path = run_lookup()
    assert not path.startswith(str(elsewhere) + os.sep) and os.listdir(elsewhere) == []


def test_a_world_writable_cache_folder_of_ours_is_not_used(tmpdir_only) -> None:
    mine = tmpdir_only / f"netops-multihome-{os.getuid()}"
    mine.mkdir()
    os.chmod(mine, 0o777)
    assert not run_lookup().startswith(str(mine) + os.sep)
