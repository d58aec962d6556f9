"""The speed paths of the avprompt network: model.py's functions, computed faster.

:mod:`avbench_avprompt.model` writes the method with plain open_clip and whisper calls. With
``fast=True`` (the config's default) :class:`~avbench_avprompt.model.AVPromptModel` uses the
two subclasses at the end of this module instead, which compute the same functions (the same
parameters, the same outputs up to floating-point rounding, the same gradients) with less
work:

* :func:`use_fused_attention`: CLIP's ``nn.MultiheadAttention`` layers project their
  batch-first input in one contiguous matmul and call ``F.scaled_dot_product_attention``
  (the stock training path transposes to sequence-first and projects a strided tensor, which
  torch runs as a batched matmul over a broadcast weight, about half as fast per FLOP);
* :func:`block_at_one_position`: the last CLIP layer computes its output at position 1 alone,
  the one output Eq. 10 reads (the other positions' query, output projection and MLP are
  skipped: about a tenth of the tower's work at ViT-B/32 size);
* :class:`InsertPrompt`: the prompt insertion of Eq. 6 with a backward that writes the
  gradient of the tokens in one copy instead of zero-filled buffers, copies and a sum;
* :meth:`FastAudioPrompts.log_mel`: whisper's log-mel spectrogram computed on the whole batch
  in one STFT, with whisper's window and filterbank made once per device.

The tests compare each piece, and the whole model, with the plain code.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avbench_avprompt.model import SequentialVisualPrompts, ShortTimeAudioPrompts

# -- fused self-attention ----------------------------------------------------------------------


def _self_attention(
    mha: nn.MultiheadAttention,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    key_padding_mask: Tensor | None = None,
    need_weights: bool = True,
    attn_mask: Tensor | None = None,
    average_attn_weights: bool = True,
    is_causal: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """``nn.MultiheadAttention.forward`` for batch-first self-attention without masks, on
    contiguous tensors: one packed QKV projection, ``F.scaled_dot_product_attention``, the
    output projection. The same function (softmax(q k^T / sqrt(d_h)) v per head, same
    weights); anything else goes to the stock forward."""
    if (
        key is not query
        or value is not query
        or key_padding_mask is not None
        or attn_mask is not None
        or need_weights
        or is_causal
        or query.dim() != 3
    ):
        return type(mha).forward(
            mha,
            query,
            key,
            value,
            key_padding_mask=key_padding_mask,
            need_weights=need_weights,
            attn_mask=attn_mask,
            average_attn_weights=average_attn_weights,
            is_causal=is_causal,
        )
    n, length, width = query.shape
    heads = mha.num_heads
    qkv = F.linear(query, mha.in_proj_weight, mha.in_proj_bias)
    q, k, v = qkv.view(n, length, 3, heads, width // heads).permute(2, 0, 3, 1, 4).unbind(0)
    dropout = mha.dropout if mha.training else 0.0
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
    out = out.transpose(1, 2).reshape(n, length, width)
    return F.linear(out, mha.out_proj.weight, mha.out_proj.bias), None


def use_fused_attention(tower: nn.Module) -> int:
    """Give every batch-first ``nn.MultiheadAttention`` of ``tower`` (packed projection, no
    extra key/value biases) the contiguous path of :func:`_self_attention`, as an instance
    attribute, so blocks are still called as modules (their hooks run) and anything but
    unmasked self-attention still takes the stock path. Returns how many were changed."""
    changed = 0
    for module in tower.modules():
        if (
            type(module) is nn.MultiheadAttention
            and module.batch_first
            and module._qkv_same_embed_dim
            and module.in_proj_weight is not None
            and module.bias_k is None
            and module.bias_v is None
            and not module.add_zero_attn
            and "forward" not in module.__dict__
        ):
            module.forward = types.MethodType(_self_attention, module)
            changed += 1
    return changed


@contextlib.contextmanager
def stock_attention(module: nn.Module) -> Iterator[None]:
    """Run ``module``'s ``nn.MultiheadAttention`` layers through their stock forward while the
    block runs (undoing :func:`use_fused_attention` for that time)."""
    saved = []
    for m in module.modules():
        if isinstance(m, nn.MultiheadAttention) and "forward" in m.__dict__:
            saved.append((m, m.__dict__.pop("forward")))
    try:
        yield
    finally:
        for m, f in saved:
            m.forward = f


def uses_fused_attention(module: nn.Module) -> bool:
    """Whether any attention layer of ``module`` runs :func:`_self_attention`."""
    return any(
        isinstance(m, nn.MultiheadAttention) and "forward" in m.__dict__ for m in module.modules()
    )


# -- the last layer at one position ------------------------------------------------------------


def prunable(block: nn.Module) -> bool:
    """Whether :func:`block_at_one_position` computes exactly what ``block`` computes: an
    open_clip ``ResidualAttentionBlock`` (pre-norm self-attention, then pre-norm MLP, each
    with an optional layer scale) whose attention is a packed batch-first
    ``nn.MultiheadAttention`` without extra biases."""
    from open_clip.transformer import ResidualAttentionBlock

    mha = getattr(block, "attn", None)
    return (
        type(block) is ResidualAttentionBlock
        and not hasattr(block, "ln_1_kv")
        and type(mha) is nn.MultiheadAttention
        and mha.batch_first
        and mha._qkv_same_embed_dim
        and mha.in_proj_weight is not None
        and mha.bias_k is None
        and not mha.add_zero_attn
    )


def block_at_one_position(block: nn.Module, x: Tensor, position: int) -> Tensor:
    """``block(x)[:, position]`` for batch-first x (N, L, D), computing only that output.

    In a transformer block every position's output depends on all positions only through
    the keys and values of attention; the query, the attention output, the output
    projection, the residuals and the MLP are per position. So the output at one position
    needs the key/value projection of the whole sequence and everything else for that
    position alone.
    """
    mha = block.attn
    n, length, width = x.shape
    heads = mha.num_heads
    h = block.ln_1(x)
    w, b = mha.in_proj_weight, mha.in_proj_bias
    q = F.linear(h[:, position : position + 1], w[:width], None if b is None else b[:width])
    kv = F.linear(h, w[width:], None if b is None else b[width:])
    k, v = kv.view(n, length, 2, heads, width // heads).permute(2, 0, 3, 1, 4).unbind(0)
    q = q.view(n, 1, heads, width // heads).transpose(1, 2)
    dropout = mha.dropout if mha.training else 0.0
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
    out = F.linear(out.transpose(1, 2).reshape(n, 1, width), mha.out_proj.weight, mha.out_proj.bias)
    y = x[:, position : position + 1] + block.ls_1(out)
    y = y + block.ls_2(block.mlp(block.ln_2(y)))
    return y[:, 0]


# -- prompt insertion ------------------------------------------------------------------------


class InsertPrompt(torch.autograd.Function):
    """``cat([x[:, :1], prompt, x[:, keep:]], dim=1)`` with the prompt (n, D) shared by every
    row of the batch: :meth:`SequentialVisualPrompts.insert_prompts` (Eq. 6).

    The forward is that concatenation. The backward gives the same gradients as autograd
    through the slices and the expand, but writes the gradient of ``x`` in one copy instead
    of two zero-filled full-size buffers, two copies and a sum, once per layer.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, prompt: Tensor, keep: int) -> Tensor:
        ctx.n, ctx.keep = prompt.shape[0], keep
        expanded = prompt.to(x.dtype).expand(x.shape[0], -1, -1)
        return torch.cat([x[:, :1], expanded, x[:, keep:]], dim=1)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        n, keep = ctx.n, ctx.keep
        grad_x = grad_prompt = None
        if ctx.needs_input_grad[0]:
            parts = [grad[:, :1]]
            if keep > 1:  # positions the layer dropped get no gradient
                parts.append(grad.new_zeros(grad.shape[0], keep - 1, grad.shape[2]))
            parts.append(grad[:, 1 + n :])
            grad_x = torch.cat(parts, dim=1)
        if ctx.needs_input_grad[1]:
            grad_prompt = grad[:, 1 : 1 + n].sum(dim=0)
        return grad_x, grad_prompt, None


