from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BoundingBox(_message.Message):
    __slots__ = ("x1", "y1", "x2", "y2")
    X1_FIELD_NUMBER: _ClassVar[int]
    Y1_FIELD_NUMBER: _ClassVar[int]
    X2_FIELD_NUMBER: _ClassVar[int]
    Y2_FIELD_NUMBER: _ClassVar[int]
    x1: float
    y1: float
    x2: float
    y2: float
    def __init__(self, x1: _Optional[float] = ..., y1: _Optional[float] = ..., x2: _Optional[float] = ..., y2: _Optional[float] = ...) -> None: ...

class Detection(_message.Message):
    __slots__ = ("box", "class_id", "label", "confidence")
    BOX_FIELD_NUMBER: _ClassVar[int]
    CLASS_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    box: BoundingBox
    class_id: int
    label: str
    confidence: float
    def __init__(self, box: _Optional[_Union[BoundingBox, _Mapping]] = ..., class_id: _Optional[int] = ..., label: _Optional[str] = ..., confidence: _Optional[float] = ...) -> None: ...

class DetectRequest(_message.Message):
    __slots__ = ("image", "tau_g")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TAU_G_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    tau_g: float
    def __init__(self, image: _Optional[bytes] = ..., tau_g: _Optional[float] = ...) -> None: ...

class DetectResponse(_message.Message):
    __slots__ = ("detections", "trigger_score", "gated", "valid_detections", "tau_g", "model", "inference_ms")
    DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_SCORE_FIELD_NUMBER: _ClassVar[int]
    GATED_FIELD_NUMBER: _ClassVar[int]
    VALID_DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    TAU_G_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_MS_FIELD_NUMBER: _ClassVar[int]
    detections: _containers.RepeatedCompositeFieldContainer[Detection]
    trigger_score: float
    gated: bool
    valid_detections: _containers.RepeatedCompositeFieldContainer[Detection]
    tau_g: float
    model: str
    inference_ms: float
    def __init__(self, detections: _Optional[_Iterable[_Union[Detection, _Mapping]]] = ..., trigger_score: _Optional[float] = ..., gated: _Optional[bool] = ..., valid_detections: _Optional[_Iterable[_Union[Detection, _Mapping]]] = ..., tau_g: _Optional[float] = ..., model: _Optional[str] = ..., inference_ms: _Optional[float] = ...) -> None: ...
