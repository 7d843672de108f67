from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class Frame(_message.Message):
    __slots__ = ("camera_id", "seq", "pts_s", "capture_time_ns", "width", "height", "jpeg", "source", "live")
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    PTS_S_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    JPEG_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    camera_id: str
    seq: int
    pts_s: float
    capture_time_ns: int
    width: int
    height: int
    jpeg: bytes
    source: str
    live: bool
    def __init__(self, camera_id: _Optional[str] = ..., seq: _Optional[int] = ..., pts_s: _Optional[float] = ..., capture_time_ns: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., jpeg: _Optional[bytes] = ..., source: _Optional[str] = ..., live: _Optional[bool] = ...) -> None: ...
