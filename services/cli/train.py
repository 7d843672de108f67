"""`vigil train gate` and `vigil eval gate`: DAT's gate detector, trained and measured on held-out clips."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    """Add `vigil train ...` and `vigil eval ...`."""
    train = sub.add_parser("train", help="train a model").add_subparsers(dest="what", required=True)
    tg = train.add_parser("gate", help="the accident detector (DAT's gate) from labelled CCTV clips")
    tg.add_argument("--data", type=Path, required=True, help="cctv_accidents layout: frames.csv, frames/, labels/")
    tg.add_argument("--out", type=Path, default=Path("runs/gate"), help="run folder (default runs/gate)")
    tg.add_argument("--design", choices=["accident", "accident+vehicle"], default="accident")
    tg.add_argument("--imgsz", type=int, default=416)
    tg.add_argument("--epochs", type=int, default=40)
    tg.add_argument("--freeze", type=int, default=10, help="freeze the first N layers (10 = the backbone)")
    tg.add_argument("--batch", type=int, default=16)
    tg.add_argument("--patience", type=int, default=15)
    tg.add_argument("--seed", type=int, default=0, help="split and training seed")
    tg.add_argument("--device", default="cpu", help="cpu, or a CUDA device such as 0")
    tg.add_argument("--no-eval", action="store_true", help="skip the held-out evaluation")
    tg.add_argument(
        "--epochs-from",
        type=Path,
        metavar="RUN",
        help="final model: train on the train + val clips for the epochs at which RUN (trained on train only) "
        "was best on val, and keep the last epoch",
    )
    tg.set_defaults(func=cmd_train_gate)

    ts = train.add_parser("structurer", help="LoRA on a Qwen2.5-VL checkpoint for the structured events (DAT 3.2.2)")
    ts.add_argument("--checkpoint", type=Path, required=True, help="Qwen2.5-VL checkpoint directory (the base)")
    ts.add_argument("--data", type=Path, required=True, help="cctv_accidents layout")
    ts.add_argument("--out", type=Path, default=Path("runs/structurer"), help="run folder (default runs/structurer)")
    ts.add_argument("--epochs", type=int, default=3)
    ts.add_argument("--lr", type=float, default=5e-5, help="learning rate (default 5e-5, DAT)")
    ts.add_argument("--max-length", type=int, default=4096, help="longest prompt + answer in tokens (DAT: 4096)")
    ts.add_argument("--rank", type=int, default=16, help="LoRA rank r (eq. 6)")
    ts.add_argument("--alpha", type=int, default=32, help="LoRA alpha (eq. 5 scale alpha/r)")
    ts.add_argument("--dropout", type=float, default=0.05)
    ts.add_argument("--grad-accumulation", type=int, default=8, help="examples per optimiser step")
    ts.add_argument("--train-module", action="append", default=[], help="also train this whole module (e.g. lm_head)")
    ts.add_argument("--input", choices=["boxed", "raw"], default="boxed")
    ts.add_argument("--seed", type=int, default=0, help="split and training seed")
    ts.add_argument("--device", default="cpu", help="cpu, or a CUDA device such as cuda:0")
    ts.add_argument("--limit", type=int, default=0, help="train frames used (0 = all)")
    ts.add_argument("--val-limit", type=int, default=0, help="validation frames used (0 = all)")
    ts.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    ts.set_defaults(func=cmd_train_structurer)

    evaluate = sub.add_parser("eval", help="evaluate a model").add_subparsers(dest="what", required=True)
    eg = evaluate.add_parser("gate", help="Fig. 4's gate metrics of ONNX detectors on held-out clips")
    eg.add_argument("--data", type=Path, required=True, help="cctv_accidents layout")
    eg.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="[NAME=]ONNX[:CLASS]",
        help="detector to evaluate (repeatable); CLASS is its incident class (default accident)",
    )
    eg.add_argument("--split", action="append", choices=["train", "val", "test"], help="default: val and test")
    eg.add_argument("--seed", type=int, default=0, help="the split seed the detectors were trained with")
    eg.add_argument("--tau-low", type=float, default=0.25)
    eg.add_argument("--tau-high", type=float, default=0.8)
    eg.add_argument("--json", action="store_true", help="JSON lines only")
    eg.set_defaults(func=cmd_eval_gate)

    es = evaluate.add_parser(
        "structurer", help="DAT Tables 1-2 of a structurer on the labelled frames of held-out clips"
    )
    es.add_argument("--data", type=Path, required=True, help="cctv_accidents layout")
    es.add_argument("--split", choices=["train", "val", "test"], default="test", help="default test")
    es.add_argument("--seed", type=int, default=0, help="the split seed the gate was trained with")
    es.add_argument("--profile", choices=["traffic", "people"], help="the gate's detectors (default traffic)")
    es.add_argument("--structurer", choices=["detector-prior", "qwen2.5-vl"], default="detector-prior")
    es.add_argument("--checkpoint", type=Path, help="Qwen2.5-VL checkpoint directory (qwen2.5-vl)")
    es.add_argument("--lora", type=Path, help="LoRA adapter directory on top of --checkpoint")
    es.add_argument(
        "--input",
        action="append",
        choices=["boxed", "raw"],
        help="image the structurer sees (repeatable; default boxed)",
    )
    es.add_argument("--limit", type=int, default=0, help="evaluate only the first N frames (0 = all; smoke tests)")
    es.add_argument("--json", action="store_true", help="JSON lines only")
    es.set_defaults(func=cmd_eval_structurer)


def cmd_train_gate(args: argparse.Namespace) -> int:
    """`vigil train gate`: the accident detector from the labelled CCTV clips (ultralytics, from COCO weights)."""
    from services.gating.training.dataset import DatasetError, load_frames
    from services.gating.training.train import TrainParams, best_epoch, train_gate
    from services.models.detectors.base import DetectorError

    try:
        epochs = best_epoch(args.epochs_from) if args.epochs_from else args.epochs
        params = TrainParams(
            design=args.design,
            imgsz=args.imgsz,
            epochs=epochs,
            fold_val=args.epochs_from is not None,
            freeze=args.freeze,
            batch=args.batch,
            seed=args.seed,
            device=args.device,
            patience=args.patience,
        )
        load_frames(args.data)  # every data error surfaces here, before any model is built
        result = train_gate(args.data, args.out, params, evaluate=not args.no_eval)
    except (DatasetError, DetectorError) as exc:
        print(f"vigil train gate: {exc}", file=sys.stderr)
        return 2
    print(
        json.dumps(
            {
                "type": "train_gate",
                "onnx": str(result.onnx),
                "best_pt": str(result.best_pt),
                "card": str(result.card),
                "wall_s": round(result.wall_s, 1),
                "metrics": {k: v for k, v in result.metrics.items() if k != "train_log"},
            }
        )
    )
    return 0


def cmd_eval_gate(args: argparse.Namespace) -> int:
    """`vigil eval gate`: Fig. 4's detector-level metrics of one or more ONNX detectors on held-out clips."""
    import tempfile

    from services.gating.training.card import metrics_table
    from services.gating.training.dataset import DatasetError, build_yolo_dataset
    from services.gating.training.evaluate import evaluate_models
    from services.models.detectors.base import DetectorError

    splits = args.split or ["val", "test"]
    try:
        with tempfile.TemporaryDirectory(prefix="vigil-eval-gate-") as tmp:
            dataset = build_yolo_dataset(args.data, Path(tmp), seed=args.seed)
            rows = evaluate_models(args.model, dataset.root, splits, args.tau_low, args.tau_high)
    except (DatasetError, DetectorError, ValueError) as exc:
        print(f"vigil eval gate: {exc}", file=sys.stderr)
        return 2
    for row in rows:
        print(json.dumps(row))
    if not args.json:
        print()
        print(
            f"Detector-level gate metrics on the {', '.join(splits)} clips (tau_low={args.tau_low}, "
            f"tau_high={args.tau_high}):"
        )
        for row in rows:
            print(f"\n{row['design']} ({row['model']})\n")
            print(metrics_table(row["metrics"], tuple(splits)))
    return 0


