"""Dual-encoder training throughput: xdr's trainer path against a plain PyTorch/transformers loop.

Both systems train the same random-weight BERT (mBERT vocabulary size, 119,547; no download) on the same
synthetic batches in one process: random token ids, every query exactly ``--query-len`` tokens (32) and
every passage exactly ``--passage-len`` tokens (128), ``--batch`` queries (128) each with 1 positive and
``--negatives`` hard negatives (7), so each query is scored against ``batch · (1 + negatives)`` passages
(1,024): InfoNCE over in-batch and hard negatives, dot product, scale 1, CLS pooling, AdamW, bf16 autocast on
CUDA (fp32 on CPU).

1. ``xdr``: the sentence-transformers model and loss that ``xdr.train.dual.train_dual_encoder`` builds
   (:func:`~xdr.train.dual.build_sentence_transformer`, :func:`~xdr.train.dual.make_loss` with ``mnrl``,
   ``dot``, scale 1), stepped as ``SentenceTransformerTrainer`` steps it: ``model.train()``, bf16 autocast,
   ``loss(features, labels)`` (sentence-transformers merges the passage columns into one forward),
   backward, grad-norm clipping at 1.0 (the Trainer's default ``max_grad_norm``), AdamW (fused,
   the Trainer's default ``adamw_torch_fused``), linear LR schedule, ``zero_grad``. The Trainer itself
   (dataloader, collator/tokenizer, logging, checkpoint saves) is *not* driven: the tokenizer cost is
   absent with pre-tokenised ids, and the bookkeeping would only blur the model+loss+optimizer timing.
2. ``plain``: ``BertModel`` (no pooler) forward on the query batch and on the passage batch, CLS vectors,
   ``scores = q @ p.T`` (batch × batch·(1+negatives)), cross-entropy with target ``i`` (positives first, as in MNRL),
   backward, AdamW step (no clipping, no scheduler).

``--compile`` runs both through ``torch.compile`` the way ``xdr train --compile`` does (the Trainer's
``torch_compile``: the whole sentence-transformers model, which the loss then calls; for ``plain`` the
BertModel): the lever for the MFU target, since fused kernels cut the LayerNorm/GELU/dropout memory traffic
that eager bf16 spends between the matmuls. Compilation happens in the warm-up steps.

``--variants`` adds xdr systems with one speed setting of ``DualTrainingConfig`` switched from its default,
to report what each gives (MFU with the setting on against off, same run): ``xdr_eager`` (``attention
eager`` instead of SDPA), ``xdr_unfused`` (``fused_adamw`` off: AdamW's foreach kernels), ``xdr_gradcache``
(``loss cached-mnrl``, GradCache with ``--mini-batch`` texts a forward: the whole 128 x 8 batch's loss
for one extra forward pass, the way to batches beyond memory; its MFU counts useful FLOPs only, so the
extra forward shows as a loss of MFU). Unpadding needs ``attention flash_attention_2`` and the flash-attn
package, which the GPU image lacks; the synthetic batches here have no padding to remove anyway.

Both start from the same weights. Rounds alternate the order of the systems; ``--warmup`` steps per
system are excluded; ``torch.cuda.synchronize()`` brackets every timed block.

FLOPs per training step (useful work; each weight does a multiply and an add per token forward, twice
that backward, hence 6):
    FLOPs = 6 · P · T  +  12 · layers · hidden · Σ L_i²
P = non-embedding parameters of the encoder layers (no embeddings, no pooler), T = tokens in the step
(batch·query_len + batch·(1+negatives)·passage_len), L_i each sequence's length; the attention term is the
two attention matmuls (QKᵀ, AV: 4·L²·hidden per layer forward) times 3 for forward+backward. The score
matrix and the loss are negligible and not counted. MFU = FLOPs · steps/s / peak, with the GPU's dense bf16
peak from ``common.PEAK_BF16_TFLOPS`` (``--peak-tflops`` for other hardware; none for a CPU run). Target: ≥ 40 %.

The xQG paper's recipe (40 epochs over 15,250 XOR-TyDi training questions, batch 128 → 120 steps per
epoch, 4,800 steps) is projected from each system's measured step time; it is only meaningful for the
recipe's shape (``--size base --batch 128 --negatives 7``, CUDA), which the JSON says in ``recipe_match``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from common import BERT_SIZES, BERT_SPECIALS, MBERT_VOCAB, peak_tflops, save_random_bert, sync

from xdr.runtime import machine_info

REPO = Path(__file__).resolve().parents[1]
XQG_EPOCHS, XQG_QUESTIONS = 40, 15_250
# xdr systems with one DualTrainingConfig speed setting switched from its default
VARIANTS: dict[str, dict[str, Any]] = {
    "xdr_eager": {"attention": "eager"},
    "xdr_unfused": {"fused": False},
    "xdr_gradcache": {"loss": "cached-mnrl"},
}


def synthetic_batch(n: int, length: int, gen: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
    """``n`` sequences of exactly ``length`` tokens: [CLS] random ids [SEP], no padding."""
    ids = torch.randint(len(BERT_SPECIALS), MBERT_VOCAB, (n, length), generator=gen)
    ids[:, 0], ids[:, -1] = BERT_SPECIALS.index("[CLS]"), BERT_SPECIALS.index("[SEP]")
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids, device=device),
            "token_type_ids": torch.zeros_like(ids, device=device)}


def layer_params(bert: torch.nn.Module) -> int:
    return sum(p.numel() for p in bert.encoder.parameters())


def step_flops(bert: torch.nn.Module, batch: int, negatives: int, q_len: int, p_len: int) -> float:
    cfg = bert.config
    n_p = batch * (1 + negatives)
    tokens = batch * q_len + n_p * p_len
    attention = 12 * cfg.num_hidden_layers * cfg.hidden_size * (batch * q_len**2 + n_p * p_len**2)
    return float(6 * layer_params(bert) * tokens + attention)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    ap.add_argument("--size", default=None, choices=list(BERT_SIZES), help="default: base on CUDA, tiny on CPU")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per system per round (20 CUDA, 8 CPU)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps per system per round (5 CUDA, 3 CPU)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds; the order of the systems alternates")
    ap.add_argument("--batch", type=int, default=None, help="queries per step (128 CUDA, 8 CPU)")
    ap.add_argument("--negatives", type=int, default=None, help="hard negatives per query (7 CUDA, 3 CPU)")
    ap.add_argument("--query-len", type=int, default=32)
    ap.add_argument("--passage-len", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--compile", action="store_true", help="torch.compile both systems (xdr train --compile)")
    ap.add_argument("--variants", default="", help=f"comma list of {', '.join(VARIANTS)} (see the docstring)")
    ap.add_argument("--mini-batch", type=int, default=None, help="xdr_gradcache's mini_batch_size (256 CUDA, 8 CPU)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from transformers import BertModel, get_linear_schedule_with_warmup

    from xdr.config import ModelSpec
    from xdr.train.dual import build_sentence_transformer, make_loss

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        sys.exit("--device cuda but no GPU is visible")
    if args.threads:
        torch.set_num_threads(args.threads)
    size = args.size or ("base" if cuda else "tiny")
    steps = args.steps or (20 if cuda else 8)
    warmup = args.warmup if args.warmup is not None else (5 if cuda else 3)
    batch = args.batch or (128 if cuda else 8)
    negatives = args.negatives if args.negatives is not None else (7 if cuda else 3)
    n_passages = batch * (1 + negatives)
    info = machine_info()

    tmp = tempfile.TemporaryDirectory(prefix="xdr-bench-train-")
    save_random_bert(Path(tmp.name), size)
    spec = ModelSpec(name=f"random-bert-{size}", path=tmp.name, pooling="cls", normalize=False,
                     query_max_length=args.query_len, passage_max_length=args.passage_len)

    variants = [v for v in args.variants.split(",") if v]
    if unknown := set(variants) - set(VARIANTS):
        ap.error(f"unknown variants {sorted(unknown)}")
    mini_batch = args.mini_batch or (256 if cuda else 8)
    fused_default = True  # the Trainer's adamw_torch_fused, xdr's fused_adamw default (CPU and CUDA)

    def xdr_system(attention: str = "sdpa", fused: bool = fused_default, loss: str = "mnrl") -> tuple[Any, Any, Any]:
        """xdr's model and loss (as train_dual_encoder builds them) with its optimizer and schedule."""
        model = build_sentence_transformer(spec, device=str(device), attention=attention)
        loss_fn = make_loss(model, loss=loss, similarity="dot", scale=1.0,
                            mini_batch_size=mini_batch if loss == "cached-mnrl" else None)
        if args.compile:
            loss_fn.model = torch.compile(model)
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0, eps=1e-8, fused=fused)
        return model, loss_fn, (opt, get_linear_schedule_with_warmup(opt, 0, 10_000))

    # System 1: xdr's model and loss (as train_dual_encoder builds them), stepped as the Trainer does.
    xdr_systems = {"xdr": xdr_system(), **{v: xdr_system(**VARIANTS[v]) for v in variants}}
    st = xdr_systems["xdr"][0]
    # System 2: plain transformers model, same weights.
    plain = BertModel.from_pretrained(tmp.name, add_pooling_layer=False, dtype=torch.float32).to(device)
    bert_st = st[0].auto_model
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(),
                                                 (bert_st.state_dict()[k] for k in plain.state_dict()),
                                                 strict=True)), "the two systems start from different weights"
    plain_forward = torch.compile(plain) if args.compile else plain
    opt_plain = torch.optim.AdamW(plain.parameters(), lr=args.lr, weight_decay=0.0, eps=1e-8, fused=fused_default)

    gen = torch.Generator().manual_seed(0)
    n_batches = 4  # a few distinct batches, cycled, so no step sees the identical input twice running
    data = [(synthetic_batch(batch, args.query_len, gen, device),
             [synthetic_batch(batch, args.passage_len, gen, device) for _ in range(1 + negatives)])
            for _ in range(n_batches)]
    # plain: one passage tensor, positives first then negatives column by column (the MNRL layout), so
    # query i's positive is passage i.
    plain_data = [(q, {k: torch.cat([p[k] for p in ps]) for k in q}) for q, ps in data]
    labels = torch.arange(batch, device=device)  # MNRL: positive of query i is column i
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda)

    def xdr_step(name: str) -> Any:
        model, loss_fn, (opt, sched) = xdr_systems[name]

        def step(i: int) -> torch.Tensor:
            q, ps = data[i % n_batches]
            model.train()
            with autocast:
                loss = loss_fn([q, *ps], None)
            loss.backward()  # cached-mnrl has run its own backward passes inside the loss
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            return loss.detach()

        return step

    def step_plain(i: int) -> torch.Tensor:
        q, p = plain_data[i % n_batches]
        plain.train()
        with autocast:
            qv = plain_forward(**q).last_hidden_state[:, 0]
            pv = plain_forward(**p).last_hidden_state[:, 0]
            scores = (qv @ pv.T).float()
            loss = torch.nn.functional.cross_entropy(scores, labels)
        loss.backward()
        opt_plain.step()
        opt_plain.zero_grad(set_to_none=True)
        return loss.detach()

    systems = {"plain": step_plain, **{name: xdr_step(name) for name in xdr_systems}}
    times: dict[str, list[float]] = {k: [] for k in systems}
    losses: dict[str, list[float]] = {k: [] for k in systems}
    peak_mem: dict[str, int | None] = {k: None for k in systems}
    counter = dict.fromkeys(systems, 0)
    for r in range(args.rounds):
        order = list(systems) if r % 2 == 0 else list(systems)[::-1]  # plain first, then last
        for name in order:
            fn = systems[name]
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            for _ in range(warmup):
                fn(counter[name])
                counter[name] += 1
            sync(device)
            t0 = time.perf_counter()
            last = None
            for _ in range(steps):
                last = fn(counter[name])
                counter[name] += 1
            sync(device)
            seconds = time.perf_counter() - t0
            times[name].append(seconds)
            losses[name].append(float(last))
            if cuda:
                peak_mem[name] = max(peak_mem[name] or 0, torch.cuda.max_memory_allocated())
            print(f"round {r} {name:6s} {steps / seconds:8.3f} steps/s  {n_passages * steps / seconds:10.1f} "
                  f"passages/s  step {1000 * seconds / steps:8.1f} ms  loss {float(last):.4f}", flush=True)

    flops = step_flops(plain, batch, negatives, args.query_len, args.passage_len)
    peak = peak_tflops(info["gpu"] if cuda else None, args.peak_tflops)
    steps_per_epoch = math.ceil(XQG_QUESTIONS / batch)
    recipe_steps = XQG_EPOCHS * steps_per_epoch
    recipe_match = cuda and size == "base" and batch == 128 and negatives == 7 \
        and (args.query_len, args.passage_len) == (32, 128)
    results: dict[str, Any] = {}
    for name, ts in times.items():
        step_s = statistics.median(ts) / steps
        achieved = flops / step_s / 1e12
        results[name] = {
            "seconds_per_round": [round(t, 4) for t in ts],
            "step_seconds_median": round(step_s, 5),
            "steps_per_s": round(1 / step_s, 4),
            "passages_per_s": round(n_passages / step_s, 1),
            "queries_per_s": round(batch / step_s, 1),
            "tokens_per_s": round((batch * args.query_len + n_passages * args.passage_len) / step_s, 1),
            "achieved_tflops": round(achieved, 4),
            "mfu": round(achieved / peak, 4) if peak else None,
            "last_loss_per_round": [round(x, 4) for x in losses[name]],
            "peak_gpu_memory_gib": round(peak_mem[name] / 2**30, 2) if peak_mem[name] else None,
            "xqg_recipe_hours_at_this_shape": round(recipe_steps * step_s / 3600, 3),
            "xqg_recipe_hours_one_gpu": round(recipe_steps * step_s / 3600, 3) if recipe_match else None,
        }
    for name in variants:
        if peak:
            results[name]["mfu_minus_xdr"] = round(results[name]["mfu"] - results["xdr"]["mfu"], 4)
        results[name]["throughput_ratio_to_xdr"] = round(results[name]["passages_per_s"]
                                                         / results["xdr"]["passages_per_s"], 4)
    results["ratio_xdr_over_plain_throughput"] = round(results["xdr"]["passages_per_s"]
                                                       / results["plain"]["passages_per_s"], 4)
    paired = [p / x for x, p in zip(times["xdr"], times["plain"], strict=True)]
    results["ratio_per_round"] = [round(v, 4) for v in paired]
    info["load_average_1m_at_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    report = {
        "benchmark": "train_speed",
        "status": "GPU run" if cuda else "CPU smoke test only: CPU throughput, MFU and hours are not the target "
                                         "(the GPU figures come from --device cuda)",
        "model": spec.name,
        "model_config": BERT_SIZES[size] | {"vocab_size": MBERT_VOCAB},
        "non_embedding_params": layer_params(plain),
        "dtype": "bfloat16 autocast, fp32 master weights" if cuda else "float32",
        "settings": {"device": str(device), "size": size, "batch_queries": batch, "negatives_per_query": negatives,
                     "passages_per_step": n_passages, "query_len": args.query_len,
                     "passage_len": args.passage_len, "warmup_steps": warmup, "timed_steps": steps,
                     "rounds": args.rounds, "lr": args.lr, "threads": torch.get_num_threads(),
                     "torch_compile": args.compile, "variants": variants, "gradcache_mini_batch": mini_batch,
                     "loss": "InfoNCE, in-batch + hard negatives, dot, scale 1, CLS pooling",
                     "data": "synthetic random token ids, exact lengths, no padding, 4 batches cycled"},
        "systems": {
            "xdr": "xdr.train.dual.build_sentence_transformer + make_loss('mnrl', 'dot', 1.0); the "
                   "SentenceTransformerTrainer step (autocast, backward, clip 1.0, AdamW"
                   + " fused" + ", linear schedule) replayed without the Trainer's "
                   "dataloader, tokenisation, logging and checkpointing",
            "plain": "transformers BertModel (no pooler), CLS, q @ p.T, cross-entropy, AdamW"
                     + " fused" + ", no clipping",
        },
        "results": results,
        "model_flops_per_step": flops,
        "flops_formula": "6*P_layers*tokens + 12*layers*hidden*sum(L_i^2) (fwd+bwd; P excludes embeddings "
                         "and pooler; score matrix not counted)",
        "peak_tflops": peak,
        "mfu_target": 0.40,
        "xqg_recipe": {"epochs": XQG_EPOCHS, "train_questions": XQG_QUESTIONS, "batch": batch,
                       "steps_per_epoch": steps_per_epoch, "steps": recipe_steps,
                       "recipe_match": recipe_match},
        "machine": info,
        "command": " ".join(shlex.quote(x) for x in [sys.executable, *sys.argv]),
    }
    name = f"train_speed_{device.type}_{size}{'_compile' * args.compile}{'_variants' * bool(variants)}.json"
    out = args.out or REPO / "benchmarks" / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=2))
    print(f"wrote {out}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
