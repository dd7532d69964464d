"""Stand-in for the get-pip bootstrap script that ansible-test downloads from
ci-files.testing.ansible.com, a host this build cannot reach.

ansible-test runs it inside a fresh `venv --without-pip` with pip's own arguments plus
get-pip's `--no-setuptools`/`--no-wheel`. Pip comes from the interpreter's bundled
`ensurepip` wheel, then pip installs the pinned versions ansible-test asked for from PyPI,
so the sanity environments end up with the same packages as with the real script.
"""
import subprocess
import sys

GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}


def main() -> None:
    args = [a for a in sys.argv[1:] if a not in GET_PIP_ONLY]
    subprocess.run([sys.executable, "-m", "ensurepip", "--default-pip"], check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run([sys.executable, "-m", "pip", "install", *args], check=True)


if __name__ == "__main__":
    main()
