"""The data converter every Berth client and worker uses.

Pydantic JSON, with one change: input that fails validation becomes an ``InvalidParameter``
naming the fields, which fails the workflow at once instead of retrying its task forever.
"""

from __future__ import annotations

from typing import Any

import temporalio.api.common.v1
from pydantic import ValidationError
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
)

from berth.errors import InvalidParameter


def describe_validation_error(err: ValidationError) -> str:
    """One line per bad field: ``config.name: Value error, Invalid container name ...``."""
    parts = []
    for item in err.errors():
        location = ".".join(str(part) for part in item["loc"]) or "input"
        parts.append(f"{location}: {item['msg']}")
    return "invalid input: " + "; ".join(parts)


class ValidatingJSONPayloadConverter(PydanticJSONPlainPayloadConverter):
    """Pydantic JSON whose validation failures are Berth's ``InvalidParameter``."""

    def from_payload(
        self, payload: temporalio.api.common.v1.Payload, type_hint: type | None = None
    ) -> Any:
        try:
            return super().from_payload(payload, type_hint)
        except ValidationError as err:
            raise InvalidParameter(describe_validation_error(err)) from None


class BerthPayloadConverter(CompositePayloadConverter):
    """The default converters with JSON replaced by :class:`ValidatingJSONPayloadConverter`."""

    def __init__(self) -> None:
        json_converter = ValidatingJSONPayloadConverter()
        super().__init__(
            *(
                json_converter if isinstance(conv, JSONPlainPayloadConverter) else conv
                for conv in DefaultPayloadConverter.default_encoding_payload_converters
            )
        )


data_converter = DataConverter(payload_converter_class=BerthPayloadConverter)
