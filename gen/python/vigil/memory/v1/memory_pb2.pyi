from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RetrievalMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RETRIEVAL_MODE_UNSPECIFIED: _ClassVar[RetrievalMode]
    RETRIEVAL_MODE_AKR: _ClassVar[RetrievalMode]
    RETRIEVAL_MODE_SAMPLE: _ClassVar[RetrievalMode]
    RETRIEVAL_MODE_TOP_K: _ClassVar[RetrievalMode]
RETRIEVAL_MODE_UNSPECIFIED: RetrievalMode
RETRIEVAL_MODE_AKR: RetrievalMode
RETRIEVAL_MODE_SAMPLE: RetrievalMode
RETRIEVAL_MODE_TOP_K: RetrievalMode

class TimeRange(_message.Message):
    __slots__ = ("since_s", "until_s")
    SINCE_S_FIELD_NUMBER: _ClassVar[int]
    UNTIL_S_FIELD_NUMBER: _ClassVar[int]
    since_s: float
    until_s: float
    def __init__(self, since_s: _Optional[float] = ..., until_s: _Optional[float] = ...) -> None: ...

class RetrieveRequest(_message.Message):
    __slots__ = ("question", "camera_id", "range", "mode", "max_frames", "temperature", "theta", "seed", "omit_images")
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    MAX_FRAMES_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    THETA_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    OMIT_IMAGES_FIELD_NUMBER: _ClassVar[int]
    question: str
    camera_id: str
    range: TimeRange
    mode: RetrievalMode
    max_frames: int
    temperature: float
    theta: float
    seed: int
    omit_images: bool
    def __init__(self, question: _Optional[str] = ..., camera_id: _Optional[str] = ..., range: _Optional[_Union[TimeRange, _Mapping]] = ..., mode: _Optional[_Union[RetrievalMode, str]] = ..., max_frames: _Optional[int] = ..., temperature: _Optional[float] = ..., theta: _Optional[float] = ..., seed: _Optional[int] = ..., omit_images: _Optional[bool] = ...) -> None: ...

class Keyframe(_message.Message):
    __slots__ = ("camera_id", "time_s", "capture_time_ns", "jpeg", "index_point_id", "scene_id", "cluster_id", "similarity", "probability", "aux_text", "from_index_frame", "cluster_start_s", "cluster_end_s")
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_S_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    JPEG_FIELD_NUMBER: _ClassVar[int]
    INDEX_POINT_ID_FIELD_NUMBER: _ClassVar[int]
    SCENE_ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    AUX_TEXT_FIELD_NUMBER: _ClassVar[int]
    FROM_INDEX_FRAME_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_START_S_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_END_S_FIELD_NUMBER: _ClassVar[int]
    camera_id: str
    time_s: float
    capture_time_ns: int
    jpeg: bytes
    index_point_id: str
    scene_id: int
    cluster_id: int
    similarity: float
    probability: float
    aux_text: str
    from_index_frame: bool
    cluster_start_s: float
    cluster_end_s: float
    def __init__(self, camera_id: _Optional[str] = ..., time_s: _Optional[float] = ..., capture_time_ns: _Optional[int] = ..., jpeg: _Optional[bytes] = ..., index_point_id: _Optional[str] = ..., scene_id: _Optional[int] = ..., cluster_id: _Optional[int] = ..., similarity: _Optional[float] = ..., probability: _Optional[float] = ..., aux_text: _Optional[str] = ..., from_index_frame: _Optional[bool] = ..., cluster_start_s: _Optional[float] = ..., cluster_end_s: _Optional[float] = ...) -> None: ...

class RetrieveResponse(_message.Message):
    __slots__ = ("keyframes", "mode", "index_frames_in_range", "clusters_chosen", "draws", "covered_probability", "n_min", "n_max", "temperature", "theta", "seed", "embedder", "embedder_limitations", "frames_expired", "retrieve_ms")
    KEYFRAMES_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    INDEX_FRAMES_IN_RANGE_FIELD_NUMBER: _ClassVar[int]
    CLUSTERS_CHOSEN_FIELD_NUMBER: _ClassVar[int]
    DRAWS_FIELD_NUMBER: _ClassVar[int]
    COVERED_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    N_MIN_FIELD_NUMBER: _ClassVar[int]
    N_MAX_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    THETA_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    EMBEDDER_FIELD_NUMBER: _ClassVar[int]
    EMBEDDER_LIMITATIONS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_EXPIRED_FIELD_NUMBER: _ClassVar[int]
    RETRIEVE_MS_FIELD_NUMBER: _ClassVar[int]
    keyframes: _containers.RepeatedCompositeFieldContainer[Keyframe]
    mode: RetrievalMode
    index_frames_in_range: int
    clusters_chosen: int
    draws: int
    covered_probability: float
    n_min: int
    n_max: int
    temperature: float
    theta: float
    seed: int
    embedder: str
    embedder_limitations: str
    frames_expired: int
    retrieve_ms: float
    def __init__(self, keyframes: _Optional[_Iterable[_Union[Keyframe, _Mapping]]] = ..., mode: _Optional[_Union[RetrievalMode, str]] = ..., index_frames_in_range: _Optional[int] = ..., clusters_chosen: _Optional[int] = ..., draws: _Optional[int] = ..., covered_probability: _Optional[float] = ..., n_min: _Optional[int] = ..., n_max: _Optional[int] = ..., temperature: _Optional[float] = ..., theta: _Optional[float] = ..., seed: _Optional[int] = ..., embedder: _Optional[str] = ..., embedder_limitations: _Optional[str] = ..., frames_expired: _Optional[int] = ..., retrieve_ms: _Optional[float] = ...) -> None: ...

class DescribeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CameraMemory(_message.Message):
    __slots__ = ("camera_id", "index_frames", "earliest_s", "latest_s")
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FRAMES_FIELD_NUMBER: _ClassVar[int]
    EARLIEST_S_FIELD_NUMBER: _ClassVar[int]
    LATEST_S_FIELD_NUMBER: _ClassVar[int]
    camera_id: str
    index_frames: int
    earliest_s: float
    latest_s: float
    def __init__(self, camera_id: _Optional[str] = ..., index_frames: _Optional[int] = ..., earliest_s: _Optional[float] = ..., latest_s: _Optional[float] = ...) -> None: ...

class DescribeResponse(_message.Message):
    __slots__ = ("cameras", "embedder", "store", "raw_frames", "raw_bytes")
    CAMERAS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDER_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    RAW_FRAMES_FIELD_NUMBER: _ClassVar[int]
    RAW_BYTES_FIELD_NUMBER: _ClassVar[int]
    cameras: _containers.RepeatedCompositeFieldContainer[CameraMemory]
    embedder: str
    store: str
    raw_frames: int
    raw_bytes: int
    def __init__(self, cameras: _Optional[_Iterable[_Union[CameraMemory, _Mapping]]] = ..., embedder: _Optional[str] = ..., store: _Optional[str] = ..., raw_frames: _Optional[int] = ..., raw_bytes: _Optional[int] = ...) -> None: ...

class NamedVector(_message.Message):
    __slots__ = ("name", "values")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    name: str
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, name: _Optional[str] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class FrameRef(_message.Message):
    __slots__ = ("time_s", "capture_time_ns", "seq")
    TIME_S_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    time_s: float
    capture_time_ns: int
    seq: int
    def __init__(self, time_s: _Optional[float] = ..., capture_time_ns: _Optional[int] = ..., seq: _Optional[int] = ...) -> None: ...

class IndexEntry(_message.Message):
    __slots__ = ("point_id", "camera_id", "scene_id", "cluster_id", "start_s", "end_s", "index_frame", "members", "vectors", "aux_text", "embedder", "index_jpeg", "indexed_time_ns")
    POINT_ID_FIELD_NUMBER: _ClassVar[int]
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    SCENE_ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    START_S_FIELD_NUMBER: _ClassVar[int]
    END_S_FIELD_NUMBER: _ClassVar[int]
    INDEX_FRAME_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    AUX_TEXT_FIELD_NUMBER: _ClassVar[int]
    EMBEDDER_FIELD_NUMBER: _ClassVar[int]
    INDEX_JPEG_FIELD_NUMBER: _ClassVar[int]
    INDEXED_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    point_id: str
    camera_id: str
    scene_id: int
    cluster_id: int
    start_s: float
    end_s: float
    index_frame: FrameRef
    members: _containers.RepeatedCompositeFieldContainer[FrameRef]
    vectors: _containers.RepeatedCompositeFieldContainer[NamedVector]
    aux_text: str
    embedder: str
    index_jpeg: bytes
    indexed_time_ns: int
    def __init__(self, point_id: _Optional[str] = ..., camera_id: _Optional[str] = ..., scene_id: _Optional[int] = ..., cluster_id: _Optional[int] = ..., start_s: _Optional[float] = ..., end_s: _Optional[float] = ..., index_frame: _Optional[_Union[FrameRef, _Mapping]] = ..., members: _Optional[_Iterable[_Union[FrameRef, _Mapping]]] = ..., vectors: _Optional[_Iterable[_Union[NamedVector, _Mapping]]] = ..., aux_text: _Optional[str] = ..., embedder: _Optional[str] = ..., index_jpeg: _Optional[bytes] = ..., indexed_time_ns: _Optional[int] = ...) -> None: ...
