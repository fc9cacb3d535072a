#!/usr/bin/env python3
"""Reference side of tests/test_tokenizer.c: loads a tokenizer.json with Hugging Face `tokenizers` and, for
each input text, writes the ids it encodes to and the byte lengths of the pre-tokenizer's pieces, so that the
C tokenizer can be compared with the library the file format belongs to.

Usage: tokenizer_check.py TOKENIZER_JSON TEXTS_JSONL OUT_JSONL
       tokenizer_check.py --train SAMPLE_JSONL OUT_TOKENIZER_JSON
TEXTS_JSONL holds one JSON string per line; OUT_JSONL gets one {"ids": [...], "pieces": [...]} per line.
--train has the library train and save a SmolLM2-style tokenizer (Digits + ByteLevel) on the documents and
summaries of a debdesc JSONL file, so that the C side can be tried on a file it did not write.
Exits 77 when the `tokenizers` package is missing, so that the caller can skip the comparison."""
import json
import sys

try:
    from tokenizers import Tokenizer
except ImportError:
    print("tokenizer_check.py: the Python package `tokenizers` is not installed", file=sys.stderr)
    sys.exit(77)


def train(sample_path, out_path):
    from tokenizers import decoders, models, pre_tokenizers, processors, trainers

    texts = []
    with open(sample_path, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            texts += [rec["document"], rec["summary"]]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=3000,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tok.save(out_path)


def main():
    if sys.argv[1] == "--train":
        train(sys.argv[2], sys.argv[3])
        return
    tok_path, texts_path, out_path = sys.argv[1:4]
    tok = Tokenizer.from_file(tok_path)
    with open(texts_path, encoding="utf-8") as f:
        texts = [json.loads(line) for line in f]
    with open(out_path, "w", encoding="utf-8") as out:
        for text in texts:
            # No template (BOS/EOS) is added: gkd's encode never adds one; added tokens in the text are
            # still matched, as gkd_tokenizer_encode_special does.
            ids = tok.encode(text, add_special_tokens=False).ids
            # Every pre-tokenizer gkd reads ends with ByteLevel, which writes one character per byte.
            pieces = [len(piece) for piece, _ in tok.pre_tokenizer.pre_tokenize_str(text)]
            out.write(json.dumps({"ids": ids, "pieces": pieces}) + "\n")


if __name__ == "__main__":
    main()
