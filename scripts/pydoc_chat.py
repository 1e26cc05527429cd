#!/usr/bin/env python3
"""Builds chat and tool-use conversations from the Python docs corpus (data/python-docs/corpus.jsonl.gz) for
supervised fine-tuning (`longcat data prepare --format chat`) and evaluation (`longcat eval chat:...`).

Every documented function, class, method, exception and attribute (reST directives `.. function:: json.dumps(...)`
etc., the module from `.. module::` / `.. currentmodule::`) becomes an entry: its dotted name and its documentation
text (the directive's indented body, reST markup simplified). Per entry:
  * question-answer conversations in several phrasings, answered with the first sentence of the entry;
  * tool-use conversations with one tool, `lookup_docs(name)`: the user asks, the assistant calls
    lookup_docs with the dotted name, the tool returns the entry's text, the assistant answers with its first sentence.
A seeded hash holds out ~10% of the names (never in the training file) and two question phrasings (never used in
training). Outputs (deterministic) in OUT:
  sft.jsonl                  training conversations (training names, training phrasings)
  eval-heldout.jsonl         held-out names, training phrasings: expected tool calls and reference answers
  eval-heldout-newphrasing.jsonl   held-out names, unseen phrasings
  heldout-names.txt          the held-out names
Usage: python3 scripts/pydoc_chat.py [--corpus data/python-docs/corpus.jsonl.gz] [--out out/pydoc-chat]
       python3 scripts/pydoc_chat.py --index FILE   # only the entries: a JSON list of [name, text], nothing else

The entry rules (`entries`, `clean`, first occurrence of a name wins, text cut to 1,500 code points: `docs_index`) are
ported to C# in examples/DocsAgent/PydocIndex.cs, whose `lookup_docs` tool must return exactly the tool results this
script trains on. Change both together: DocsAgentTests.PydocIndexMatchesScriptsPydocChat compares the two on the
whole corpus (through --index).
"""
import argparse, gzip, hashlib, json, os, re

TOOL = {"type": "function", "function": {
    "name": "lookup_docs",
    "description": "Returns the documentation of a Python module, function, class or method.",
    "parameters": {"type": "object", "properties": {"name": {"type": "string", "description": "dotted Python name, e.g. json.dumps"}},
                   "required": ["name"]}}}
TRAIN_PHRASINGS = ["What does {n} do?", "Explain {n}.", "What is {n} for?", "Tell me about {n}.", "How does {n} work?",
                   "Can you describe {n}?", "I need help with {n}.", "What is the purpose of {n}?"]
NEW_PHRASINGS = ["Give me a short summary of {n}.", "In one sentence, what is {n}?"]
DIRECTIVE = re.compile(r"^\.\. (function|class|method|exception|attribute|data|decorator|classmethod|staticmethod)::\s+([\w.]+)")
MODULE = re.compile(r"^\.\. (?:module|currentmodule)::\s+([\w.]+)")
CLASS_CTX = re.compile(r"^\.\. (?:class|exception)::\s+([\w.]+)")


def clean(text):
    text = re.sub(r":\w+:`~?([^`<]*?)(?:\s*<[^>]*>)?`", r"\1", text)  # :func:`json.dumps` -> json.dumps
    text = re.sub(r"``([^`]*)``", r"\1", text)
    text = re.sub(r"\*\*?([^*]+)\*\*?", r"\1", text)
    return re.sub(r"\s+", " ", text).strip()


def entries(corpus):
    with gzip.open(corpus, "rt", encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            lines = doc["text"].split("\n")
            module, cls = None, None
            for i, l in enumerate(lines):
                m = MODULE.match(l)
                if m:
                    module, cls = m.group(1), None
                    continue
                d = DIRECTIVE.match(l)
                if not d or module is None:
                    continue
                kind, name = d.groups()
                if kind in ("class", "exception"):
                    cls = name.split(".")[-1]
                if kind in ("method", "attribute", "classmethod", "staticmethod") and "." not in name and cls:
                    name = cls + "." + name
                full = name if name.startswith(module + ".") else module + "." + name
                body, j = [], i + 1
                while j < len(lines) and (lines[j].strip() == "" or lines[j].startswith("   ")):
                    s = lines[j].strip()
                    if s.startswith(":") or s.startswith(".. ") and not body:
                        j += 1
                        continue
                    if s.startswith(".. "):
                        break
                    body.append(s)
                    j += 1
                text = clean(" ".join(body))
                if len(text) >= 20:
                    yield full, text


def first_sentence(text):
    m = re.match(r"(.+?[.!?])(\s|$)", text)
    return (m.group(1) if m else text)[:400]


def held_out(name, seed="pydoc-chat-1"):
    return hashlib.sha256((seed + name).encode()).digest()[0] < 26  # ~10%


def docs_index(corpus):
    """(name, text) per documented name, in corpus order: the first entry of a name wins, its text cut to 1500 code points.
    The text is what the lookup_docs tool returns for the name."""
    seen, items = set(), []
    for name, text in entries(corpus):
        if name not in seen:
            seen.add(name)
            items.append((name, text[:1500]))
    return items


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="data/python-docs/corpus.jsonl.gz")
    ap.add_argument("--out", default="out/pydoc-chat")
    ap.add_argument("--index", help="write only the entries, a JSON list of [name, text], to this file")
    a = ap.parse_args()
    items = docs_index(a.corpus)
    if a.index:
        with open(a.index, "w", encoding="utf-8") as f:
            json.dump(items, f, ensure_ascii=False)
        print(f"{len(items)} documented names in {a.index}")
        return
    os.makedirs(a.out, exist_ok=True)
    sft, ev, ev_new, held = [], [], [], []
    for k, (name, text) in enumerate(items):
        answer = first_sentence(text)
        h = held_out(name)
        if h:
            held.append(name)
        for p, phr in enumerate(TRAIN_PHRASINGS + NEW_PHRASINGS):
            q = phr.format(n=name)
            new = p >= len(TRAIN_PHRASINGS)
            call = {"id": "call_0", "type": "function", "function": {"name": "lookup_docs", "arguments": json.dumps({"name": name})}}
            ask = [{"role": "user", "content": q}]
            with_result = ask + [{"role": "assistant", "content": None, "tool_calls": [call]},
                                 {"role": "tool", "tool_call_id": "call_0", "content": text}]
            if not h and not new:
                if (k + p) % 2 == 0:  # plain question, answered from memory
                    sft.append({"messages": ask + [{"role": "assistant", "content": answer}]})
                else:  # the tool round trip
                    sft.append({"messages": with_result + [{"role": "assistant", "content": answer}], "tools": [TOOL]})
            elif h and p in (0, len(TRAIN_PHRASINGS)):
                dst = ev_new if new else ev
                dst.append({"messages": ask, "tools": [TOOL], "expected_tool_call": {"name": "lookup_docs", "arguments": {"name": name}}})
                dst.append({"messages": with_result, "tools": [TOOL], "reference": answer})
    for fname, rows in (("sft.jsonl", sft), ("eval-heldout.jsonl", ev), ("eval-heldout-newphrasing.jsonl", ev_new)):
        with open(os.path.join(a.out, fname), "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    with open(os.path.join(a.out, "heldout-names.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(held) + "\n")
    print(f"{len(items)} documented names ({len(held)} held out): {len(sft)} training conversations, "
          f"{len(ev)} + {len(ev_new)} eval items in {a.out}")


if __name__ == "__main__":
    main()
