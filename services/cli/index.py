"""`vigil index`: scene segmentation and clustering of a video (Venus IV-B), printed."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from services.indexing.index_video import index_frames_ahead
from services.indexing.scenes import SceneParams
from services.ingest.source import SourceError, open_source


def register(sub: Any) -> None:
    """Add `vigil index`."""
    index = sub.add_parser("index", help="scene segmentation and clustering of a video (Venus IV-B)")
    index.add_argument("--video", type=Path, required=True, help="video file, folder of images or %%d pattern")
    index.add_argument("--json", action="store_true")
    index.add_argument(
        "--fps",
        type=float,
        default=0.0,
        help="frames per second to sample (0 = all); an image sequence plays every image at this rate (default 1)",
    )
    index.add_argument("--threshold", type=float, default=27.0, help="scene cut threshold on eq. 1's 0-255 score")
    index.add_argument("--cluster-threshold", type=float, default=0.08, help="RMS pixel distance to join a cluster")
    index.set_defaults(func=cmd_index)


def cmd_index(args: argparse.Namespace) -> int:
    """`vigil index`: scene segmentation and clustering of a video (Venus IV-B), printed."""
    try:
        source = open_source(str(args.video), fps=args.fps or None)
    except SourceError as exc:
        print(f"vigil index: {exc}", file=sys.stderr)
        return 2
    try:
        # Decoding runs in its own thread, overlapping with segmentation and clustering.
        index = index_frames_ahead(source.frames(), SceneParams(threshold=args.threshold), args.cluster_threshold)
    finally:
        source.close()
    record = index.as_dict()
    if args.json:
        print(json.dumps(record))
        return 0
    print(f"{record['frames']} frames, {len(record['scenes'])} scenes")
    for s in record["scenes"]:
        print(
            f"scene {s['scene']:3d}  frames {s['start_frame']:6d}-{s['end_frame']:<6d} "
            f"{s['start_s']:8.2f}-{s['end_s']:<8.2f}s  {len(s['clusters'])} clusters, index frames "
            + ", ".join(f"{c['index_frame']}({c['members']})" for c in s["clusters"])
        )
    return 0
