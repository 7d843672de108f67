from vigil.memory.v1 import memory_pb2 as _memory_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AskRequest(_message.Message):
    __slots__ = ("question", "camera_id", "range", "mode", "max_frames", "seed", "include_images")
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    MAX_FRAMES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_IMAGES_FIELD_NUMBER: _ClassVar[int]
    question: str
    camera_id: str
    range: _memory_pb2.TimeRange
    mode: _memory_pb2.RetrievalMode
    max_frames: int
    seed: int
    include_images: bool
    def __init__(self, question: _Optional[str] = ..., camera_id: _Optional[str] = ..., range: _Optional[_Union[_memory_pb2.TimeRange, _Mapping]] = ..., mode: _Optional[_Union[_memory_pb2.RetrievalMode, str]] = ..., max_frames: _Optional[int] = ..., seed: _Optional[int] = ..., include_images: _Optional[bool] = ...) -> None: ...

class AskResponse(_message.Message):
    __slots__ = ("answer", "keyframes", "used_times_s", "vlm_ran", "vlm", "random_init", "notes", "retrieval", "answer_ms")
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    KEYFRAMES_FIELD_NUMBER: _ClassVar[int]
    USED_TIMES_S_FIELD_NUMBER: _ClassVar[int]
    VLM_RAN_FIELD_NUMBER: _ClassVar[int]
    VLM_FIELD_NUMBER: _ClassVar[int]
    RANDOM_INIT_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    RETRIEVAL_FIELD_NUMBER: _ClassVar[int]
    ANSWER_MS_FIELD_NUMBER: _ClassVar[int]
    answer: str
    keyframes: _containers.RepeatedCompositeFieldContainer[_memory_pb2.Keyframe]
    used_times_s: _containers.RepeatedScalarFieldContainer[float]
    vlm_ran: bool
    vlm: str
    random_init: bool
    notes: _containers.RepeatedScalarFieldContainer[str]
    retrieval: _memory_pb2.RetrieveResponse
    answer_ms: float
    def __init__(self, answer: _Optional[str] = ..., keyframes: _Optional[_Iterable[_Union[_memory_pb2.Keyframe, _Mapping]]] = ..., used_times_s: _Optional[_Iterable[float]] = ..., vlm_ran: _Optional[bool] = ..., vlm: _Optional[str] = ..., random_init: _Optional[bool] = ..., notes: _Optional[_Iterable[str]] = ..., retrieval: _Optional[_Union[_memory_pb2.RetrieveResponse, _Mapping]] = ..., answer_ms: _Optional[float] = ...) -> None: ...
