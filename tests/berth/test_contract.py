"""The public JSON contract validates at the edge and names the bad field."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from berth.contract import (
    ContainerConfig,
    ContainerCreateInput,
    ContainerStartInput,
    FleetRestartInput,
    FleetSelector,
    HealthCheck,
    VolumeMount,
)
from berth.converter import data_converter
from berth.errors import InvalidParameter

IMAGE = "local/busybox:latest"


def field_of(err: pytest.ExceptionInfo[ValidationError]) -> str:
    return ".".join(str(part) for part in err.value.errors()[0]["loc"])


def test_config_with_docker_style_name_is_valid() -> None:
    config = ContainerConfig(name="/web-1.a_b", image=IMAGE)

    assert config.name == "web-1.a_b"


@pytest.mark.parametrize("name", ["-web", "a", "web/1", "wéb", "x" * 129])
def test_config_with_invalid_name_names_the_field(name: str) -> None:
    with pytest.raises(ValidationError) as err:
        ContainerConfig(name=name, image=IMAGE)

    assert field_of(err) == "name"


@pytest.mark.parametrize("image", ["", "BusyBox", "a b", "busybox:"])
def test_config_with_invalid_image_reference_names_the_field(image: str) -> None:
    with pytest.raises(ValidationError) as err:
        ContainerConfig(name="web", image=image)

    assert field_of(err) == "image"


def test_config_with_env_entry_without_equals_names_the_field() -> None:
    with pytest.raises(ValidationError) as err:
        ContainerConfig(name="web", image=IMAGE, env=["NOVALUE"])

    assert field_of(err) == "env"


def test_config_with_negative_resources_names_the_field() -> None:
    with pytest.raises(ValidationError) as err:
        ContainerConfig.model_validate(
            {"name": "web", "image": IMAGE, "resources": {"pids_limit": -1}}
        )

    assert field_of(err) == "resources.pids_limit"


def test_config_with_unknown_field_is_refused() -> None:
    with pytest.raises(ValidationError) as err:
        ContainerConfig.model_validate({"name": "web", "image": IMAGE, "imagee": "x"})

    assert field_of(err) == "imagee"


def test_config_with_retry_count_without_on_failure_is_refused() -> None:
    with pytest.raises(ValidationError):
        ContainerConfig.model_validate(
            {
                "name": "web",
                "image": IMAGE,
                "restart_policy": {"name": "always", "maximum_retry_count": 2},
            }
        )


def test_start_input_parses_plain_json() -> None:
    assert ContainerStartInput.model_validate_json('{"container": "web-1"}').container == "web-1"


# -- issue 12 item 9: the validation gaps, each refused at the edge naming its field ---------


def refused_field(model: type[BaseModel], data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as err:
        model.model_validate(data)
    return field_of(err)


def config(**fields: Any) -> dict[str, Any]:
    return {"name": "web", "image": IMAGE, **fields}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"labels": {"a\x00b": "v"}}, "labels"),
        ({"labels": {"k": "v\x00"}}, "labels"),
        ({"labels": {"k" * 200: "v" * 3897}}, "labels"),
        ({"working_dir": "/srv\x00/x"}, "working_dir"),
        ({"user": "root\x00"}, "user"),
        ({"user": "u" * 257}, "user"),
        ({"resources": {"pids_limit": 2**63}}, "resources.pids_limit"),
        ({"resources": {"memory_bytes": 2**64}}, "resources.memory_bytes"),
        ({"resources": {"cpu_shares": 2**63}}, "resources.cpu_shares"),
        ({"cmd": ["x"] * 4097}, "cmd"),
        ({"entrypoint": ["x"] * 4097}, "entrypoint"),
        ({"cmd": ["x" * (128 * 1024 + 1)]}, "cmd"),
        ({"cmd": ["x" * (100 * 1024)] * 11}, "cmd"),
        ({"healthcheck": {"test": ["CMD", "true"], "interval": 1e-9}}, "healthcheck.interval"),
        ({"healthcheck": {"test": ["CMD", "true"], "timeout": 0.0009}}, "healthcheck.timeout"),
        (
            {"healthcheck": {"test": ["CMD", "true"], "start_period": 1e-6}},
            "healthcheck.start_period",
        ),
        ({"name": "n" * 129}, "name"),
        ({"env": [f"K{i}=v" for i in range(1025)]}, "env"),
    ],
)
def test_config_with_validation_gap_names_the_field(fields: dict[str, Any], field: str) -> None:
    assert refused_field(ContainerConfig, config(**fields)) == field


def test_config_at_the_limits_is_valid() -> None:
    accepted = ContainerConfig.model_validate(
        config(
            labels={"k" * 200: "v" * 3896},
            resources={"pids_limit": 2**63 - 1, "memory_bytes": 2**63 - 1},
            cmd=["x"] * 4096,
            healthcheck={"test": ["CMD", "true"], "interval": 0.001, "timeout": 0.001},
        )
    )

    assert accepted.resources.pids_limit == 2**63 - 1 and len(accepted.cmd or []) == 4096


def test_health_durations_of_zero_mean_dockers_defaults() -> None:
    check = HealthCheck.model_validate(
        {"test": ["CMD", "true"], "interval": 0, "timeout": 0, "start_period": 0}
    )

    assert (check.interval, check.timeout, check.start_period) == (30.0, 30.0, 0.0)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "f", "selector": {"labels": {"app\x00": "web"}}}, "selector.labels"),
        ({"name": "f", "selector": {"labels": {"app": "w\x00"}}}, "selector.labels"),
        ({"name": "f", "selector": {"ids": ["x" * 12] * 10_001}}, "selector.ids"),
        ({"name": "f", "selector": {"ids": ["web\x00"]}}, "selector.ids.0"),
        ({"name": "f", "selector": {"node": "Node 1"}}, "selector.node"),
        ({"name": "f", "canary": 1_000_001}, "canary"),
        ({"name": "f", "max_failures": 2**63}, "max_failures"),
        ({"name": "f", "continue_as_new_after": 2**63}, "continue_as_new_after"),
        ({"name": "f", "carry": {"run_id": "someone-elses-run"}}, "carry.run_id"),
        ({"name": "f", "carry": {"acknowledged_failures": -1}}, "carry.acknowledged_failures"),
    ],
)
def test_fleet_input_with_validation_gap_names_the_field(data: dict[str, Any], field: str) -> None:
    assert refused_field(FleetRestartInput, data) == field


def test_fleet_selector_of_ten_thousand_ids_is_valid() -> None:
    ids = [f"{i:064x}" for i in range(10_000)]

    assert len(FleetSelector(ids=ids).ids) == 10_000


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"container": "web\x00"}, "container"),
        ({"container": "web", "checkpoint_dir": "/x\x00"}, "checkpoint_dir"),
        ({"container": "web", "checkpoint": "c" * 4097}, "checkpoint"),
    ],
)
def test_start_input_with_validation_gap_names_the_field(data: dict[str, Any], field: str) -> None:
    assert refused_field(ContainerStartInput, data) == field


def test_converter_turns_a_nul_label_into_invalid_parameter_naming_the_field() -> None:
    payload = data_converter.payload_converter.to_payloads(
        [{"config": config(labels={"k": "v\x00"})}]
    )[0]

    with pytest.raises(InvalidParameter, match=r"config\.labels: .*NUL"):
        data_converter.payload_converter.from_payloads([payload], [ContainerCreateInput])


@pytest.mark.parametrize("name", ["../x", "..", "a", "-a", "_a", "a/b", "a b", "x" * 256, "é1"])
def test_volume_mount_name_outside_docker_s_rule_is_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="invalid volume name"):
        VolumeMount(name=name, target="/data")


@pytest.mark.parametrize("name", ["db", "pg-data_1.x", "0a", "x" * 255])
def test_volume_mount_name_within_docker_s_rule_is_taken(name: str) -> None:
    assert VolumeMount(name=name, target="/data").name == name


@pytest.mark.parametrize("target", ["data", "/", "/a/../etc"])
def test_volume_mount_target_not_a_clean_absolute_path_is_refused(target: str) -> None:
    with pytest.raises(ValidationError):
        VolumeMount(name="db", target=target)


def test_container_config_volume_on_a_bind_or_tmpfs_target_is_a_duplicate_mount_point() -> None:
    volume = {"name": "db", "target": "/data/"}
    for clash in ({"binds": [{"source": "/srv", "target": "/data"}]}, {"tmpfs": {"/data": ""}}):
        with pytest.raises(ValidationError, match="duplicate mount point"):
            ContainerConfig(name="web", image="busybox", volumes=[volume], **clash)  # type: ignore[arg-type]
