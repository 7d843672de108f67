"""The console's pure helpers: the Ask form as a request, the event's boxes for the overlay, an answer as the page
draws it."""

from __future__ import annotations

import pytest

from services.console.app import _answer_view, _ask_request, _boxes
from vigil.memory.v1 import memory_pb2
from vigil.reasoning.v1 import reasoning_pb2


def form(**fields: str) -> dict[str, str]:
    return {"question": "a crash", "camera": "", "since": "", "until": "", "mode": "akr", **fields}


def test_the_form_becomes_an_ask_request_with_images() -> None:
    req = _ask_request(form(camera="door", since="12.5", until="30", mode="top-k"))
    assert req.question == "a crash" and req.camera_id == "door" and req.include_images
    assert req.range.since_s == 12.5 and req.range.until_s == 30.0
    assert req.mode == memory_pb2.RETRIEVAL_MODE_TOP_K
    assert not _ask_request(form()).range.HasField("since_s")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"question": ""}, "the question is empty"),
        ({"since": "yesterday"}, "since must be seconds"),
        ({"until": "soon"}, "until must be seconds"),
        ({"mode": "best"}, "unknown mode 'best'"),
    ],
)
def test_a_bad_form_says_what_to_change(fields: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _ask_request(form(**fields))


def test_boxes_keep_only_well_formed_objects() -> None:
    event = {
        "objects": [
            {"label": "accident", "bbox": [100, 200, 400, 500]},
            {"label": "vehicle", "bbox": [1, 2, 3]},
            {"label": "person", "bbox": "nope"},
            "not an object",
        ]
    }
    assert _boxes(event) == [{"label": "accident", "x": 100, "y": 200, "w": 300, "h": 300}]
    assert _boxes({}) == []


def test_an_answer_carries_its_keyframes_inline_and_its_notes() -> None:
    response = reasoning_pb2.AskResponse(
        answer="No VLM ran.", vlm="evidence", notes=["retrieval by aux-minilm: cannot read faces"]
    )
    response.retrieval.embedder = "aux-minilm"
    response.keyframes.add(camera_id="cam0", time_s=1.5, probability=0.25, similarity=0.3, jpeg=b"\xff\xd8")
    view = _answer_view(response)
    assert view["embedder"] == "aux-minilm" and view["mode"] == "AKR" and not view["vlm_ran"]
    (k,) = view["keyframes"]
    assert k["time"] == "1.5s" and k["probability"] == 0.25 and k["src"] == "data:image/jpeg;base64,/9g="
    assert view["notes"] == ["retrieval by aux-minilm: cannot read faces"]
