"""`vigil train structurer`: LoRA on Qwen2.5-VL for DAT's structured events (section 3.2.2, eq. 3 and 5-6).

The model learns y_t = f_l(I_t, p_t; theta + delta-theta). The input is the boxed image I_t and the prompt
p_t built from the gate's priors. Both come from the inference code itself (`prompt_inputs`), so
training and serving see the same tokens. The target y_t is the event JSON of
`structurer_eval.target_event`. The loss is the causal-LM cross-entropy on the answer tokens only:
every prompt and image position is labelled -100.

Defaults come from the paper where it gives one: learning rate 5e-5 and a 4,096-token sequence
limit. An example longer than that is refused, since cutting the answer would teach broken JSON.
The paper gives no LoRA rank or targets, so those are ours and written in the card:

- rank 16, alpha 32 (scale alpha/r = 2, eq. 5), dropout 0.05;
- on the language model's attention and MLP projections (q/k/v/o, gate/up/down); the vision tower
  stays frozen.

After each epoch the adapter and the optimiser state go to `OUT/checkpoint-epoch-N/`.
`--resume` continues from the newest one. Each checkpoint is scored on the validation clips with
`vigil eval structurer`'s metrics. The final adapter is `OUT/adapter/`, with a card (`ADAPTER.md`):
base model, data and split, hyper-parameters, the loss per epoch and the validation metrics. An
adapter trained on a random stand-in checkpoint carries the random-init marker, so its outputs say so.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from services.gating.pipeline import FrameGater
from services.gating.training.dataset import DatasetError
from services.gating.training.structurer_eval import Example, build_examples, evaluate, read_frame, request_for
from services.models.random_init import RANDOM_INIT_MARKER, is_random_init

log = logging.getLogger(__name__)

# Every linear layer of the language model's blocks; the vision tower's are named differently (qkv, proj)
# or sit under `visual`, and stay frozen.
LANGUAGE_TARGETS = r"^(?!.*visual).*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"
ANSWER_END = "<|im_end|>"


@dataclass(frozen=True)
class LoraTrainParams:
    """Hyper-parameters of `vigil train structurer`; DAT's where it gives them."""

    learning_rate: float = 5e-5  # DAT 4.1.1
    max_length: int = 4096  # DAT 4.1.1
    epochs: int = 3
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str = LANGUAGE_TARGETS
    # Whole modules trained beside the low-rank ones (peft's modules_to_save). Empty for a real checkpoint.
    # The tiny random test model needs ("lm_head",): its random head is too flat to make any token likely.
    modules_to_save: tuple[str, ...] = ()
    grad_accumulation: int = 8
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "cpu"
    input_kind: str = "boxed"
    # Frames per split used (0 = all): for smoke tests and quick looks, recorded in the card.
    limit: int = 0
    val_limit: int = 0
    gamma: float = 0.5


@dataclass
class TrainResult:
    """Where the adapter went and how training went."""

    adapter: Path
    card: Path
    epochs: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0


def encode_example(qwen: Any, example: Example, image_request: Any, params: LoraTrainParams) -> dict[str, Any]:
    """Prompt + image + answer as one sequence; labels are the answer's ids, -100 everywhere before it."""
    import torch

    from services.models.structurers.qwen_vl import prompt_inputs

    inputs = prompt_inputs(qwen, image_request, params.gamma)
    answer = json.dumps(dict(example.target), separators=(",", ":"), ensure_ascii=False) + ANSWER_END
    answer_ids = qwen.tokenizer(answer, return_tensors="pt", add_special_tokens=False)["input_ids"].to(qwen.device)
    prompt_ids = inputs["input_ids"]
    total = prompt_ids.shape[1] + answer_ids.shape[1]
    if total > params.max_length:
        raise DatasetError(
            f"{example.frame.image}: prompt + answer is {total} tokens, over max_length {params.max_length}; "
            "raise it or lower the image size"
        )
    ids = torch.cat([prompt_ids, answer_ids], dim=1)
    labels = torch.cat([torch.full_like(prompt_ids, -100), answer_ids], dim=1)
    zeros = torch.zeros_like(answer_ids)
    return {
        **{k: v for k, v in inputs.items() if k not in {"input_ids", "attention_mask", "mm_token_type_ids"}},
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "mm_token_type_ids": torch.cat([inputs["mm_token_type_ids"], zeros], dim=1),
        "labels": labels,
    }


