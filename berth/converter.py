"""The data converter every Berth client and worker uses.

Pydantic JSON, with one change: input that fails validation becomes an ``InvalidParameter``
naming the fields, which fails the workflow at once instead of retrying its task forever.

The workers make a new payload converter for every workflow run, so the pydantic type
adapters are cached here, once per process, not per converter: building one costs about a
millisecond, and a fleet restart runs thousands of workflows.
"""

from __future__ import annotations

import functools
from typing import Any, get_args

import temporalio.api.common.v1
from pydantic import TypeAdapter, ValidationError
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import (
    BinaryNullPayloadConverter,
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
    EncodingPayloadConverter,
    JSONPlainPayloadConverter,
)

from berth.errors import InvalidParameter
from berth.validation import describe_validation_error as describe_validation_error


@functools.lru_cache(maxsize=1024)
def _cached_adapter(type_hint: Any) -> TypeAdapter[Any]:
    return TypeAdapter(type_hint)


def type_adapter(type_hint: Any) -> TypeAdapter[Any]:
    """The process-wide type adapter of a hint (an unhashable hint gets a fresh one)."""
    try:
        hash(type_hint)
    except TypeError:
        return TypeAdapter(type_hint)
    return _cached_adapter(type_hint)


class ValidatingJSONPayloadConverter(PydanticJSONPlainPayloadConverter):
    """Pydantic JSON whose validation failures are Berth's ``InvalidParameter``."""

    def from_payload(
        self, payload: temporalio.api.common.v1.Payload, type_hint: type | None = None
    ) -> Any:
        adapter = type_adapter(type_hint if type_hint is not None else Any)
        try:
            return adapter.validate_json(payload.data)
        except ValidationError as err:
            raise InvalidParameter(describe_validation_error(err)) from None


class ValidatingNullPayloadConverter(BinaryNullPayloadConverter):
    """``null`` is accepted only where ``None`` is: elsewhere it is an ``InvalidParameter``.

    Without this, a client sending ``null`` as a workflow's input hands the workflow ``None``,
    which fails its task on every retry instead of failing the workflow.
    """

    def from_payload(
        self, payload: temporalio.api.common.v1.Payload, type_hint: type | None = None
    ) -> Any:
        if not _admits_none(type_hint):
            raise InvalidParameter("invalid input: input: expected an object, got null")
        return super().from_payload(payload, type_hint)


def _admits_none(type_hint: object) -> bool:
    if type_hint is None or type_hint is Any or type_hint is type(None):
        return True
    return type(None) in get_args(type_hint)


class BerthPayloadConverter(CompositePayloadConverter):
    """The default converters, with JSON and null replaced by validating ones."""

    def __init__(self) -> None:
        replacements: dict[type, EncodingPayloadConverter] = {
            JSONPlainPayloadConverter: ValidatingJSONPayloadConverter(),
            BinaryNullPayloadConverter: ValidatingNullPayloadConverter(),
        }
        super().__init__(
            *(
                replacements.get(type(conv), conv)
                for conv in DefaultPayloadConverter.default_encoding_payload_converters
            )
        )


data_converter = DataConverter(payload_converter_class=BerthPayloadConverter)
