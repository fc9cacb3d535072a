#!/usr/bin/env python3
"""The PyTorch side of gkd's speed comparison (issue 3): the same Llama-family model gkd trains (RMSNorm,
rotary positions with Hugging Face's rotate_half pairing, grouped-query attention, SwiGLU MLP, untied
output projection), in PyTorch eager fp32, timed on
  - a training step: forward, cross-entropy over every position, backward, global-norm clipping to 1.0 and
    AdamW, at L=12, C=768, 12 heads, V=32768, B=16, T=1024 by default;
  - the machine's fp32 matrix-product rate: the best of a few square torch.mm (cuBLAS sgemm) products, the
    peak that achieved TFLOP/s are reported against;
  - generation as Hugging Face transformers does it: B=64 prompts, 128 new tokens, KV cache, sampling at
    temperature 1. With transformers installed its LlamaForCausalLM.generate is timed; otherwise (or with
    --own-generate) a plain KV-cache loop over the model below.
Prints one JSON object. TF32 stays off unless --tf32 (gkd's CUDA backend is exact fp32 by default too).
Run on the GPU machine:  python3 tools/bench_torch.py [--preset issue3|gkd-bench] [--json-out torch.json]
"""
import argparse
import sys
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Attention(nn.Module):
    def __init__(self, dim, n_heads, n_kv_heads):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, dim // n_heads
        self.q_proj = nn.Linear(dim, n_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(dim, n_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(dim, n_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(n_heads * self.head_dim, dim, bias=False)

    def forward(self, x, cos, sin, cache=None):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if cache is not None:  # (k_all, v_all, length): write the new positions, attend over the prefix
            k_all, v_all, n = cache
            k_all[:, :, n:n + T] = k
            v_all[:, :, n:n + T] = v
            k, v = k_all[:, :, :n + T], v_all[:, :, :n + T]
        group = self.n_heads // self.n_kv_heads
        if group > 1:
            k = k.repeat_interleave(group, dim=1)
            v = v.repeat_interleave(group, dim=1)
        # causal for a full sequence; a single new token sees the whole prefix
        y = F.scaled_dot_product_attention(q, k, v, is_causal=T > 1)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))


class MLP(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden, bias=False)
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.input_layernorm = RMSNorm(a.dim, a.eps)
        self.self_attn = Attention(a.dim, a.heads, a.kv_heads)
        self.post_attention_layernorm = RMSNorm(a.dim, a.eps)
        self.mlp = MLP(a.dim, a.hidden)

    def forward(self, x, cos, sin, cache=None):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class Llama(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.embed_tokens = nn.Embedding(a.vocab, a.dim)
        self.layers = nn.ModuleList(Block(a) for _ in range(a.layers))
        self.norm = RMSNorm(a.dim, a.eps)
        self.lm_head = nn.Linear(a.dim, a.vocab, bias=False)
        head_dim = a.dim // a.heads
        inv_freq = a.rope_theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
        ang = torch.outer(torch.arange(a.max_seq, dtype=torch.float64), inv_freq)
        ang = torch.cat((ang, ang), dim=-1)
        self.register_buffer("cos", ang.cos().float(), persistent=False)
        self.register_buffer("sin", ang.sin().float(), persistent=False)
        for name, p in self.named_parameters():  # gkd_model_init_weights' scheme
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * a.layers) if name.endswith(("o_proj.weight", "down_proj.weight")) else 0.02
                nn.init.normal_(p, std=std)

    def forward(self, tokens, pos0=0, caches=None):
        T = tokens.shape[1]
        cos, sin = self.cos[pos0:pos0 + T], self.sin[pos0:pos0 + T]
        x = self.embed_tokens(tokens)
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, None if caches is None else (*caches[i], pos0))
        return self.lm_head(self.norm(x))


def sync():
    torch.cuda.synchronize()


def bench_sgemm(a, dev):
    n = a.sgemm_n
    x = torch.randn(n, n, device=dev)
    y = torch.randn(n, n, device=dev)
    torch.mm(x, y)
    sync()
    best = float("inf")
    for _ in range(a.sgemm_repeats):
        t0 = time.perf_counter()
        for _ in range(5):
            torch.mm(x, y)
        sync()
        best = min(best, (time.perf_counter() - t0) / 5)
    del x, y
    torch.cuda.empty_cache()
    return {"sgemm_n": n, "sgemm_tflops": 2.0 * n ** 3 / best / 1e12}


def bench_train(a, dev):
    torch.manual_seed(0)
    model = Llama(a).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    tokens = torch.randint(0, a.vocab, (a.batch, a.seq + 1), device=dev)
    x, y = tokens[:, :-1], tokens[:, 1:]

    def step():
        opt.zero_grad(set_to_none=True)
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, a.vocab), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    for _ in range(a.warmup):
        step()
    sync()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    sync()
    dt = (time.perf_counter() - t0) / a.steps
    if a.profile:
        # device time per kernel over 3 more steps (stderr), to set beside GKD_CUDA_PROFILE=1's table
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                step()
            sync()
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=40, max_name_column_width=90),
              file=sys.stderr)
    n_params = sum(p.numel() for p in model.parameters())
    head_dim = a.dim // a.heads
    # gkd_model_flops' convention: 2 x weights x tokens (+ the T x T attention products), x3 with backward
    per_layer = a.dim * (a.heads + 2 * a.kv_heads) * head_dim + a.heads * head_dim * a.dim + 3 * a.dim * a.hidden
    fwd = 2.0 * a.batch * a.seq * (a.layers * per_layer + a.vocab * a.dim)
    fwd += a.layers * 4.0 * a.batch * a.heads * a.seq * a.seq * head_dim
    out = {
        "params": n_params,
        "train_step_s": dt,
        "train_tokens_per_s": a.batch * a.seq / dt,
        "train_tflops": 3 * fwd / dt / 1e12,
        "train_peak_bytes": torch.cuda.max_memory_allocated(),
        "final_loss": float(loss),
    }
    del model, opt
    torch.cuda.empty_cache()
    return out


