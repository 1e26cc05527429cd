#!/usr/bin/env python3
"""Copy drills: chat conversations that teach a small model to copy text from its prompt (an induction mechanism),
the stage between pre-training and the Python-docs fine-tune of models/longcat-flash-pydoc-chat
(docs/post-training.md, "Copying first").

Each conversation is `Repeat: w1 ... w8` from the user and `w1 ... w8` from the assistant, the words drawn at random
from the lower-case words (3-9 letters) of the Python docs corpus, so only copying can predict the answer; the loss
mask trains only the answer. Deterministic (seed 7). Usage:
  python3 scripts/copy_drills.py [--corpus data/python-docs/corpus.jsonl.gz] [--out out/copy-drills/copy.jsonl] [--n 30000]
"""
import argparse, gzip, json, os, random, re

ap = argparse.ArgumentParser()
ap.add_argument("--corpus", default="data/python-docs/corpus.jsonl.gz")
ap.add_argument("--out", default="out/copy-drills/copy.jsonl")
ap.add_argument("--n", type=int, default=30000)
ap.add_argument("--words", type=int, default=8)
a = ap.parse_args()

rng = random.Random(7)
words = set()
with gzip.open(a.corpus, "rt", encoding="utf-8") as f:
    for line in f:
        words.update(re.findall(r"[a-z]{3,9}", json.loads(line)["text"]))
words = sorted(words)
os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
with open(a.out, "w", encoding="utf-8") as f:
    for _ in range(a.n):
        ws = " ".join(rng.choice(words) for _ in range(a.words))
        f.write(json.dumps({"messages": [{"role": "user", "content": "Repeat: " + ws}, {"role": "assistant", "content": ws}]}) + "\n")
print(f"{a.n} copy drills over {len(words)} words -> {a.out}")
