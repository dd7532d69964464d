"""The hook's fast path: the event handed to the running monitor over its socket."""
from __future__ import annotations

import os
import socket
import threading

from engine.hook import protocol as hookclient

from router.monitor import Monitor

from .test_hook import lsm_argv


def _serve_once(monitor: Monitor, server: socket.socket) -> threading.Thread:
    thread = threading.Thread(target=monitor.serve_hook, args=(server,), daemon=True)
    thread.start()
    return thread


def test_monitor_answers_the_hook_and_refuses_hostile_input(router) -> None:
    paths = router[0]
    monitor = Monitor(paths)
    server = monitor._listen()
    path = os.path.join(paths.run_dir, "hook.sock")
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.stat(paths.run_dir).st_mode & 0o777 == 0o700
    try:
        thread = _serve_once(monitor, server)
        reply = hookclient.ask(lsm_argv("down", "isp1;reboot"), path)
        thread.join(5)
    finally:
        server.close()
    assert reply["rc"] == 2 and "refused event" in reply["line"]
    with open(paths.events) as fh:
        log = fh.read()
    assert "refused event" in log and "isp1;reboot" in log
    assert not os.path.exists(paths.state_dir)


def test_no_monitor_means_no_answer(tmp_path) -> None:
    assert hookclient.ask(["up", "isp1"], str(tmp_path / "absent.sock")) is None


def test_malformed_request_gets_no_answer(router) -> None:
    paths = router[0]
    monitor = Monitor(paths)
    server = monitor._listen()
    try:
        thread = _serve_once(monitor, server)
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(os.path.join(paths.run_dir, "hook.sock"))
        client.sendall(b"not-a-time\0up\0isp1")
        client.shutdown(socket.SHUT_WR)
        assert client.recv(100) == b""
        client.close()
        thread.join(5)
    finally:
        server.close()
    with open(paths.events) as fh:
        assert "hook request not understood" in fh.read()


def test_request_round_trip_keeps_empty_and_odd_arguments() -> None:
    argv = ["up", "isp1", "", "", "x;y", "\u00e9"]
    assert hookclient.decode(hookclient.encode(argv, 12.5)) == (argv, 12.5)
    assert hookclient.decode(hookclient.encode([], 1.0)) == ([], 1.0)