@torch.no_grad()
def own_generate(model, a, prompts):
    B, P = prompts.shape
    L = P + a.new_tokens
    head_dim = a.dim // a.heads
    caches = [(torch.empty(B, a.kv_heads, L, head_dim, device=prompts.device),
               torch.empty(B, a.kv_heads, L, head_dim, device=prompts.device)) for _ in range(a.layers)]
    logits = model(prompts, 0, caches)[:, -1]
    out = []
    for t in range(a.new_tokens):
        tok = torch.multinomial(F.softmax(logits, dim=-1), 1)
        out.append(tok)
        if t + 1 < a.new_tokens:
            logits = model(tok, P + t, caches)[:, -1]
    return torch.cat(out, dim=1)


def bench_generate(a, dev):
    torch.manual_seed(1)
    prompts = torch.randint(0, a.vocab, (a.gen_batch, a.prompt_len), device=dev)
    use_hf = not a.own_generate
    if use_hf:
        try:
            from transformers import LlamaConfig, LlamaForCausalLM
        except ImportError:
            use_hf = False
    if use_hf:
        cfg = LlamaConfig(vocab_size=a.vocab, hidden_size=a.dim, intermediate_size=a.hidden,
                          num_hidden_layers=a.layers, num_attention_heads=a.heads, num_key_value_heads=a.kv_heads,
                          max_position_embeddings=a.max_seq, rms_norm_eps=a.eps, rope_theta=a.rope_theta,
                          tie_word_embeddings=False, bos_token_id=None, eos_token_id=None, pad_token_id=None)
        model = LlamaForCausalLM(cfg).to(dev).eval()

        def run():
            return model.generate(prompts, attention_mask=torch.ones_like(prompts), do_sample=True,
                                  temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=a.new_tokens,
                                  pad_token_id=0)
    else:
        model = Llama(a).to(dev).eval()

        def run():
            return own_generate(model, a, prompts)

    run()  # warm-up
    sync()
    t0 = time.perf_counter()
    for _ in range(a.gen_repeats):
        run()
    sync()
    dt = (time.perf_counter() - t0) / a.gen_repeats
    return {
        "generate_impl": "transformers.LlamaForCausalLM.generate" if use_hf else "own KV-cache loop",
        "generate_s": dt,
        "gen_tokens_per_s": a.gen_batch * a.new_tokens / dt,
    }


# Shapes that other numbers are compared with: issue 3's acceptance shape, and the model `gkd bench` times
# (cli/cmd_bench.c: L=6 C=384 H=6 KV=2 F=1024 V=8192, training B=4 T=256, generation B=32 x 64 new tokens
# after 16-token prompts). Explicit flags override a preset.
PRESETS = {
    "issue3": {},
    "gkd-bench": dict(layers=6, dim=384, heads=6, kv_heads=2, hidden=1024, vocab=8192, batch=4, seq=256,
                      max_seq=512, gen_batch=32, prompt_len=16, new_tokens=64),
}


def main():
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", choices=sorted(PRESETS), default="issue3")
    preset = pre.parse_known_args()[0].preset
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="issue3",
                   help="issue3 (default: L=12 C=768 V=32768 B=16 T=1024) or gkd-bench (the shapes of `gkd bench`)")
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--kv-heads", type=int, default=12)
    p.add_argument("--hidden", type=int, default=2048, help="SwiGLU hidden size (Llama's 8/3 C, rounded)")
    p.add_argument("--vocab", type=int, default=32768)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--max-seq", type=int, default=2048)
    p.add_argument("--eps", type=float, default=1e-5)
    p.add_argument("--rope-theta", type=float, default=10000.0)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--gen-batch", type=int, default=64)
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--gen-repeats", type=int, default=3)
    p.add_argument("--own-generate", action="store_true", help="time the plain KV-cache loop, not transformers")
    p.add_argument("--tf32", action="store_true", help="allow TF32 tensor cores in matmuls (default: exact fp32)")
    p.add_argument("--sgemm-n", type=int, default=8192, help="size of the square products timed for the peak")
    p.add_argument("--sgemm-repeats", type=int, default=5)
    p.add_argument("--skip-sgemm", action="store_true")
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--skip-generate", action="store_true")
    p.add_argument("--profile", action="store_true",
                   help="after timing, profile 3 training steps with torch.profiler (kernel table on stderr)")
    p.add_argument("--json-out", help="also write the JSON here")
    p.set_defaults(**PRESETS[preset])
    a = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_torch.py: no CUDA device visible to PyTorch")
    torch.backends.cuda.matmul.allow_tf32 = a.tf32
    torch.backends.cudnn.allow_tf32 = a.tf32
    dev = torch.device("cuda")
    result = {
        "framework": "pytorch-eager-fp32",
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(dev),
        "tf32": a.tf32,
        "preset": a.preset,
        "config": {k: getattr(a, k) for k in ("layers", "dim", "heads", "kv_heads", "hidden", "vocab", "batch",
                                               "seq", "gen_batch", "prompt_len", "new_tokens")},
    }
    if not a.skip_sgemm:
        result.update(bench_sgemm(a, dev))
    if not a.skip_train:
        result.update(bench_train(a, dev))
        if "sgemm_tflops" in result:
            result["train_fraction_of_sgemm"] = result["train_tflops"] / result["sgemm_tflops"]
    if not a.skip_generate:
        result.update(bench_generate(a, dev))
    text = json.dumps(result, indent=2)
    print(text)
    if a.json_out:
        with open(a.json_out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
