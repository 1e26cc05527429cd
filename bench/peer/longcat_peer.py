#!/usr/bin/python3
"""LongCat-Flash in plain PyTorch: the same-run reference ("peer") for `longcat bench forward|generate|train --peer torch`.

Written for this project from the model's description (docs in the repository and the spec), not copied from
transformers: MLA with the latent KV path (prefill in the full form, decode absorbed in latent space over the
cache of c_kv and the roped k_rope), the router (softmax over real + zero experts, top-k of prob + expert bias,
unbiased weights x routed_scaling_factor), experts grouped (tokens sorted by expert, index_select + one matmul
for gate and up together per expert, index_add_ in ascending expert order), zero experts as the scaled identity,
the shortcut-connected MoE (ScMoE) layer and the MTP head when the checkpoint has one.

Checkpoints: our safetensors folders (Hugging Face layout, `config.json`, `model.safetensors` or shards with
`model.safetensors.index.json`); F32 and BF16 weights (BF16 widened exactly to float32); F8_E4M3 / I8 weights are
refused by name. Compute is float32.

Verified against tests/fixtures/reference by bench/peer/test_parity.py (logits, hidden states, routing, loss,
greedy decoding through the latent KV cache, gradients).

Server mode (`--serve`), used by the C# benches to interleave repeats with ours; one JSON object per line:
  first line printed: {"type": "info", torch, threads, env...}
  {"op": "load", "model": DIR}                                        -> {"ok": true, "params": N, "dtype": ...}
  {"op": "forward", "ids": [...], "all_logits": false}                -> {"seconds": s}
  {"op": "generate", "prompt": [...], "max_tokens": n, "mtp": false}  -> {"prefill_seconds", "decode_seconds", "tokens": [...], "acceptance"}
  {"op": "train_setup", "ids": [...], "batch": B, "seq": S, "lr": 1e-4} -> {"ok": true}
  {"op": "train_step"}                                                -> {"seconds": s, "loss": l}
  {"op": "quit"}
"""
import json
import math
import os
import struct
import sys
import time


def _reexec_with_openblas_kernel():
    """PyTorch's float32 matmul goes through libblas (OpenBLAS on Debian), which misdetects some virtualised Xeons as
    "Prescott" (SSE3); name the kernel of the CPU's instruction set before torch loads it (see bench/openblas_gemm.py)."""
    if "OPENBLAS_CORETYPE" in os.environ or os.environ.get("_LONGCAT_PEER_REEXEC") == "1":
        return
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from openblas_gemm import openblas_coretype
    core = openblas_coretype()
    if core:
        env = dict(os.environ, OPENBLAS_CORETYPE=core, _LONGCAT_PEER_REEXEC="1")
        os.execve(sys.executable, [sys.executable] + sys.argv, env)


if __name__ == "__main__":
    _reexec_with_openblas_kernel()

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


# ---------------------------------------------------------------------------------------------------------------
# Checkpoint reading

class PeerError(Exception):
    """A clear, named refusal (bad or unsupported input)."""


def _read_safetensors(path, wanted_dtypes=("F32", "BF16")):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
        data = np.memmap(path, dtype=np.uint8, mode="r")
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        dt, shape, (b, e) = meta["dtype"], meta["shape"], meta["data_offsets"]
        raw = data[base + b: base + e]
        if dt == "F32":
            a = np.frombuffer(raw, dtype="<f4").reshape(shape)
        elif dt == "BF16":
            a = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32).reshape(shape)
        elif dt == "I64":
            a = np.frombuffer(raw, dtype="<i8").reshape(shape)
        else:
            out[name] = PeerError(f"{path}: tensor '{name}' is stored as {dt}; the PyTorch peer reads F32 and BF16 "
                                  f"weights only (quantized F8_E4M3 / I8 checkpoints are not supported)")
            continue
        out[name] = a
    return out


