"""A static-cache decode loop for T5-family checkpoints (mT5, T5) that draws exactly what HF ``generate``
plus :class:`~xdr.generate.hf.SeededSampler` draws, several times faster on a GPU.

HF ``generate`` copies each passage's encoder output ``n`` times (``num_return_sequences``), projects the
cross-attention keys and values of every copy, grows its self-attention cache step by step and launches
hundreds of small kernels per token. This loop instead

- encodes each passage once and projects its cross-attention K/V once: the ``n`` samples of a passage are
  ``n`` query positions against the passage's one set of keys;
- keeps the self-attention keys and values in buffers of fixed size (``max_new_tokens`` positions, the
  future masked), so every step has the same shapes;
- runs one step as a single function that ``torch.compile`` can capture in a CUDA graph (``compile=True``,
  mode "reduce-overhead"); on a GPU, batches are padded to fixed shapes (batch size, input length rounded
  up to a multiple of 64) so a handful of graphs serve a whole run.

It reuses the checkpoint's own modules (projections, layer norms, feed-forward blocks, relative position
bias, LM head), so only the attention arithmetic and the loop are hand-written: no library offers a decode
loop that keeps xdr's per-row seeded sampling. Sampling goes through :func:`~xdr.generate.hf.seeded_choice`,
the function SeededSampler uses, so the two paths pick the same token from the same logits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.nn import functional as F
from transformers import GenerationConfig, MT5ForConditionalGeneration, PreTrainedModel, T5ForConditionalGeneration

from xdr.generate.hf import Sampling, seeded_choice

LENGTH_BUCKET = 64  # compiled runs pad the input length to a multiple of this: few shapes, few graphs
# generation-config settings that add a logits processor ahead of SeededSampler in HF ``generate``; a model
# that sets any of them keeps HF's path, so both paths always see the same scores
_PROCESSOR_SETTINGS = (
    "repetition_penalty", "encoder_repetition_penalty", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size",
    "bad_words_ids", "min_length", "min_new_tokens", "forced_bos_token_id", "forced_eos_token_id",
    "suppress_tokens", "begin_suppress_tokens", "sequence_bias", "exponential_decay_length_penalty",
    "guidance_scale", "diversity_penalty", "remove_invalid_values", "renormalize_logits", "watermarking_config",
)


def unsupported_reason(model: PreTrainedModel) -> str | None:
    """Why the static loop cannot stand in for HF ``generate`` on ``model``, or None when it can."""
    if type(model) not in (MT5ForConditionalGeneration, T5ForConditionalGeneration):
        return f"{type(model).__name__} is not a T5-family model"
    if model.config.decoder_start_token_id is None:
        return "the config has no decoder_start_token_id"
    default, own = GenerationConfig(), model.generation_config
    changed = [s for s in _PROCESSOR_SETTINGS if getattr(own, s, None) != getattr(default, s, None)]
    return f"its generation config sets {', '.join(changed)}" if changed else None


@dataclass
class _Buffers:
    """Everything one step reads or writes, at fixed addresses (CUDA graphs replay on the same memory)."""

    k_self: torch.Tensor  # layers x rows x heads x steps x d_kv
    v_self: torch.Tensor
    k_cross: torch.Tensor  # layers x passages x heads x input length x d_kv
    v_cross: torch.Tensor
    cross_mask: torch.Tensor  # passages x 1 x 1 x input length: 0 on tokens, -inf on padding
    uniforms: torch.Tensor  # rows x steps, float64: row r's draw at step t


class StaticDecoder:
    """Seeded top-k/top-p sampling from a T5-family model with shared cross-attention and a static cache.

    ``generate`` takes a padded batch of inputs and one row of uniforms per sample; it returns the new
    tokens, ``pad`` after a row's EOS, exactly as HF ``generate`` with :class:`SeededSampler` does.
    ``fixed_shapes`` (default: with ``compile``) pads every batch to the largest passage count seen and
    its input length to a multiple of ``LENGTH_BUCKET``; padding rows and keys are masked, so the tokens
    do not change.
    """

    def __init__(
        self, model: PreTrainedModel, sampling: Sampling, *, compile: bool = False, fixed_shapes: bool | None = None
    ) -> None:
        if reason := unsupported_reason(model):
            raise ValueError(f"the static decode loop cannot run this model: {reason}")
        self.model, self.sampling, self.compiled = model, sampling, compile
        # a compiled step gets the same few shapes (a new shape would capture a new graph)
        self.fixed_shapes = compile if fixed_shapes is None else fixed_shapes
        cfg = model.config
        self.blocks = list(model.decoder.block)
        self.heads, self.d_kv, self.steps = cfg.num_heads, cfg.d_kv, sampling.max_new_tokens
        self.start_id: int = cfg.decoder_start_token_id
        eos = model.generation_config.eos_token_id
        eos = cfg.eos_token_id if eos is None else eos
        self.eos_ids = torch.tensor(eos if isinstance(eos, list) else [eos], device=model.device)
        # T5 scales the decoder output before its LM head (older transformers: whenever the head is tied)
        scale = getattr(cfg, "scale_decoder_outputs", cfg.tie_word_embeddings)
        self.scale_output = bool(isinstance(model, T5ForConditionalGeneration) and scale)
        with torch.no_grad():  # heads x query position x key position, the future masked
            bias = self.blocks[0].layer[0].SelfAttention.compute_bias(self.steps, self.steps)[0]
        future = torch.ones(self.steps, self.steps, dtype=torch.bool, device=model.device).triu(1)
        self.self_bias = bias.masked_fill(future, float("-inf")).to(model.dtype).unsqueeze(0).contiguous()
        self.positions = [torch.tensor([t], device=model.device) for t in range(self.steps)]
        self._buffers: dict[tuple[int, int, int], _Buffers] = {}
        self._step: Callable[..., torch.Tensor] = self.step
        if compile:
            torch._dynamo.mark_static_address(self.self_bias)
            mode = "reduce-overhead" if model.device.type == "cuda" else "default"  # CUDA graphs on a GPU
            self._step = torch.compile(self.step, mode=mode, fullgraph=True, dynamic=False)

    def _buffers_for(self, passages: int, n: int, length: int) -> _Buffers:
        key = (passages, n, length)
        if key not in self._buffers:
            dev, dtype, layers = self.model.device, self.model.dtype, len(self.blocks)
            self_shape = (layers, passages * n, self.heads, self.steps, self.d_kv)
            cross_shape = (layers, passages, self.heads, length, self.d_kv)
            bufs = _Buffers(
                *(torch.zeros(s, device=dev, dtype=dtype) for s in (self_shape, self_shape, cross_shape, cross_shape)),
                cross_mask=torch.zeros((passages, 1, 1, length), device=dev, dtype=dtype),
                uniforms=torch.zeros((passages * n, self.steps), device=dev, dtype=torch.float64),
            )
            if self.compiled:
                for t in vars(bufs).values():
                    torch._dynamo.mark_static_address(t)
            self._buffers[key] = bufs
        return self._buffers[key]

    @torch.inference_mode()
    def _prefill(self, bufs: _Buffers, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        """Encode once per passage and project every layer's cross-attention keys and values once."""
        hidden = self.model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        passages, length = input_ids.shape
        shape = (passages, length, self.heads, self.d_kv)
        for layer, block in enumerate(self.blocks):
            attention = block.layer[1].EncDecAttention
            bufs.k_cross[layer, :passages, :, :length].copy_(attention.k(hidden).view(shape).transpose(1, 2))
            bufs.v_cross[layer, :passages, :, :length].copy_(attention.v(hidden).view(shape).transpose(1, 2))
        mask = torch.zeros(attention_mask.shape, device=hidden.device, dtype=bufs.cross_mask.dtype)
        bufs.cross_mask.fill_(float("-inf"))
        bufs.cross_mask[:passages, 0, 0, :length] = mask.masked_fill_(attention_mask == 0, float("-inf"))
        bufs.cross_mask[passages:, 0, 0, 0] = 0.0  # filler rows of a padded batch attend to one key, not none

    def step(self, bufs: _Buffers, tokens: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """One decoder step for all rows: each row's next token, drawn with its uniform for the step."""
        rows, passages = bufs.k_self.shape[1], bufs.k_cross.shape[1]
        n = rows // passages
        x = self.model.decoder.embed_tokens(tokens)[:, None, :]  # rows x 1 x d
        self_bias = self.self_bias.index_select(2, position)  # 1 x heads x 1 x steps
        for layer, block in enumerate(self.blocks):
            sa = block.layer[0]
            h, att = sa.layer_norm(x), sa.SelfAttention
            q, k, v = (proj(h).view(rows, 1, self.heads, -1).transpose(1, 2) for proj in (att.q, att.k, att.v))
            bufs.k_self[layer].index_copy_(2, position, k)
            bufs.v_self[layer].index_copy_(2, position, v)
            out = F.scaled_dot_product_attention(
                q, bufs.k_self[layer], bufs.v_self[layer], attn_mask=self_bias, scale=1.0
            )
            x = x + att.o(out.transpose(1, 2).reshape(rows, 1, -1))
            ca = block.layer[1]
            att = ca.EncDecAttention
            # the n samples of a passage are n query positions against the passage's one set of keys
            q = att.q(ca.layer_norm(x)).view(passages, n, self.heads, -1).transpose(1, 2)
            out = F.scaled_dot_product_attention(
                q, bufs.k_cross[layer], bufs.v_cross[layer], attn_mask=bufs.cross_mask, scale=1.0
            )
            x = x + att.o(out.transpose(1, 2).reshape(rows, 1, -1))
            x = block.layer[-1](x)
        x = self.model.decoder.final_layer_norm(x)
        if self.scale_output:
            x = x * (self.model.config.d_model**-0.5)
        logits = self.model.lm_head(x)[:, 0, :].float()  # HF samples from float32 logits
        u = bufs.uniforms.index_select(1, position)[:, 0]
        return seeded_choice(logits, u, self.sampling)

    @torch.inference_mode()
    def generate(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, n: int, uniforms: torch.Tensor,
        pad_id: int, check_every: int = 4,
    ) -> torch.Tensor:
        """``len(input_ids) * n`` rows of new tokens (passage-major, as HF lays out ``num_return_sequences``).

        Decoding stops once every row has emitted EOS (checked every ``check_every`` steps: one host sync
        each) or after ``max_new_tokens``; tokens after a row's EOS are ``pad_id``.
        """
        passages, length = input_ids.shape
        shape_passages, shape_length = passages, length
        if self.fixed_shapes:  # one CUDA graph per length bucket, not per batch
            shape_length = -(-length // LENGTH_BUCKET) * LENGTH_BUCKET
            shape_passages = max(passages, max((p for p, m, _ in self._buffers if m == n), default=0))
        bufs = self._buffers_for(shape_passages, n, shape_length)
        self._prefill(bufs, input_ids, attention_mask)
        rows, dev = passages * n, input_ids.device
        bufs.uniforms[:rows].copy_(uniforms)
        tokens = torch.full((shape_passages * n,), self.start_id, device=dev, dtype=torch.long)
        unfinished = torch.ones(rows, device=dev, dtype=torch.bool)
        out = torch.full((rows, self.steps), pad_id, device=dev, dtype=torch.long)
        for t, position in enumerate(self.positions):
            if self.compiled:  # each step is a new iteration for the CUDA-graph tree
                torch.compiler.cudagraph_mark_step_begin()
            chosen = self._step(bufs, tokens, position)
            new = torch.where(unfinished, chosen[:rows], pad_id)
            out[:, t] = new
            unfinished &= ~torch.isin(new, self.eos_ids)
            if (t + 1) % check_every == 0 and not bool(unfinished.any()):
                break
            tokens = chosen.clone()  # a graph replay reuses its output buffer
            tokens[:rows] = new
        return out
