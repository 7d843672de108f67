"""What every Vigil model on Triton's Python backend shares: its one JSON parameter and its runtime.

Each model in ``triton_models/`` takes its settings from ONE config.pbtxt
parameter, ``vigil_config``: JSON validated by a ``ServedConfig`` subclass that
nests the in-process backend's own pydantic config (so its defaults are the
only ones) beside the few settings only a served model has (the class names or
random-init marker it is checked against, torch's thread count). The schemas
live with each model's wire format, because clients read them too:
``DetectorModelConfig`` (detectors/triton_backend.py), ``VlmModelConfig``
(structurers/triton_vlm.py), ``VlmAnswerModelConfig`` (answerers/triton_vlm.py),
``EmbedderModelConfig`` (embedders/triton_backend.py).

``ServedModel`` is the runtime a ``triton_models/*/1/model.py`` builds in its
``initialize`` once it has put the checkout on sys.path (the one thing it must
do itself, the Python backend ignores PYTHONPATH): the validated config, the
model's metric counters, tensor helpers, and the per-request error handling of
``execute`` (a bad request fails alone, ``INVALID_ARG``; anything else is
``INTERNAL`` and logged). ``triton_python_backend_utils`` exists only inside the
backend's stub, so it is imported when a ServedModel is built: the schemas are
importable anywhere (the preparation script, clients, tests).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Generic, Self, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

# The one parameter with a model's settings, and the one that says which checkout to import.
CONFIG_PARAMETER = "vigil_config"
ROOT_PARAMETER = "vigil_root"


class ServedConfigError(ValueError):
    """A model's `vigil_config` parameter is missing or does not validate."""


def model_parameters(model_config: Mapping[str, Any]) -> dict[str, str]:
    """A Triton model config's (JSON form) `parameters` as strings."""
    return {k: str(v.get("string_value", "")) for k, v in model_config.get("parameters", {}).items()}


def _errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or CONFIG_PARAMETER}: {e['msg']} (got {e['input']!r})"
        for e in exc.errors(include_url=False)
    )


class ServedConfig(BaseModel):
    """Base of the `vigil_config` schemas: parsed from a model's parameters, written by the preparation."""

    model_config = ConfigDict(extra="forbid")
    # What `scripts/prepare_triton_repo.py OUT` needs to fill this model in, for the error of an empty parameter.
    prepare_args: ClassVar[str] = ""

    @classmethod
    def from_parameters(cls, params: Mapping[str, str], model: str) -> Self:
        """The validated config of `model`; ServedConfigError naming the model and the fields otherwise."""
        raw = params.get(CONFIG_PARAMETER, "")
        if not raw:
            raise ServedConfigError(
                f"parameter {CONFIG_PARAMETER} of model {model!r} is empty: prepare the repository with "
                f"`python scripts/prepare_triton_repo.py OUT {cls.prepare_args}`".rstrip()
            )
        try:
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            raise ServedConfigError(
                f"parameter {CONFIG_PARAMETER} of model {model!r} is not a valid {cls.__name__}: {_errors(exc)}"
            ) from exc

    def to_parameters(self) -> dict[str, str]:
        """config.pbtxt parameters holding this config: only what was set, so unset fields keep the defaults."""
        text = self.model_dump_json(exclude_unset=True)
        # A nested union member built without its `type` would dump unloadable JSON: fail here, not at load.
        type(self).from_parameters({CONFIG_PARAMETER: text}, "(being prepared)")
        return {CONFIG_PARAMETER: text}


C = TypeVar("C", bound=ServedConfig)


def _pb_utils() -> Any:
    import triton_python_backend_utils as pb_utils  # only inside the Python backend's stub

    return pb_utils


class ServedModel(Generic[C]):
    """One model instance's shared runtime: config, counters, tensors, per-request errors."""

    def __init__(self, args: Mapping[str, str], schema: type[C], invalid: tuple[type[Exception], ...]) -> None:
        self.pb = _pb_utils()
        self.model_config: dict[str, Any] = json.loads(args["model_config"])
        self.name = args["model_name"]
        self.config: C = schema.from_parameters(model_parameters(self.model_config), self.name)
        # Exceptions of a request that is at fault (INVALID_ARG), not the model.
        self.invalid = invalid
        self._labels = {"model": self.name, "version": args["model_version"]}
        self._families: list[Any] = []
        self.rejected: Any = None

    def counter(self, name: str, description: str) -> Any:
        """A counter labelled with this model's name and version."""
        # A Metric is only valid while its MetricFamily object lives: keep both.
        family = self.pb.MetricFamily(name=name, description=description, kind=self.pb.MetricFamily.COUNTER)
        self._families.append(family)
        return family.Metric(labels=self._labels)

    def count_rejected(self, name: str) -> None:
        """The counter of requests refused as invalid input (Triton counts error responses as successes)."""
        self.rejected = self.counter(name, "Requests refused as invalid input")

    def set_torch_threads(self, threads: int) -> None:
        """torch's intra-op thread count; 0 keeps torch's default."""
        if threads:
            import torch

            torch.set_num_threads(threads)

    def check_random_init(self, declared: bool | None, actual: bool) -> None:
        """Refuse to load when the prepared random_init disagrees with the weights' marker."""
        if declared is not None and declared != actual:
            raise ValueError(
                f"{CONFIG_PARAMETER} random_init={declared} but the checkpoint says random_init={actual}; "
                "re-run scripts/prepare_triton_repo.py"
            )

    def log_info(self, message: str) -> None:
        """A line in the server's log."""
        self.pb.Logger.log_info(f"{self.name} {message}")

    def tensor(self, request: Any, name: str) -> np.ndarray | None:
        """Input `name` of a request as numpy, None when the request does not carry it."""
        t = self.pb.get_input_tensor_by_name(request, name)
        return None if t is None else t.as_numpy()

    def response(self, outputs: Mapping[str, np.ndarray]) -> Any:
        """A response carrying these output tensors."""
        return self.pb.InferenceResponse(output_tensors=[self.pb.Tensor(k, v) for k, v in outputs.items()])

    def error(self, message: str, internal: bool = True) -> Any:
        """An error response: INTERNAL, or INVALID_ARG for a request at fault."""
        code = self.pb.TritonError.INTERNAL if internal else self.pb.TritonError.INVALID_ARG
        return self.pb.InferenceResponse(error=self.pb.TritonError(message, code))

    def reject(self, exc: Exception) -> Any:
        """INVALID_ARG with the exception's message, counted."""
        if self.rejected is not None:
            self.rejected.increment(1)
        return self.error(str(exc), internal=False)

    def internal(self, exc: Exception) -> Any:
        """INTERNAL naming the exception, logged."""
        self.pb.Logger.log_error(f"{self.name} failed: {type(exc).__name__}: {exc}")
        return self.error(f"{type(exc).__name__}: {exc}")

    def guarded(self, respond: Callable[..., Any], *args: Any) -> Any:
        """respond(*args), or the error response of what it raised: INVALID_ARG for `invalid`, else INTERNAL."""
        try:
            return respond(*args)
        except self.invalid as exc:
            return self.reject(exc)
        except Exception as exc:
            return self.internal(exc)

    def execute(self, requests: Sequence[Any], one: Callable[[Any], Any]) -> list[Any]:
        """`one` response per request; a request that raises fails alone."""
        return [self.guarded(one, request) for request in requests]
