"""The public JSON contract validates at the edge and names the bad field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from berth.contract import ContainerConfig, ContainerStartInput

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