def load_tensors(folder):
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    elif os.path.exists(os.path.join(folder, "model.safetensors")):
        files = ["model.safetensors"]
    else:
        raise PeerError(f"{folder}: no model.safetensors or model.safetensors.index.json")
    tensors = {}
    for fn in files:
        tensors.update(_read_safetensors(os.path.join(folder, fn)))
    for name, t in tensors.items():
        if isinstance(t, PeerError):
            if name.endswith(".weight_scale_inv") or name.endswith(".weight_scale"):
                continue
            raise t
    return tensors


class Config:
    def __init__(self, d, source):
        def get(k, default):
            return d[k] if k in d and d[k] is not None else default
        self.vocab_size = get("vocab_size", 131072)
        self.hidden_size = get("hidden_size", 6144)
        self.num_layers = get("num_layers", get("num_hidden_layers", 28))
        self.num_heads = get("num_attention_heads", 64)
        self.q_lora_rank = get("q_lora_rank", 1536)
        self.kv_lora_rank = get("kv_lora_rank", 512)
        self.qk_nope = get("qk_nope_head_dim", 128)
        self.qk_rope = get("qk_rope_head_dim", 64)
        self.v_dim = get("v_head_dim", 128)
        self.ffn = get("ffn_hidden_size", 12288)
        self.expert_ffn = get("expert_ffn_hidden_size", 2048)
        self.n_experts = get("n_routed_experts", 512)
        self.zero_experts = get("zero_expert_num", 0)
        self.topk = get("moe_topk", 12)
        self.scale = float(get("routed_scaling_factor", 1.0))
        self.scale_q = bool(get("mla_scale_q_lora", False))
        self.scale_kv = bool(get("mla_scale_kv_lora", False))
        self.eps = float(get("rms_norm_eps", 1e-5))
        # transformers does not pass rms_norm_eps to the two latent norms (its default 1e-6); our key overrides.
        self.latent_eps = float(d["mla_latent_norm_eps"]) if d.get("mla_latent_norm_eps") is not None else (
            self.eps if "mla_latent_norm_eps" in d else 1e-6)
        self.theta = float(get("rope_theta", 10000000.0))
        self.tie = bool(get("tie_word_embeddings", False))
        for key, ok, why in [
            ("ffn_topology", get("ffn_topology", "shortcut") == "shortcut", "only the shortcut (ScMoE) layer"),
            ("zero_expert_type", get("zero_expert_type", "identity") == "identity", "only identity zero experts"),
            ("hidden_act", get("hidden_act", "silu") == "silu", "only silu"),
            ("router_bias", not get("router_bias", False), "no router bias"),
            ("norm_topk_prob", not get("norm_topk_prob", False), "no top-k renormalization"),
            ("attention_bias", not get("attention_bias", False), "no attention bias"),
            ("rope_scaling", (d.get("rope_scaling") or {}).get("type", (d.get("rope_scaling") or {}).get("rope_type", "default")) == "default",
             "only unscaled RoPE"),
            ("quantization_config", d.get("quantization_config") is None, "float checkpoints only (F32/BF16)"),
        ]:
            if not ok:
                raise PeerError(f"{source}: {key} = {json.dumps(d.get(key))}: the PyTorch peer supports {why}")
        self.q_dim = self.qk_nope + self.qk_rope
        self.alpha_q = math.sqrt(self.hidden_size / self.q_lora_rank) if self.scale_q else 1.0
        self.alpha_kv = math.sqrt(self.hidden_size / self.kv_lora_rank) if self.scale_kv else 1.0
        self.softmax_scale = self.q_dim ** -0.5

    @staticmethod
    def load(folder):
        path = os.path.join(folder, "config.json")
        if not os.path.exists(path):
            raise PeerError(f"{folder}: config.json not found")
        with open(path) as f:
            return Config(json.load(f), path)


# ---------------------------------------------------------------------------------------------------------------
# Modules

def rms_norm(x, w, eps):
    """w * (x * rsqrt(mean(x^2) + eps)), the normalization in float32 whatever the compute dtype."""
    y = x.float()
    y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + eps)
    return w * y.to(w.dtype)


