from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CopyMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COPY_MODE_ARCHIVE: _ClassVar[CopyMode]
    COPY_MODE_SOURCE: _ClassVar[CopyMode]
    COPY_MODE_CONTENTS: _ClassVar[CopyMode]
COPY_MODE_ARCHIVE: CopyMode
COPY_MODE_SOURCE: CopyMode
COPY_MODE_CONTENTS: CopyMode

class Chunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class CopyFromRequest(_message.Message):
    __slots__ = ("container_id", "path", "follow_link")
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_LINK_FIELD_NUMBER: _ClassVar[int]
    container_id: str
    path: str
    follow_link: bool
    def __init__(self, container_id: _Optional[str] = ..., path: _Optional[str] = ..., follow_link: _Optional[bool] = ...) -> None: ...

class CopyTarget(_message.Message):
    __slots__ = ("container_id", "path", "mode", "keep_owners")
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    KEEP_OWNERS_FIELD_NUMBER: _ClassVar[int]
    container_id: str
    path: str
    mode: CopyMode
    keep_owners: bool
    def __init__(self, container_id: _Optional[str] = ..., path: _Optional[str] = ..., mode: _Optional[_Union[CopyMode, str]] = ..., keep_owners: _Optional[bool] = ...) -> None: ...

class CopyToInput(_message.Message):
    __slots__ = ("target", "data")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    target: CopyTarget
    data: bytes
    def __init__(self, target: _Optional[_Union[CopyTarget, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class CopyToResult(_message.Message):
    __slots__ = ("entries", "bytes")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    entries: int
    bytes: int
    def __init__(self, entries: _Optional[int] = ..., bytes: _Optional[int] = ...) -> None: ...

class ExportRequest(_message.Message):
    __slots__ = ("container_id",)
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    container_id: str
    def __init__(self, container_id: _Optional[str] = ...) -> None: ...
