from vigil.event.v1 import event_pb2 as _event_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Alert(_message.Message):
    __slots__ = ("event_id", "camera_id", "frame_seq", "pts_s", "capture_time_ns", "level", "score", "event_json", "producer", "created_time_ns", "sent_time_ns", "roi_bytes", "box_bytes")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    FRAME_SEQ_FIELD_NUMBER: _ClassVar[int]
    PTS_S_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    EVENT_JSON_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_FIELD_NUMBER: _ClassVar[int]
    CREATED_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    SENT_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    ROI_BYTES_FIELD_NUMBER: _ClassVar[int]
    BOX_BYTES_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    camera_id: str
    frame_seq: int
    pts_s: float
    capture_time_ns: int
    level: int
    score: float
    event_json: str
    producer: _event_pb2.Producer
    created_time_ns: int
    sent_time_ns: int
    roi_bytes: int
    box_bytes: int
    def __init__(self, event_id: _Optional[str] = ..., camera_id: _Optional[str] = ..., frame_seq: _Optional[int] = ..., pts_s: _Optional[float] = ..., capture_time_ns: _Optional[int] = ..., level: _Optional[int] = ..., score: _Optional[float] = ..., event_json: _Optional[str] = ..., producer: _Optional[_Union[_event_pb2.Producer, _Mapping]] = ..., created_time_ns: _Optional[int] = ..., sent_time_ns: _Optional[int] = ..., roi_bytes: _Optional[int] = ..., box_bytes: _Optional[int] = ...) -> None: ...

class Evidence(_message.Message):
    __slots__ = ("event_id", "camera_id", "unit", "sent_time_ns")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    SENT_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    camera_id: str
    unit: _event_pb2.EvidenceUnit
    sent_time_ns: int
    def __init__(self, event_id: _Optional[str] = ..., camera_id: _Optional[str] = ..., unit: _Optional[_Union[_event_pb2.EvidenceUnit, _Mapping]] = ..., sent_time_ns: _Optional[int] = ...) -> None: ...
