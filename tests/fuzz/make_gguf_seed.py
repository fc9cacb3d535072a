"""Writes the GGUF seed of the gguf fuzz harness: a micro Llama (dim 32, 1 layer, 2 query heads and 1
key/value head, hidden 32, tied) with the byte-level BPE tokenizer of tests/fixtures, its tensors in every
type gkd dequantises (Q8_0, Q4_0, Q4_1, F16, BF16, F32), so that the fuzzer starts from a file that loads
all the way (reader, configuration, tokenizer, weights) at about a third of tiny-llama-q.gguf's size.

Usage (from the repository root): pip install gguf numpy tokenizers
                                  python3 tests/fuzz/make_gguf_seed.py
"""
import importlib.util
import os

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT
from gguf import quants

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
spec = importlib.util.spec_from_file_location(
    "fixture", os.path.join(ROOT, "tests", "fixtures", "make_gguf_model_fixture.py"))
fx = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fx)

TYPES = {"token_embd": QT.Q8_0, "attn_q": QT.Q4_1, "attn_k": QT.Q4_0, "attn_v": QT.Q4_0,
         "attn_output": QT.F16, "ffn_gate": QT.Q4_1, "ffn_up": QT.Q8_0, "ffn_down": QT.BF16}


def main():
    tok = fx.train_tokenizer()
    vocab = fx.gguf_vocab(tok)
    cfg = dict(vocab_size=len(vocab[0]), dim=32, n_layers=1, n_heads=2, n_kv_heads=1, hidden_dim=32,
               max_seq_len=32, rope_theta=10000.0, norm_eps=1e-5)
    w = fx.random_weights(np.random.default_rng(13), cfg)
    path = os.path.join(ROOT, "tests", "fuzz", "corpus", "gguf", "micro-llama-q.gguf")
    wr = gguf.GGUFWriter(path, "llama")
    fx.add_config(wr, cfg)
    fx.add_tokenizer(wr, *vocab)
    for hf, arr in w.items():
        if hf == "lm_head.weight":
            continue
        name = fx.gguf_name(hf)
        qtype = TYPES.get(name.split(".")[-2], QT.F32)
        data = fx.stored(hf, arr, cfg)
        if qtype == QT.F32:
            wr.add_tensor(name, data)
        else:
            wr.add_tensor(name, quants.quantize(data, qtype), raw_dtype=qtype)
    fx.finish(wr)
    print(path, os.path.getsize(path))


if __name__ == "__main__":
    main()