class Rope:
    """Interleaved pairs (2i, 2i+1) rotate by pos * theta^(-2i/d); float32 angles like the reference."""

    def __init__(self, dim, theta):
        self.inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
        self.dim = dim
        self._cos = self._sin = None

    def tables(self, n):
        if self._cos is None or self._cos.shape[0] < n:
            ang = torch.arange(max(n, 64), dtype=torch.float32)[:, None] * self.inv_freq[None, :]
            self._cos, self._sin = ang.cos(), ang.sin()
        return self._cos, self._sin

    def apply(self, x, pos0):
        """x [..., S, heads, d] with positions pos0..pos0+S-1 on dim -3."""
        s = x.shape[-3]
        cos, sin = self.tables(pos0 + s)
        cos, sin = cos[pos0:pos0 + s, None, :], sin[pos0:pos0 + s, None, :]
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2).to(x.dtype)


class Mla(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        h, nh = c.hidden_size, c.num_heads
        self.q_a_proj = nn.Parameter(torch.empty(c.q_lora_rank, h))
        self.q_a_layernorm = nn.Parameter(torch.empty(c.q_lora_rank))
        self.q_b_proj = nn.Parameter(torch.empty(nh * c.q_dim, c.q_lora_rank))
        self.kv_a_proj_with_mqa = nn.Parameter(torch.empty(c.kv_lora_rank + c.qk_rope, h))
        self.kv_a_layernorm = nn.Parameter(torch.empty(c.kv_lora_rank))
        self.kv_b_proj = nn.Parameter(torch.empty(nh * (c.qk_nope + c.v_dim), c.kv_lora_rank))
        self.o_proj = nn.Parameter(torch.empty(h, nh * c.v_dim))
        self._absorbed = None

    def _q(self, x, rope, pos0):
        c = self.c
        cq = rms_norm(F.linear(x, self.q_a_proj), self.q_a_layernorm, c.latent_eps) * c.alpha_q
        q = F.linear(cq, self.q_b_proj).unflatten(-1, (c.num_heads, c.q_dim))      # [B, S, nh, dq]
        return q[..., :c.qk_nope], rope.apply(q[..., c.qk_nope:], pos0)

    def _latent(self, x, rope, pos0):
        c = self.c
        kv = F.linear(x, self.kv_a_proj_with_mqa)
        ckv = rms_norm(kv[..., :c.kv_lora_rank], self.kv_a_layernorm, c.latent_eps) * c.alpha_kv
        k_rope = rope.apply(kv[..., None, c.kv_lora_rank:], pos0)[..., 0, :]        # [B, S, dr], one key for all heads
        return ckv, k_rope

    def forward(self, x, rope, cache=None):
        """Full-form causal attention over x [B, S, H] (prefill, training); appends the latent cache if given."""
        c = self.c
        b, s, _ = x.shape
        q_nope, q_rope = self._q(x, rope, 0)
        ckv, k_rope = self._latent(x, rope, 0)
        if cache is not None:
            cache.append(ckv, k_rope)
        kvb = F.linear(ckv, self.kv_b_proj).unflatten(-1, (c.num_heads, c.qk_nope + c.v_dim))
        k_nope, v = kvb[..., :c.qk_nope], kvb[..., c.qk_nope:]
        q = torch.cat((q_nope, q_rope), -1).transpose(1, 2)                            # [B, nh, S, dq]
        k = torch.cat((k_nope, k_rope[:, :, None, :].expand(b, s, c.num_heads, c.qk_rope)), -1).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-1, -2)) * c.softmax_scale
        mask = torch.full((s, s), float("-inf")).triu_(1)
        p = torch.softmax(scores.float() + mask, dim=-1).to(v.dtype)
        o = torch.matmul(p, v.transpose(1, 2)).transpose(1, 2).reshape(b, s, c.num_heads * c.v_dim)
        return F.linear(o, self.o_proj)

    def absorbed(self):
        """W_UK per head [nh, dn, r] and W_UV per head [nh, dv, r], prepared once (decode)."""
        if self._absorbed is None:
            c = self.c
            w = self.kv_b_proj.detach().view(c.num_heads, c.qk_nope + c.v_dim, c.kv_lora_rank)
            self._absorbed = (w[:, :c.qk_nope].contiguous(), w[:, c.qk_nope:].contiguous())
        return self._absorbed

    def decode(self, x, rope, cache):
        """Absorbed attention in latent space for x [B, n, H] at positions cache.length..; appends to the cache."""
        c = self.c
        pos0 = cache.length
        n = x.shape[1]
        q_nope, q_rope = self._q(x, rope, pos0)                                        # [B, n, nh, dn], [B, n, nh, dr]
        ckv, k_rope = self._latent(x, rope, pos0)
        cache.append(ckv, k_rope)
        w_uk, w_uv = self.absorbed()
        q_lat = torch.einsum("bnhd,hdr->bhnr", q_nope, w_uk)                          # [B, nh, n, r]
        C, R = cache.ckv[:, :cache.length], cache.krope[:, :cache.length]             # [B, T, r], [B, T, dr]
        scores = (torch.matmul(q_lat, C[:, None].transpose(-1, -2))
                  + torch.matmul(q_rope.transpose(1, 2), R[:, None].transpose(-1, -2))) * c.softmax_scale
        if n > 1:
            t = cache.length
            mask = torch.full((n, t), float("-inf")).triu_(t - n + 1)
            scores = scores + mask
        p = torch.softmax(scores.float(), dim=-1).to(C.dtype)
        o_lat = torch.matmul(p, C[:, None])                                            # [B, nh, n, r]
        o = torch.einsum("bhnr,hvr->bnhv", o_lat, w_uv).reshape(x.shape[0], n, c.num_heads * c.v_dim)
        return F.linear(o, self.o_proj)


