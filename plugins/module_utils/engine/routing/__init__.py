"""Routing tables per uplink: kernel reads (ip -j), rt_tables names, planning, apply."""
