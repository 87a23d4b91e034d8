"""The dev stack's registry: started by pid with the test image pushed, idempotent, stopped."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

import dev.stack
from berth.runtime.image import build_busybox_image
from dev.stack import StackPaths, bring_up_registry, describe_pid, stop_registry
from tests.support.stack import free_port


def test_bring_up_registry_serves_the_test_image_and_stop_registry_ends_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dev.stack, "REGISTRY_PORT", free_port())  # never the dev stack's
    paths = StackPaths(tmp_path)
    build_busybox_image(paths.busybox_tar, dev.stack.BUSYBOX_REF)
    marker = str(paths.registry.config_file)
    try:
        bring_up_registry(paths)
        pid = paths.pid_file("registry").read_text().strip()
        bring_up_registry(paths)  # a second up keeps the one that runs

        with urllib.request.urlopen(
            f"http://{paths.registry.address}/v2/berth/busybox/tags/list", timeout=5
        ) as answer:
            tags = json.load(answer)
        assert tags == {"name": "berth/busybox", "tags": ["latest"]}
        assert paths.pid_file("registry").read_text().strip() == pid
        assert describe_pid(paths, "registry", marker)[0]
    finally:
        stop_registry(paths)

    assert not describe_pid(paths, "registry", marker)[0]
    assert not paths.registry.answers()