class LatentCache:
    def __init__(self, c, batch, capacity, dtype=torch.float32):
        self.ckv = torch.zeros(batch, capacity, c.kv_lora_rank, dtype=dtype)
        self.krope = torch.zeros(batch, capacity, c.qk_rope, dtype=dtype)
        self.length = 0

    def append(self, ckv, krope):
        n = ckv.shape[1]
        self.ckv[:, self.length:self.length + n] = ckv
        self.krope[:, self.length:self.length + n] = krope
        self.length += n


class Ffn(nn.Module):
    """SwiGLU with gate and up fused into one matmul: down(silu(gate x) * up x)."""

    def __init__(self, h, inter):
        super().__init__()
        self.inter = inter
        self.gate_up = nn.Parameter(torch.empty(2 * inter, h))
        self.down = nn.Parameter(torch.empty(h, inter))

    def forward(self, x):
        gu = F.linear(x, self.gate_up)
        return F.linear(F.silu(gu[..., :self.inter]) * gu[..., self.inter:], self.down)


class Moe(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.classifier = nn.Parameter(torch.empty(c.n_experts + c.zero_experts, c.hidden_size))
        self.register_buffer("bias", torch.zeros(c.n_experts + c.zero_experts))
        self.experts = nn.ModuleList(Ffn(c.hidden_size, c.expert_ffn) for _ in range(c.n_experts))
        self.last_topk = None

    def route(self, x):
        c = self.c
        p = torch.softmax(F.linear(x.float(), self.classifier), dim=-1)      # router in float32 (as released)
        sel = torch.topk(p.detach() + self.bias, c.topk, dim=-1).indices
        return sel, p.gather(-1, sel) * c.scale

    def forward(self, x):
        c = self.c
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        sel, w = self.route(x)
        self.last_topk = (sel, w)
        out = torch.zeros_like(x)
        flat = sel.flatten()
        experts, order = torch.sort(flat, stable=True)
        tokens = order // c.topk
        counts = torch.bincount(experts, minlength=c.n_experts + c.zero_experts).tolist()
        wflat = w.flatten()[order].to(x.dtype)
        start = 0
        for e in range(c.n_experts):                       # grouped: one matmul per expert over its tokens
            n = counts[e]
            if n:
                idx = tokens[start:start + n]
                y = self.experts[e](x.index_select(0, idx)) * wflat[start:start + n, None]
                out.index_add_(0, idx, y)
            start += n
        if c.zero_experts:                                   # identity experts: weight * x, no FLOPs beyond the scale
            zw = (w * (sel >= c.n_experts)).sum(-1, keepdim=True)
            out = out + zw.to(x.dtype) * x
        return out.reshape(shape)


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        h = c.hidden_size
        self.input_norm = nn.ParameterList(nn.Parameter(torch.empty(h)) for _ in range(2))
        self.post_norm = nn.ParameterList(nn.Parameter(torch.empty(h)) for _ in range(2))
        self.attn = nn.ModuleList(Mla(c) for _ in range(2))
        self.mlps = nn.ModuleList(Ffn(h, c.ffn) for _ in range(2))
        self.moe = Moe(c)

    def forward(self, h, rope, caches=None, decode=False):
        eps = self.c.eps
        moe_out = None
        for i in range(2):
            a = rms_norm(h, self.input_norm[i], eps)
            if decode:
                h = h + self.attn[i].decode(a, rope, caches[i])
            else:
                h = h + self.attn[i](a, rope, caches[i] if caches else None)
            x = rms_norm(h, self.post_norm[i], eps)
            if i == 0:
                moe_out = self.moe(x)                        # ScMoE: the MoE reads dense FFN 0's input
            h = h + self.mlps[i](x)
        return h + moe_out                                   # and joins at the end of the layer


class MtpHead(nn.Module):
    def __init__(self, c, own_embedding):
        super().__init__()
        self.c = c
        h = c.hidden_size
        self.embed = nn.Parameter(torch.empty(c.vocab_size, h)) if own_embedding else None
        self.enorm = nn.Parameter(torch.empty(h))
        self.hnorm = nn.Parameter(torch.empty(h))
        self.eh_proj = nn.Parameter(torch.empty(h, 2 * h))
        self.input_norm = nn.Parameter(torch.empty(h))
        self.post_norm = nn.Parameter(torch.empty(h))
        self.attn = Mla(c)
        self.mlp = Ffn(h, c.ffn)
        self.norm = nn.Parameter(torch.empty(h))

    def forward(self, main_hidden, next_tokens, main_embed, lm_head, rope, cache):
        """main_hidden [B, n, H] (after the final norm), next_tokens [B, n] -> draft logits [B, n, V]."""
        c = self.c
        emb = F.embedding(next_tokens, self.embed if self.embed is not None else main_embed)
        x = F.linear(torch.cat((rms_norm(emb, self.enorm, c.eps), rms_norm(main_hidden, self.hnorm, c.eps)), -1), self.eh_proj)
        a = rms_norm(x, self.input_norm, c.eps)
        x = x + (self.attn.decode(a, rope, cache) if cache.length else self.attn(a, rope, cache))
        x = x + self.mlp(rms_norm(x, self.post_norm, c.eps))
        return F.linear(rms_norm(x, self.norm, c.eps), lm_head)


class LongCatPeer(nn.Module):
    def __init__(self, c, mtp=False, mtp_own_embedding=False):
        super().__init__()
        self.c = c
        self.embed = nn.Parameter(torch.empty(c.vocab_size, c.hidden_size))
        self.layers = nn.ModuleList(Layer(c) for _ in range(c.num_layers))
        self.norm = nn.Parameter(torch.empty(c.hidden_size))
        self.lm_head = None if c.tie else nn.Parameter(torch.empty(c.vocab_size, c.hidden_size))
        self.mtp = MtpHead(c, mtp_own_embedding) if mtp else None
        self.rope = Rope(c.qk_rope, c.theta)

    def head_weight(self):
        return self.embed if self.lm_head is None else self.lm_head

    def forward(self, ids, keep_hidden=False, all_logits=True, caches=None):
        """ids [B, S] -> logits [B, S, V] (or [B, 1, V] for the last position) and, if asked, hidden states."""
        h = F.embedding(ids, self.embed)
        hidden = []
        for l, layer in enumerate(self.layers):
            h = layer(h, self.rope, caches[l] if caches else None)
            if keep_hidden:
                hidden.append(h)
        hf = rms_norm(h, self.norm, self.c.eps)
        logits = F.linear(hf if all_logits else hf[:, -1:], self.head_weight())
        return logits, hf, hidden

    def decode_step(self, ids, caches):
        """ids [B, n] at positions caches' length.. -> (logits [B, n, V], final hidden [B, n, H])."""
        h = F.embedding(ids, self.embed)
        for l, layer in enumerate(self.layers):
            h = layer(h, self.rope, caches[l], decode=True)
        hf = rms_norm(h, self.norm, self.c.eps)
        return F.linear(hf, self.head_weight()), hf

    def new_caches(self, batch, capacity):
        return [[LatentCache(self.c, batch, capacity, self.embed.dtype) for _ in range(2)] for _ in range(self.c.num_layers)]

    def to_compute_dtype(self, dtype):
        """Casts every weight to dtype (bfloat16: PyTorch's bf16 inference) except the router, kept float32."""
        with torch.no_grad():
            for name, t, kind in self.named_tensors():
                if kind != "buffer" and ".mlp.router." not in name and t.dtype != dtype:
                    t.data = t.data.to(dtype)
        for L in self.layers:
            for a in L.attn:
                a._absorbed = None
        if self.mtp is not None:
            self.mtp.attn._absorbed = None
        return self

    # -- checkpoint names ----------------------------------------------------------------------------------------
    def named_tensors(self):
        """(official name, tensor, kind) for every checkpoint tensor; kind 'gate'/'up' are halves of a fused gate_up."""
        c = self.c
        yield "model.embed_tokens.weight", self.embed, None
        yield "model.norm.weight", self.norm, None
        if self.lm_head is not None:
            yield "lm_head.weight", self.lm_head, None

        def mla(p, a):
            for n in ("q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj", "q_a_layernorm", "kv_a_layernorm"):
                yield p + n + ".weight", getattr(a, n), None

        def ffn(p, f):
            yield p + "gate_proj.weight", f.gate_up, "gate"
            yield p + "up_proj.weight", f.gate_up, "up"
            yield p + "down_proj.weight", f.down, None

        for l, L in enumerate(self.layers):
            p = f"model.layers.{l}."
            for s in range(2):
                yield f"{p}input_layernorm.{s}.weight", L.input_norm[s], None
                yield f"{p}post_attention_layernorm.{s}.weight", L.post_norm[s], None
                yield from mla(f"{p}self_attn.{s}.", L.attn[s])
                yield from ffn(f"{p}mlps.{s}.", L.mlps[s])
            yield p + "mlp.router.classifier.weight", L.moe.classifier, None
            yield p + "mlp.router.e_score_correction_bias", L.moe.bias, "buffer"
            for e, ex in enumerate(L.moe.experts):
                yield from ffn(f"{p}mlp.experts.{e}.", ex)
        if self.mtp is not None:
            m, p = self.mtp, "model.mtp.layers.0."
            if m.embed is not None:
                yield "model.mtp.embed_tokens.weight", m.embed, None
            for n, t in (("enorm.m", m.enorm), ("hnorm.m", m.hnorm), ("eh_proj", m.eh_proj),
                         ("input_layernorm", m.input_norm), ("post_attention_layernorm", m.post_norm)):
                yield p + n + ".weight", t, None
            yield from mla(p + "self_attn.", m.attn)
            yield from ffn(p + "transformer_layer.mlp.", m.mlp)
            yield "model.mtp.norm.weight", m.norm, None

    @staticmethod
    def _part(t, kind):
        if kind == "gate":
            return t[: t.shape[0] // 2]
        if kind == "up":
            return t[t.shape[0] // 2:]
        return t

    @staticmethod
    def load(folder):
        c = Config.load(folder)
        tensors = load_tensors(folder)
        model = LongCatPeer(c, mtp="model.mtp.layers.0.eh_proj.weight" in tensors,
                            mtp_own_embedding="model.mtp.embed_tokens.weight" in tensors)
        used = set()
        with torch.no_grad():
            for name, t, kind in model.named_tensors():
                if name not in tensors:
                    if kind == "buffer":
                        continue
                    raise PeerError(f"{folder}: tensor '{name}' is missing from the checkpoint")
                a = tensors[name]
                dst = LongCatPeer._part(t, kind if kind in ("gate", "up") else None)
                if tuple(a.shape) != tuple(dst.shape):
                    raise PeerError(f"{folder}: tensor '{name}' has shape {list(a.shape)}, the config implies {list(dst.shape)}")
                dst.copy_(torch.from_numpy(np.array(a, dtype=np.float32)))
                used.add(name)
        extra = [n for n in tensors if n not in used and not n.endswith((".weight_scale_inv", ".weight_scale"))]
        if extra:
            raise PeerError(f"{folder}: {len(extra)} checkpoint tensors are not part of the model, e.g. '{extra[0]}'")
        return model

    def gradients(self):
        """Official name -> gradient (float32 numpy), expert/dense gate and up split back apart."""
        out = {}
        for name, t, kind in self.named_tensors():
            if kind == "buffer":
                continue
            g = t.grad if t.grad is not None else torch.zeros_like(t)
            out[name] = self._part(g, kind).detach().numpy()
        return out

    def parameter_count(self):
        return sum(p.numel() for p in self.parameters())


# ---------------------------------------------------------------------------------------------------------------
# Losses, generation

def check_ids(c, ids):
    """Token ids must lie in the vocabulary (an out-of-range id is named, not an IndexError deep in torch)."""
    bad = [i for i in ids if not 0 <= int(i) < c.vocab_size]
    if bad:
        raise PeerError(f"token id {bad[0]} is outside the vocabulary (0..{c.vocab_size - 1})")
    return ids


def next_token_loss(logits, ids):
    v = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, v), ids[:, 1:].reshape(-1))


@torch.no_grad()
def generate(model, prompt, max_tokens, mtp=False):
    """Greedy decoding of one sequence with the latent KV cache (absorbed decode); with mtp, the MTP head drafts one
    token per step and the main model verifies it (output identical to plain greedy). Returns (tokens, times, stats)."""
    c = model.c
    check_ids(c, prompt)
    if not prompt or max_tokens < 1:
        raise PeerError("generate needs a non-empty prompt and max_tokens >= 1")
    cap = len(prompt) + max_tokens + 2
    caches = model.new_caches(1, cap)
    ids = torch.tensor([prompt], dtype=torch.long)
    t0 = time.perf_counter()
    logits, hf, _ = model(ids, all_logits=False, caches=caches)
    tok = int(logits[0, -1].argmax())
    out = [tok]
    prefill_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    drafted = accepted = 0
    if not mtp or model.mtp is None:
        while len(out) < max_tokens:
            logits, _ = model.decode_step(torch.tensor([[tok]]), caches)
            tok = int(logits[0, -1].argmax())
            out.append(tok)
    else:
        mcache = LatentCache(c, 1, cap, model.embed.dtype)
        # The head pairs h_t with token_{t+1}: feed all prompt positions to fill its cache, draft after the last.
        nxt = torch.cat((ids[:, 1:], torch.tensor([[tok]])), 1)
        d = model.mtp(hf, nxt, model.embed, model.head_weight(), model.rope, mcache)
        draft = int(d[0, -1].argmax())
        while len(out) < max_tokens:
            logits, hf2 = model.decode_step(torch.tensor([[tok, draft]]), caches)   # verify: 2 rows, one step
            drafted += 1
            t1st = int(logits[0, 0].argmax())
            if t1st == draft and len(out) + 1 < max_tokens:
                accepted += 1
                t2nd = int(logits[0, 1].argmax())
                out += [draft, t2nd]
                d = model.mtp(hf2, torch.tensor([[draft, t2nd]]), model.embed, model.head_weight(), model.rope, mcache)
                tok = t2nd
            else:
                # rejected: drop the draft's cache row, keep the verified token
                for lc in caches:
                    for ch in lc:
                        ch.length -= 1
                out.append(t1st)
                d = model.mtp(hf2[:, :1], torch.tensor([[t1st]]), model.embed, model.head_weight(), model.rope, mcache)
                tok = t1st
            draft = int(d[0, -1].argmax())
        out = out[:max_tokens]
    decode_s = time.perf_counter() - t1
    return out, prefill_s, decode_s, (accepted / drafted if drafted else None)


# ---------------------------------------------------------------------------------------------------------------
# Server

def _serve(threads):
    torch.set_num_threads(threads)
    info = {"type": "info", "torch": torch.__version__, "numpy": np.__version__, "threads": torch.get_num_threads(),
            "env": {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "OPENBLAS_CORETYPE", "MALLOC_MMAP_THRESHOLD_",
                                                    "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_") if k in os.environ}}
    print(json.dumps(info), flush=True)
    model = None
    train = None
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            op = req.get("op")
            if op == "quit":
                break
            if op == "load":
                model = None
                train = None
                model = LongCatPeer.load(req["model"])
                dtype = req.get("dtype", "float32")
                if dtype not in ("float32", "bfloat16"):
                    raise PeerError(f"dtype {dtype!r}: the peer computes in float32 or bfloat16")
                if dtype == "bfloat16":
                    model.to_compute_dtype(torch.bfloat16)
                out = {"ok": True, "params": model.parameter_count(), "mtp": model.mtp is not None, "dtype": dtype}
            elif model is None:
                out = {"error": "no model loaded"}
            elif op == "forward":
                ids = torch.tensor([check_ids(model.c, req["ids"])], dtype=torch.long)
                t0 = time.perf_counter()
                with torch.no_grad():
                    logits, _, _ = model(ids, all_logits=bool(req.get("all_logits", False)))
                out = {"seconds": time.perf_counter() - t0, "argmax": int(logits[0, -1].argmax())}
            elif op == "generate":
                toks, ps, ds, acc = generate(model, req["prompt"], int(req["max_tokens"]), bool(req.get("mtp", False)))
                out = {"prefill_seconds": ps, "decode_seconds": ds, "tokens": toks, "acceptance": acc}
            elif op == "train_setup":
                b, s = int(req["batch"]), int(req["seq"])
                if b < 1 or s < 2 or len(req["ids"]) != b * s:
                    raise PeerError(f"train_setup: {len(req['ids'])} ids for batch {b} x seq {s}")
                ids = torch.tensor(check_ids(model.c, req["ids"]), dtype=torch.long).view(b, s)
                opt = torch.optim.AdamW([p for p in model.parameters()], lr=float(req.get("lr", 1e-4)))
                train = (ids, opt)
                out = {"ok": True}
            elif op == "train_step":
                ids, opt = train
                t0 = time.perf_counter()
                opt.zero_grad(set_to_none=False)
                logits, _, _ = model(ids)
                loss = next_token_loss(logits, ids)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                out = {"seconds": time.perf_counter() - t0, "loss": float(loss)}
            else:
                out = {"error": f"unknown op {op!r}"}
        except PeerError as e:
            out = {"error": str(e)}
        except Exception as e:  # report, keep serving
            out = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(out), flush=True)


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--serve", action="store_true", help="JSON-lines server for the C# benches")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", help="one-shot: print the greedy continuation of --prompt")
    ap.add_argument("--prompt", default="1")
    ap.add_argument("--max-tokens", type=int, default=8)
    a = ap.parse_args()
    if a.serve:
        _serve(a.threads)
        return
    if not a.model:
        ap.error("--serve or --model is required")
    torch.set_num_threads(a.threads)
    try:
        model = LongCatPeer.load(a.model)
        prompt = [int(t) for t in a.prompt.split(",")]
        toks, ps, ds, _ = generate(model, prompt, a.max_tokens)
    except (PeerError, ValueError) as e:
        print(f"longcat_peer: error: {e}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps({"tokens": toks, "prefill_seconds": ps, "decode_seconds": ds}))


if __name__ == "__main__":
    main()