def _encoded_split(
    qwen: Any, gater: FrameGater, examples: Sequence[Example], params: LoraTrainParams
) -> list[dict[str, Any]]:
    return [encode_example(qwen, ex, request_for(read_frame(ex), gater, params.input_kind), params) for ex in examples]


def latest_checkpoint(out: Path) -> Path | None:
    """The newest `checkpoint-epoch-N` in `out`, if any."""
    found = sorted(out.glob("checkpoint-epoch-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))
    return found[-1] if found else None


def _peft_model(qwen: Any, params: LoraTrainParams, resume_from: Path | None) -> Any:
    from peft import LoraConfig, PeftModel, get_peft_model

    if resume_from is not None:
        return PeftModel.from_pretrained(qwen.model, resume_from / "adapter", is_trainable=True)
    config = LoraConfig(
        r=params.rank,
        lora_alpha=params.alpha,
        lora_dropout=params.dropout,
        target_modules=params.target_modules,
        modules_to_save=list(params.modules_to_save) or None,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(qwen.model, config)


def _save_checkpoint(model: Any, optimizer: Any, out: Path, epoch: int, state: dict[str, Any], base: Path) -> Path:
    import torch

    ckpt = out / f"checkpoint-epoch-{epoch}"
    model.save_pretrained(ckpt / "adapter")
    if is_random_init(base):
        (ckpt / "adapter" / RANDOM_INIT_MARKER).write_text("trained on a random stand-in base: meaningless\n")
    torch.save(optimizer.state_dict(), ckpt / "optimizer.pt")
    (ckpt / "trainer_state.json").write_text(json.dumps(state, indent=2) + "\n")
    # Two are enough to resume even if the newest was cut short while being written.
    for old in sorted(out.glob("checkpoint-epoch-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))[:-2]:
        shutil.rmtree(old)
    return ckpt


def _validate(
    checkpoint: Path, adapter: Path, gater: FrameGater, examples: Sequence[Example], params: LoraTrainParams
) -> dict[str, Any]:
    """The eval structurer's metrics of this adapter on the validation examples (greedy, constrained)."""
    from services.models.structurers.qwen_vl import QwenVLStructurer

    structurer = QwenVLStructurer(checkpoint, lora=adapter, device=params.device, gamma=params.gamma)
    return evaluate(structurer, gater, examples, params.input_kind, params.gamma, "LoRA")


def train_structurer(
    checkpoint: Path, data: Path, out: Path, gater: FrameGater, params: LoraTrainParams, *, resume: bool = False
) -> TrainResult:
    """LoRA-train Qwen2.5-VL on the train clips' labelled frames; validate each epoch; write adapter and card."""
    import torch

    from services.models.qwen import load_qwen_vl

    t0 = time.perf_counter()
    # Accident frames without box labels have no known count or boxes: no target to learn from.
    train = [ex for ex in build_examples(data, "train", params.seed, params.gamma) if ex.count_known]
    val = build_examples(data, "val", params.seed, params.gamma)
    if not train:
        raise DatasetError(f"the train split of {data} has no frame with a known count and boxes")
    if params.limit:
        train = train[: params.limit]
    if params.val_limit:
        val = val[: params.val_limit]
    out.mkdir(parents=True, exist_ok=True)
    resume_from = latest_checkpoint(out) if resume else None
    state: dict[str, Any] = {"epoch": 0, "history": []}
    if resume_from is not None:
        state = json.loads((resume_from / "trainer_state.json").read_text())
        log.info("resuming from %s (epoch %d)", resume_from, state["epoch"])
    torch.manual_seed(params.seed)
    qwen = load_qwen_vl(checkpoint, device=params.device)
    model = _peft_model(qwen, params, resume_from)
    model.train()
    encoded = _encoded_split(qwen, gater, train, params)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=params.learning_rate, weight_decay=params.weight_decay)
    if resume_from is not None:
        optimizer.load_state_dict(torch.load(resume_from / "optimizer.pt", weights_only=True))
    order = list(range(len(encoded)))
    for epoch in range(state["epoch"] + 1, params.epochs + 1):
        random.Random(params.seed * 1000 + epoch).shuffle(order)
        losses = []
        optimizer.zero_grad()
        for step, i in enumerate(order, 1):
            loss = model(**encoded[i]).loss
            (loss / params.grad_accumulation).backward()
            losses.append(float(loss.detach()))
            if step % params.grad_accumulation == 0 or step == len(order):
                optimizer.step()
                optimizer.zero_grad()
        record: dict[str, Any] = {"epoch": epoch, "train_loss": round(sum(losses) / len(losses), 5)}
        state = {"epoch": epoch, "history": [*state["history"], record], "params": asdict(params)}
        ckpt = _save_checkpoint(model, optimizer, out, epoch, state, checkpoint)
        if val:
            model.eval()
            record["val"] = {
                k: v
                for k, v in _validate(checkpoint, ckpt / "adapter", gater, val, params).items()
                if k not in {"type", "structurer", "detector"}
            }
            model.train()
            (ckpt / "trainer_state.json").write_text(json.dumps(state, indent=2) + "\n")
        log.info("epoch %d: %s", epoch, record)
    adapter = out / "adapter"
    model.save_pretrained(adapter)
    if is_random_init(checkpoint):
        (adapter / RANDOM_INIT_MARKER).write_text("trained on a random stand-in base: meaningless\n")
    card = write_card(adapter, checkpoint, data, params, state["history"], len(train), len(val))
    return TrainResult(adapter, card, state["history"], time.perf_counter() - t0)


def write_card(
    adapter: Path,
    checkpoint: Path,
    data: Path,
    params: LoraTrainParams,
    history: Sequence[dict[str, Any]],
    n_train: int,
    n_val: int,
) -> Path:
    """ADAPTER.md beside the weights: base model, data, split, hyper-parameters, loss and validation metrics."""
    random_base = is_random_init(checkpoint)
    lines = [
        f"# LoRA adapter for {checkpoint.name} (Vigil event structurer)",
        "",
        "**RANDOM BASE: trained on a randomly initialised stand-in; its outputs are meaningless.**"
        if random_base
        else "",
        "",
        f"- Base model: `{checkpoint}` (Qwen2.5-VL; `adapter_config.json` names it).",
        f"- Data: `{data}`, labelled frames of the train clips ({n_train} frames), validated on the val clips "
        f"({n_val} frames); split by clip with seed {params.seed}, as the gate was trained. Targets: "
        "`services/gating/training/structurer_eval.py`.",
        f"- Input: the {params.input_kind} image and the prompt from the gate's priors; "
        "the loss is on the answer tokens only.",
        f"- Hyper-parameters: {json.dumps(asdict(params))}",
        "- Reproduce: `vigil train structurer --checkpoint BASE --data DATA --out OUT` with the values above.",
        "- Licences: the base model's own; the cctv_accidents labels' (see shared/data MANIFEST).",
        "",
        "| epoch | train loss | val Count EM | val SevF1 | val BBox mIoU | val Schema |",
        "|---|---|---|---|---|---|",
    ]
    for h in history:
        v = h.get("val", {})
        lines.append(
            f"| {h['epoch']} | {h['train_loss']} | {v.get('count_em')} | {v.get('sev_f1')} | {v.get('bbox_miou')} | "
            f"{v.get('schema')} |"
        )
    card = adapter / "ADAPTER.md"
    card.write_text("\n".join(lines) + "\n")
    return card
