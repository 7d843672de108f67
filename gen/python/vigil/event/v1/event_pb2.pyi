from vigil.detection.v1 import detection_pb2 as _detection_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EvidenceKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVIDENCE_KIND_UNSPECIFIED: _ClassVar[EvidenceKind]
    EVIDENCE_KIND_JSON: _ClassVar[EvidenceKind]
    EVIDENCE_KIND_ROI: _ClassVar[EvidenceKind]
    EVIDENCE_KIND_BOX: _ClassVar[EvidenceKind]
EVIDENCE_KIND_UNSPECIFIED: EvidenceKind
EVIDENCE_KIND_JSON: EvidenceKind
EVIDENCE_KIND_ROI: EvidenceKind
EVIDENCE_KIND_BOX: EvidenceKind

class EvidenceUnit(_message.Message):
    __slots__ = ("kind", "size_bytes", "content_type", "payload")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    kind: EvidenceKind
    size_bytes: int
    content_type: str
    payload: bytes
    def __init__(self, kind: _Optional[_Union[EvidenceKind, str]] = ..., size_bytes: _Optional[int] = ..., content_type: _Optional[str] = ..., payload: _Optional[bytes] = ...) -> None: ...

class Producer(_message.Message):
    __slots__ = ("kind", "name", "random_init", "note", "adapter")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RANDOM_INIT_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    random_init: bool
    note: str
    adapter: str
    def __init__(self, kind: _Optional[str] = ..., name: _Optional[str] = ..., random_init: _Optional[bool] = ..., note: _Optional[str] = ..., adapter: _Optional[str] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("event_id", "camera_id", "frame_seq", "pts_s", "capture_time_ns", "created_time_ns", "level", "score", "trigger_score", "detections", "producer", "json", "roi", "box", "stage_ms")
    class StageMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    FRAME_SEQ_FIELD_NUMBER: _ClassVar[int]
    PTS_S_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    CREATED_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_SCORE_FIELD_NUMBER: _ClassVar[int]
    DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    ROI_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    STAGE_MS_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    camera_id: str
    frame_seq: int
    pts_s: float
    capture_time_ns: int
    created_time_ns: int
    level: int
    score: float
    trigger_score: float
    detections: _containers.RepeatedCompositeFieldContainer[_detection_pb2.Detection]
    producer: Producer
    json: EvidenceUnit
    roi: EvidenceUnit
    box: EvidenceUnit
    stage_ms: _containers.ScalarMap[str, float]
    def __init__(self, event_id: _Optional[str] = ..., camera_id: _Optional[str] = ..., frame_seq: _Optional[int] = ..., pts_s: _Optional[float] = ..., capture_time_ns: _Optional[int] = ..., created_time_ns: _Optional[int] = ..., level: _Optional[int] = ..., score: _Optional[float] = ..., trigger_score: _Optional[float] = ..., detections: _Optional[_Iterable[_Union[_detection_pb2.Detection, _Mapping]]] = ..., producer: _Optional[_Union[Producer, _Mapping]] = ..., json: _Optional[_Union[EvidenceUnit, _Mapping]] = ..., roi: _Optional[_Union[EvidenceUnit, _Mapping]] = ..., box: _Optional[_Union[EvidenceUnit, _Mapping]] = ..., stage_ms: _Optional[_Mapping[str, float]] = ...) -> None: ...