# -- the two prompt modules, fast ------------------------------------------------------------


class FastVisualPrompts(SequentialVisualPrompts):
    """:class:`SequentialVisualPrompts` with fused attention in the tower, prompt insertion
    through :class:`InsertPrompt` and the last layer at position 1 alone (``prune_last``,
    on where :func:`prunable` holds; set it to False to run the last layer whole)."""

    def __init__(self, tower: nn.Module, n_vpt: int = 1, mode: str = "sequential"):
        super().__init__(tower, n_vpt, mode)
        if self.batch_first:
            use_fused_attention(tower)
        blocks = tower.transformer.resblocks
        self.prune_last = self.batch_first and len(blocks) > 0 and prunable(blocks[-1])

    def insert_prompts(self, x: Tensor, layer: int) -> Tensor:
        return InsertPrompt.apply(x, self.prompts[layer], self.kept_from(layer))

    def forward(self, images: Tensor) -> Tensor:
        if not self.prune_last:
            return super().forward(images)
        x = self.embed(images)
        *blocks, last = self.tower.transformer.resblocks
        for layer, block in enumerate(blocks):
            x = self.run_block(block, self.insert_prompts(x, layer))
        x = self.insert_prompts(x, len(blocks))
        return self.tower.ln_post(block_at_one_position(last, x, 1))


class FastAudioPrompts(ShortTimeAudioPrompts):
    """:class:`ShortTimeAudioPrompts` with the log-mel spectrograms of a batch in one STFT."""

    def __init__(self, encoder: nn.Module, n_tokens: int, prompt_dim: int):
        super().__init__(encoder, n_tokens, prompt_dim)
        self._mel_cache: dict[Any, tuple[Tensor, Tensor]] = {}

    def _mel_constants(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """whisper's Hann window and mel filterbank on ``device``, made once per device."""
        got = self._mel_cache.get(device)
        if got is None:
            from whisper.audio import N_FFT, mel_filters

            window = torch.hann_window(N_FFT, device=device)
            got = self._mel_cache[device] = (window, mel_filters(device, self.n_mels))
        return got

    def log_mel(self, audio: Tensor) -> Tensor:
        """The computation of ``whisper.log_mel_spectrogram`` (Hann-windowed STFT of 400
        samples every 160, power, whisper's mel filterbank, log10 clamped at 1e-10, then at 8
        below the maximum, then (x + 4) / 4) run on the whole batch at once, the maximum taken
        per segment: exactly as calling whisper on each segment alone."""
        from whisper.audio import HOP_LENGTH, N_FFT

        with torch.autocast(device_type=audio.device.type, enabled=False):
            audio = audio.float()
            window, filters = self._mel_constants(audio.device)
            stft = torch.stft(audio, N_FFT, HOP_LENGTH, window=window, return_complex=True)
            power = stft[..., :-1].abs() ** 2  # (B, 1 + N_FFT / 2, frames)
            log_spec = torch.clamp(filters @ power, min=1e-10).log10()
            peak = log_spec.amax(dim=(-2, -1), keepdim=True)
            log_spec = torch.maximum(log_spec, peak - 8.0)
            return (log_spec + 4.0) / 4.0
