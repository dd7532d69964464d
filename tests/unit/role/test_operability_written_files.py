"""The files the monitor writes outside the collection's directories, which teardown removes:
the metrics textfile in the directory operability.json names, none when metrics are off."""
from __future__ import annotations

import json

from router.operability import config_path, written_files


def test_written_files_is_the_metrics_textfile_in_the_configured_directory(router) -> None:
    paths, _model = router
    assert written_files(paths) == ["/var/lib/prometheus/node-exporter/multihome.prom"]  # the default
    with open(config_path(paths), "w") as fh:
        json.dump({"metrics_dir": "/srv/textfiles"}, fh)
    assert written_files(paths) == ["/srv/textfiles/multihome.prom"]


def test_written_files_is_empty_when_the_metrics_file_is_off(router) -> None:
    paths, _model = router
    with open(config_path(paths), "w") as fh:
        json.dump({"metrics_dir": ""}, fh)
    assert written_files(paths) == []
