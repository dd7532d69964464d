"""The router runtime of netops.multihome: the ``multihome`` command, the failover
monitor daemon and the LSM hook's body.

Runs only on the router, installed beside the engine (``/usr/local/lib/netops-multihome/
{engine,router}``) and importing it as the top-level package ``engine``. Standard library
only, Python >= 3.9.
"""