def cmd_eval_structurer(args: argparse.Namespace) -> int:
    """`vigil eval structurer`: Tables 1-2 (accident understanding, output compliance) of one structurer."""
    from services.cli.settings import CliError, load
    from services.gating.bootstrap import build_gater, build_structurer
    from services.gating.config import GatingSettings
    from services.gating.training.dataset import DatasetError
    from services.gating.training.structurer_eval import build_examples, evaluate, markdown_tables
    from services.models.detectors.base import DetectorError

    gating: dict[str, Any] = {"profile": args.profile} if args.profile else {}
    if args.structurer == "qwen2.5-vl":
        if args.checkpoint is None:
            print("vigil eval structurer: --structurer qwen2.5-vl needs --checkpoint DIR", file=sys.stderr)
            return 2
        gating["structurer"] = {"type": "qwen2.5-vl", "checkpoint": str(args.checkpoint)}
        if args.lora is not None:
            gating["structurer"]["lora"] = str(args.lora)
    elif args.lora is not None or args.checkpoint is not None:
        print("vigil eval structurer: --checkpoint and --lora are for --structurer qwen2.5-vl", file=sys.stderr)
        return 2
    tuning = "n/a" if args.structurer == "detector-prior" else ("LoRA" if args.lora else "none")
    try:
        cfg = load(GatingSettings, gating=gating).gating
        examples = build_examples(args.data, args.split, args.seed, cfg.gamma)
        if args.limit:
            examples = examples[: args.limit]
        gater = build_gater(cfg)
        structurer = build_structurer(cfg, gater.detector)
        rows = [evaluate(structurer, gater, examples, kind, cfg.gamma, tuning) for kind in args.input or ["boxed"]]
    except (CliError, DatasetError, DetectorError, ValueError, OSError) as exc:
        print(f"vigil eval structurer: {exc}", file=sys.stderr)
        return 2
    for row in rows:
        print(json.dumps({**row, "split": args.split, "data": str(args.data)}))
    if not args.json:
        print()
        print(f"On the {args.split} clips of {args.data} ({rows[0]['n_frames']} frames, gate {rows[0]['detector']}):")
        print()
        print(markdown_tables(rows))
    return 0


