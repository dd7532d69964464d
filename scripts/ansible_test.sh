#!/usr/bin/env bash
# Run ansible-test sanity and units on the built collection tarball (what users install).
# ansible-test wants the collection at ansible_collections/NS/NAME, outside any git work tree
# (inside one it only sees git-tracked files) and not behind a symlink, so the tarball is
# unpacked into a fresh temporary directory.
# ansible-test keeps its sanity venvs and the pip bootstrap script it would download from
# ci-files.testing.ansible.com under $HOME/.ansible/test: a HOME of its own, in .build, caches
# the venvs between runs and takes tests/sanity/get_pip_offline.py as that script.
# Usage: scripts/ansible_test.sh TARBALL VENV_BIN
set -euo pipefail
tarball=$(realpath "$1")
bin=$(realpath "$2")
root=$(cd "$(dirname "$0")/.." && pwd)
home="$root/.build/ansible-test-home"
mkdir -p "$home/.ansible/test/cache"
cp "$root/tests/sanity/get_pip_offline.py" "$home/.ansible/test/cache/get_pip_24_2.py"

work=$(mktemp -d /tmp/netops-multihome-ansible-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
coll="$work/ansible_collections/netops/multihome"
mkdir -p "$coll"
tar -xzf "$tarball" -C "$coll"
cd "$coll"

python=$("$bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
export HOME="$home" PATH="$bin:$PATH"
unset ANSIBLE_COLLECTIONS_PATH
# shellcheck and pslint need programs this project does not use (no shell or PowerShell in the
# collection's content).
"$bin/ansible-test" sanity --local --python "$python" --color no \
    --skip-test shellcheck --skip-test pslint
"$bin/ansible-test" units --local --python "$python" --color no
