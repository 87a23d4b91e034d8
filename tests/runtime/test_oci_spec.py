"""build_spec: containerd's default spec with docker's merge rules (pure, no containerd)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from berth.contract import BindMount, ContainerConfig, Resources, VolumeMount
from berth.errors import InvalidParameter
from berth.runtime.oci_spec import DEFAULT_CAPABILITIES, build_spec, with_bind_sources

CONTAINER_ID = "0123456789abcdef" * 4
IMAGE = {"Entrypoint": ["/entry"], "Cmd": ["image-cmd"], "Env": ["PATH=/image/bin", "A=image"]}


def _config(**fields: Any) -> ContainerConfig:
    return ContainerConfig(name="web-1", image="local/busybox:latest", **fields)


def _spec(
    config: ContainerConfig | None = None,
    image: dict[str, Any] | None = None,
    rootfs: Path = Path("/nonexistent-rootfs"),
    netns: Path | None = None,
) -> dict[str, Any]:
    return build_spec(
        CONTAINER_ID, config or _config(), IMAGE if image is None else image, rootfs, netns
    )


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/home/app:/bin/sh\n"
    )
    (tmp_path / "etc/group").write_text("root:x:0:\napp:x:1001:\nstaff:x:50:app,other\n")
    return tmp_path


def test_build_spec_no_overrides_runs_image_entrypoint_and_cmd() -> None:
    assert _spec()["process"]["args"] == ["/entry", "image-cmd"]


def test_build_spec_container_entrypoint_drops_image_cmd() -> None:
    assert _spec(_config(entrypoint=["/mine"]))["process"]["args"] == ["/mine"]


def test_build_spec_container_entrypoint_and_cmd_uses_both() -> None:
    spec = _spec(_config(entrypoint=["/mine"], cmd=["arg"]))
    assert spec["process"]["args"] == ["/mine", "arg"]


def test_build_spec_container_cmd_replaces_image_cmd_keeps_entrypoint() -> None:
    assert _spec(_config(cmd=["mine"]))["process"]["args"] == ["/entry", "mine"]


def test_build_spec_empty_entrypoint_clears_image_entrypoint_keeps_cmd() -> None:
    assert _spec(_config(entrypoint=[]))["process"]["args"] == ["image-cmd"]


def test_build_spec_no_command_anywhere_raises_invalid_parameter() -> None:
    with pytest.raises(InvalidParameter):
        _spec(image={})


def test_build_spec_container_env_wins_by_key_and_keeps_order() -> None:
    env = _spec(_config(env=["A=mine", "B=new"]))["process"]["env"]
    assert env == ["PATH=/image/bin", f"HOSTNAME={CONTAINER_ID[:12]}", "A=mine", "B=new"]


def test_build_spec_image_without_path_gets_default_path() -> None:
    env = _spec(image={"Cmd": ["sh"]})["process"]["env"]
    assert env[0] == "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def test_build_spec_cwd_prefers_container_then_image_then_root() -> None:
    assert (
        _spec(_config(working_dir="/srv"), {**IMAGE, "WorkingDir": "/img"})["process"]["cwd"]
        == "/srv"
    )
    assert _spec(image={**IMAGE, "WorkingDir": "/img"})["process"]["cwd"] == "/img"
    assert _spec()["process"]["cwd"] == "/"


def test_build_spec_empty_user_runs_as_root() -> None:
    assert _spec()["process"]["user"] == {"uid": 0, "gid": 0}


def test_build_spec_numeric_user_and_group_used_as_is() -> None:
    assert _spec(_config(user="123:456"))["process"]["user"] == {"uid": 123, "gid": 456}


def test_build_spec_numeric_user_in_passwd_takes_its_gid(rootfs: Path) -> None:
    user = _spec(_config(user="1000"), rootfs=rootfs)["process"]["user"]
    assert (user["uid"], user["gid"]) == (1000, 1001)


def test_build_spec_named_user_resolves_from_rootfs_with_groups(rootfs: Path) -> None:
    user = _spec(_config(user="app"), rootfs=rootfs)["process"]["user"]
    assert user == {"uid": 1000, "gid": 1001, "additionalGids": [50]}


def test_build_spec_named_group_resolves_from_rootfs(rootfs: Path) -> None:
    user = _spec(_config(user="0:staff"), rootfs=rootfs)["process"]["user"]
    assert (user["uid"], user["gid"]) == (0, 50)


def test_build_spec_image_user_applies_when_container_gives_none(rootfs: Path) -> None:
    user = _spec(image={**IMAGE, "User": "app"}, rootfs=rootfs)["process"]["user"]
    assert user["uid"] == 1000


def test_build_spec_unknown_user_raises_invalid_parameter(rootfs: Path) -> None:
    with pytest.raises(InvalidParameter, match="nobody-here"):
        _spec(_config(user="nobody-here"), rootfs=rootfs)


def test_build_spec_unknown_group_raises_invalid_parameter(rootfs: Path) -> None:
    with pytest.raises(InvalidParameter, match="nogroup"):
        _spec(_config(user="app:nogroup"), rootfs=rootfs)


def test_build_spec_absolute_passwd_symlink_resolves_inside_rootfs(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "data").mkdir()
    (rootfs / "data/passwd").write_text("root:x:7:8:root:/root:/bin/sh\n")
    (rootfs / "etc/passwd").symlink_to("/data/passwd")  # the rootfs' /data, not the host's
    user = _spec(_config(user="root"), rootfs=rootfs)["process"]["user"]
    assert (user["uid"], user["gid"]) == (7, 8)


def test_build_spec_passwd_symlink_escaping_with_dotdot_stays_inside(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (tmp_path / "passwd").write_text("evil:x:0:0::/:/bin/sh\n")
    (rootfs / "etc/passwd").symlink_to("../../../passwd")
    with pytest.raises(InvalidParameter):
        _spec(_config(user="evil"), rootfs=rootfs)


def test_build_spec_fifo_passwd_raises_invalid_parameter_without_blocking(rootfs: Path) -> None:
    (rootfs / "etc/passwd").unlink()
    os.mkfifo(rootfs / "etc/passwd")  # read as before, this would block forever
    with pytest.raises(InvalidParameter, match=r"/etc/passwd .*FIFO"):
        _spec(_config(user="app"), rootfs=rootfs)


def test_build_spec_oversize_group_raises_invalid_parameter(rootfs: Path) -> None:
    (rootfs / "etc/group").write_bytes(b"g:x:1:\n" * 200_000)
    with pytest.raises(InvalidParameter, match=r"/etc/group .*larger than"):
        _spec(_config(user="app"), rootfs=rootfs)


def test_build_spec_empty_user_reads_no_rootfs_file(rootfs: Path) -> None:
    (rootfs / "etc/passwd").unlink()
    os.mkfifo(rootfs / "etc/passwd")
    assert _spec(rootfs=rootfs)["process"]["user"] == {"uid": 0, "gid": 0}


def test_build_spec_root_is_the_rootfs_path_writable() -> None:
    assert _spec(rootfs=Path("/r/x"))["root"] == {"path": "/r/x", "readonly": False}


def test_build_spec_hostname_is_first_12_chars_of_id() -> None:
    assert _spec()["hostname"] == CONTAINER_ID[:12]


def test_build_spec_netns_joins_that_network_namespace() -> None:
    namespaces = _spec(netns=Path("/run/netns/x"))["linux"]["namespaces"]
    assert {"type": "network", "path": "/run/netns/x"} in namespaces
    assert {n["type"] for n in namespaces} == {"pid", "ipc", "uts", "mount", "network"}


def test_build_spec_no_netns_uses_host_network() -> None:
    namespaces = _spec()["linux"]["namespaces"]
    assert "network" not in {n["type"] for n in namespaces}


def test_build_spec_resources_become_cgroup_limits() -> None:
    config = _config(resources=Resources(memory_bytes=64 << 20, cpu_shares=512, pids_limit=100))
    resources = _spec(config)["linux"]["resources"]
    assert resources["memory"]["limit"] == 64 << 20  # swap: tests/runtime/test_oci_spec_resources
    assert resources["cpu"] == {"shares": 512}
    assert resources["pids"] == {"limit": 100}


def test_build_spec_no_resources_sets_no_limits() -> None:
    assert set(_spec()["linux"]["resources"]) == {"devices"}


def test_build_spec_cgroups_path_is_under_berth() -> None:
    assert _spec()["linux"]["cgroupsPath"] == f"/berth/{CONTAINER_ID}"


def test_build_spec_capabilities_are_containerd_defaults() -> None:
    caps = _spec()["process"]["capabilities"]
    assert caps["bounding"] == caps["effective"] == caps["permitted"] == DEFAULT_CAPABILITIES
    assert "inheritable" not in caps


def test_build_spec_default_mounts_present() -> None:
    mounts = {m["destination"]: m for m in _spec()["mounts"]}
    expected = {"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"}
    assert set(mounts) == expected
    assert "ro" in mounts["/sys"]["options"] and "ro" in mounts["/sys/fs/cgroup"]["options"]


def test_build_spec_process_has_no_new_privileges_and_nofile_rlimit() -> None:
    process = _spec()["process"]
    assert process["noNewPrivileges"] is True
    assert process["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]


def test_build_spec_masked_and_readonly_paths_are_defaults() -> None:
    linux = _spec()["linux"]
    assert "/proc/kcore" in linux["maskedPaths"]
    assert "/proc/sys" in linux["readonlyPaths"]


def test_build_spec_same_input_same_spec() -> None:
    assert _spec() == _spec()
    assert _spec()["ociVersion"] == "1.0.2"


def test_spec_has_dockers_default_seccomp_profile_by_default() -> None:
    seccomp = _spec()["linux"]["seccomp"]

    assert seccomp["defaultAction"] == "SCMP_ACT_ERRNO"
    assert "read" in seccomp["syscalls"][0]["names"]


def test_spec_unconfined_has_no_seccomp_section() -> None:
    spec = build_spec(CONTAINER_ID, _config(), IMAGE, Path("/nonexistent"), None, seccomp=None)

    assert "seccomp" not in spec["linux"]


def test_spec_binds_take_the_sources_the_node_resolved() -> None:
    config = _config(binds=[BindMount(source="/srv/link", target="/data", read_only=True)])

    spec = build_spec(
        CONTAINER_ID, config, IMAGE, Path("/nonexistent"), None, bind_sources=["/srv/real"]
    )

    assert spec["mounts"][-1] == {
        "destination": "/data",
        "type": "bind",
        "source": "/srv/real",
        "options": ["rbind", "rprivate", "ro"],
    }


def test_with_bind_sources_rewrites_only_the_containers_binds_in_order() -> None:
    binds = [BindMount(source="/a", target="/x"), BindMount(source="/b", target="/x")]
    spec = build_spec(CONTAINER_ID, _config(binds=binds), IMAGE, Path("/nonexistent"), None)

    rewritten = with_bind_sources(spec, binds, ["/pins/0", "/pins/1"])

    assert [m["source"] for m in rewritten["mounts"][-2:]] == ["/pins/0", "/pins/1"]
    assert rewritten["mounts"][:-2] == spec["mounts"][:-2]
    assert [m["source"] for m in spec["mounts"][-2:]] == ["/a", "/b"]  # the input is untouched


def test_with_bind_sources_for_a_bind_the_spec_lacks_is_invalid_parameter() -> None:
    spec = build_spec(CONTAINER_ID, _config(), IMAGE, Path("/nonexistent"), None)

    with pytest.raises(InvalidParameter, match=r"config\.binds\[0\]"):
        with_bind_sources(spec, [BindMount(source="/a", target="/x")], ["/pins/0"])


ETC = [
    ("/etc/hostname", Path("/node/c/hostname")),
    ("/etc/hosts", Path("/node/c/hosts")),
    ("/etc/resolv.conf", Path("/node/c/resolv.conf")),
]


def _etc_spec(config: ContainerConfig) -> dict[str, Any]:
    return build_spec(CONTAINER_ID, config, IMAGE, Path("/nonexistent-rootfs"), None, etc_files=ETC)


def test_build_spec_etc_files_bound_over_the_images_read_write() -> None:
    mounts = {m["destination"]: m for m in _etc_spec(_config())["mounts"]}
    for target, source in ETC:
        assert mounts[target]["source"] == str(source)
        assert mounts[target]["options"] == ["rbind", "rprivate", "rw"]


def test_build_spec_client_bind_of_etc_hosts_replaces_the_generated_one() -> None:
    config = _config(binds=[BindMount(source="/srv/hosts", target="/etc/hosts", read_only=True)])
    hosts = [m for m in _etc_spec(config)["mounts"] if m["destination"] == "/etc/hosts"]
    assert [m["source"] for m in hosts] == ["/srv/hosts"]


def test_build_spec_named_volumes_bind_the_nodes_directories_after_the_binds() -> None:
    config = _config(
        binds=[BindMount(source="/srv/a", target="/a")],
        volumes=[
            VolumeMount(name="data", target="/data"),
            VolumeMount(name="logs", target="/logs", read_only=True),
        ],
    )

    spec = build_spec(
        CONTAINER_ID,
        config,
        IMAGE,
        Path("/nonexistent"),
        None,
        volume_sources=["/node/volumes/data/_data", "/node/volumes/logs/_data"],
    )

    assert spec["mounts"][-2:] == [
        {
            "destination": "/data",
            "type": "bind",
            "source": "/node/volumes/data/_data",
            "options": ["rbind", "rprivate", "rw"],
        },
        {
            "destination": "/logs",
            "type": "bind",
            "source": "/node/volumes/logs/_data",
            "options": ["rbind", "rprivate", "ro"],
        },
    ]


def test_build_spec_without_the_volumes_directories_is_an_error() -> None:
    config = _config(volumes=[VolumeMount(name="data", target="/data")])

    with pytest.raises(ValueError):
        build_spec(CONTAINER_ID, config, IMAGE, Path("/nonexistent"), None)


def test_build_spec_named_volume_at_etc_hosts_replaces_the_generated_one() -> None:
    config = _config(volumes=[VolumeMount(name="hosts", target="/etc/hosts")])
    spec = build_spec(
        CONTAINER_ID,
        config,
        IMAGE,
        Path("/nonexistent-rootfs"),
        None,
        etc_files=ETC,
        volume_sources=["/v/_data"],
    )
    hosts = [m for m in spec["mounts"] if m["destination"] == "/etc/hosts"]
    assert [m["source"] for m in hosts] == ["/v/_data"]


def test_build_spec_hostname_given_sets_uts_hostname_and_env() -> None:
    spec = _spec(_config(hostname="web.example"))
    assert spec["hostname"] == "web.example"
    assert "HOSTNAME=web.example" in spec["process"]["env"]


def test_build_spec_no_hostname_uses_the_short_id() -> None:
    assert _spec()["hostname"] == CONTAINER_ID[:12]
