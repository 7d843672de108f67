"""Profiles: named sets of detector defaults (what a deployment watches for), merged under explicit settings."""

from __future__ import annotations

from typing import Any, Literal

Profile = Literal["traffic", "people"]


def apply_profile(data: dict[str, Any], profiles: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Fill what `data` leaves out from its profile.

    A detector block given in part keeps the profile's other fields while its type is the profile's
    (`VIGIL_GATING__CONTEXT_DETECTOR__INTRA_OP_THREADS=1` still runs COCO at 0.3); a block of another
    in-process type still runs the profile's model unless it names `weights` or `model`.
    """
    name = data.get("profile", "traffic")
    if name not in profiles:
        raise ValueError(f"unknown profile {name!r}; known profiles: {', '.join(profiles)}")
    out = dict(data)
    for key, preset in profiles[name].items():
        given = out.get(key, preset)
        if key in out and isinstance(given, dict) and isinstance(preset, dict) and "type" in preset:
            if given.get("type", preset["type"]) == preset["type"]:
                given = {**preset, **given}
            elif given["type"] in {"onnx", "ultralytics"} and not {"weights", "model"} & set(given):
                given = {**given, "model": preset["model"]}
        out[key] = given
    return out