def cmd_train_structurer(args: argparse.Namespace) -> int:
    """`vigil train structurer`: a LoRA adapter for the Qwen2.5-VL structurer, validated each epoch."""
    from services.gating.bootstrap import build_gater
    from services.gating.config import GatingConfig
    from services.gating.training.dataset import DatasetError
    from services.gating.training.structurer_train import LoraTrainParams, train_structurer
    from services.models.detectors.base import DetectorError

    gating = GatingConfig()
    params = LoraTrainParams(
        learning_rate=args.lr,
        max_length=args.max_length,
        epochs=args.epochs,
        rank=args.rank,
        alpha=args.alpha,
        dropout=args.dropout,
        grad_accumulation=args.grad_accumulation,
        modules_to_save=tuple(args.train_module),
        seed=args.seed,
        device=args.device,
        input_kind=args.input,
        limit=args.limit,
        val_limit=args.val_limit,
        gamma=gating.gamma,
    )
    try:
        result = train_structurer(args.checkpoint, args.data, args.out, build_gater(gating), params, resume=args.resume)
    except (DatasetError, DetectorError, ValueError, OSError) as exc:
        print(f"vigil train structurer: {exc}", file=sys.stderr)
        return 2
    record = {
        "type": "train_structurer",
        "adapter": str(result.adapter),
        "card": str(result.card),
        "epochs": result.epochs,
        "wall_s": round(result.wall_s, 1),
    }
    print(json.dumps(record))
    return 0
