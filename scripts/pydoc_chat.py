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
  sft-calls.jsonl            of those, the tool-call conversations alone (a question, then the call)
  sft-roundtrips.jsonl       of those, the tool round trips alone (question, call, result, answer)
  sft-mix.jsonl              stages 5-6's mixture, asked in many more ways: per training name a call, a round
                             trip and a plain answer; calls on made-up names; round trips whose result is another
                             entry's text (the answer can only come from the result)
  sft-copy.jsonl             the copying stage's mixture: calls on names that look like real ones but are not (a
                             real name with a piece changed, spliced with another, under another parent), round
                             trips and plain answers on training names, round trips with another entry's text
  sft-copy2.jsonl            the dense copying stage: mostly questions about 2-5 names (mostly look-alikes) answered
                             with one call per name; single calls, round trips and plain answers in smaller shares
  sft-copy3.jsonl            the same kinds with fresh names, half the questions after 1-4 random words
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
                   "Can you describe {n}?", "I need help with {n}.", "What is the purpose of {n}?", "what does {n} do",
                   "Describe {n}.", "What is {n}?", "Please explain {n}.", "Look up {n} for me.", "{n}: what does it do?",
                   "Could you tell me what {n} does?", "I'm reading code that uses {n}. What is it?",
                   "Help me understand {n}.", "What's {n}?", "Documentation for {n}, please.",
                   "Do you know what {n} is used for?", "Quick question about {n}: what does it do?",
                   "Show me the docs of {n}.", "explain {n}", "What should I know about {n}?"]
NEW_PHRASINGS = ["Give me a short summary of {n}.", "In one sentence, what is {n}?"]
# The last stage's mixture (sft-mix.jsonl) asks in many more ways: the training phrasings and these, with an optional
# opening and closing, and the name in other places and quotes. Seen in a few fixed sentences, the model learns where
# the name sits in them; in varied ones it has to find the name by its form. None contains the held-out phrasings'
# words "summary" or "sentence".
MIX_CORES = ["What can you tell me about {n}?", "How do I use {n}?", "{n}?", "Info on {n}.", "What does the {n} API do?",
             "Explain what {n} does.", "Where is {n} used?", "What is {n} in Python?", "I saw {n} in a script. What does it do?",
             "Can you look up {n}?", "Is {n} something I should use?", "Tell me what {n} is.", "What's the deal with {n}?",
             "Need info: {n}", "Find the documentation of {n}.", "How would I use {n}?", "Hey, what's {n}?",
             "What does `{n}` do?", "What does \"{n}\" do?", "Explain the {n} function.", "Looking for {n}: what is it?",
             "{n} - what is that?", "what is {n} used for", "My code calls {n}. What happens there?"]
# Questions about several names at once (sft-copy2.jsonl); {names} is "A, B and C", "A, B, C" or with backticks.
MULTI_CORES = ["Look up {names}.", "What do {names} do?", "Tell me about {names}.", "I need the docs of {names}.",
               "Explain {names}.", "Can you look up {names} for me?", "What are {names}?", "Compare {names}.",
               "How do {names} work?", "Documentation for {names}, please.", "I saw {names} in a script. What are they?",
               "Help me understand {names}.", "Find the documentation of {names}."]
MIX_OPENINGS = ["Hi! ", "Hello, ", "Hey. ", "Quick question: ", "Sorry to bother you. ", "One more thing. ",
                "I'm new to Python. ", "Thanks for the help earlier. ", "Python question: ", "Hmm. ", "OK, next: "]
MIX_CLOSINGS = [" Thanks!", " Thank you.", " Please be brief.", " I'm using Python 3.", " It's for a project.",
                " Keep it short.", " :)"]
RESULT_CHARS = 400  # lookup_docs returns at most this many characters of an entry (cut at a word, then " ...")
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


def tool_result(text):
    """What lookup_docs returns for an entry: its text, cut to RESULT_CHARS at a word boundary."""
    if len(text) <= RESULT_CHARS:
        return text
    return text[:RESULT_CHARS].rsplit(" ", 1)[0] + " ..."


def not_found(name):
    return f"No documentation found for {name}."


class Rng:
    """A seeded generator from SHA-256 (stable across Python versions, unlike random's string seeding)."""
    def __init__(self, seed):
        self.seed, self.n = seed, 0

    def below(self, k):
        self.n += 1
        return int.from_bytes(hashlib.sha256(f"{self.seed}/{self.n}".encode()).digest()[:8], "little") % k


def synthetic_names(real, count, rng):
    """Dotted names that are not documented: a real module path joined to another entry's last part, or made-up parts.
    They force the model to copy the name from the question (it cannot have memorised them)."""
    parts = sorted({n.rsplit(".", 1)[-1] for n in real})
    mods = sorted({n.rsplit(".", 1)[0] for n in real if "." in n})
    syll = ["ba", "cor", "del", "fen", "gru", "hal", "ix", "jo", "kel", "lum", "mor", "nep", "ost", "pra", "quo",
            "ris", "sul", "tav", "ul", "ven", "wex", "yor", "zan"]
    out, seen = [], set(real)
    while len(out) < count:
        if rng.below(3):
            name = mods[rng.below(len(mods))] + "." + parts[rng.below(len(parts))]
        else:
            word = lambda: "".join(syll[rng.below(len(syll))] for _ in range(1 + rng.below(3)))
            name = ".".join([word()] + [("_" if rng.below(4) == 0 else "").join([word(), word()][: 1 + rng.below(2)])
                                        for _ in range(1 + rng.below(2))])
        if name not in seen:
            seen.add(name)
            out.append(name)
    return out


PIECE = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]+(?![a-z])|[A-Z][a-z]*|[a-z]+|[0-9]+")


def near_names(real, count, rng, taken):
    """Dotted names that are not documented but look like real ones: a real name with one piece of its last part
    replaced, added or dropped ("has_extended_color_support" -> "has_extended_font_support"), its last part spliced
    with another's ("getnframes" -> "getnchannels"... "getnaudio"), its last part under another real parent, or a
    component of its parent path changed. A held-out name's most common miss is to copy its start and then drift to a
    familiar training name; these train the model to keep copying where a familiar name would go on. Every piece
    comes from `real` (the training names: a variant of a held-out name would leak it); no name in `taken` is made."""
    real_sorted = sorted(real)
    parents = sorted({n.rsplit(".", 1)[0] for n in real if "." in n})
    lasts = sorted({n.rsplit(".", 1)[-1] for n in real})
    lower = sorted({p for last in lasts for p in PIECE.findall(last) if p.islower()})
    upper = sorted({p for last in lasts for p in PIECE.findall(last) if p[0].isupper()})
    comps = sorted({c for p in parents for c in p.split(".")})
    pick = lambda xs: xs[rng.below(len(xs))]

    def mutate(last):
        kind = rng.below(4)
        if kind == 0:  # splice: this part's start, another part's end
            other = pick(lasts)
            if len(last) < 2 or len(other) < 2:
                return last + "_" + other
            return last[: 1 + rng.below(len(last) - 1)] + other[1 + rng.below(len(other) - 1):]
        pieces = PIECE.findall(last)
        seps = re.split(r"[A-Za-z0-9]+", last)  # separators around the pieces ("_" or ""), len(pieces) + 1 of them
        if len(pieces) == 0 or len(seps) != len(pieces) + 1:
            return last + pick(["_", ""]) + pick(lower)
        i = rng.below(len(pieces))
        pool = upper if pieces[i][0].isupper() else lower
        snake = "_" in last
        if kind == 1 or len(pieces) == 1:  # replace a piece
            pieces[i] = pick(pool)
        elif kind == 2:  # add a piece after piece i
            pieces.insert(i + 1, pick(pool))
            seps.insert(i + 1, "_" if snake else "")
        else:  # drop piece i
            del pieces[i]
            del seps[i + 1 if i + 1 < len(seps) - 1 else i]
        return "".join(s + p for s, p in zip(seps, pieces)) + seps[-1]

    out, seen = [], set(real) | set(taken)
    while len(out) < count:
        name = pick(real_sorted)
        parent, last = name.rsplit(".", 1) if "." in name else ("", name)
        kind = rng.below(10)
        if kind < 6 or not parent:
            name = (parent + "." if parent else "") + mutate(last)
        elif kind < 8:  # the same last part under another real parent
            name = pick(parents) + "." + last
        else:  # one component of the parent path replaced or spliced
            cs = parent.split(".")
            j = rng.below(len(cs))
            other = pick(comps)
            cs[j] = other if rng.below(2) or len(cs[j]) < 2 or len(other) < 2 else \
                cs[j][: 1 + rng.below(len(cs[j]) - 1)] + other[1 + rng.below(len(other) - 1):]
            name = ".".join(cs) + "." + last
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", name) and name not in seen:
            seen.add(name)
            out.append(name)
    return out


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
    ap.add_argument("--synthetic", type=int, default=8000, help="tool calls on made-up names (copying practice)")
    ap.add_argument("--mix-shuffled", type=int, default=8000,
                    help="sft-mix.jsonl: round trips on made-up names whose result is a random training entry's text")
    ap.add_argument("--mix-synthetic", type=int, default=6000, help="sft-mix.jsonl: more tool calls on made-up names")
    ap.add_argument("--copy-near", type=int, default=15000,
                    help="sft-copy.jsonl: tool calls on names that look like real ones (near_names)")
    ap.add_argument("--copy-shuffled", type=int, default=5000,
                    help="sft-copy.jsonl: round trips on such names whose result is a random training entry's text")
    ap.add_argument("--dense-multi", type=int, default=7000,
                    help="sft-copy2.jsonl: questions about 2-5 names answered with one call per name")
    ap.add_argument("--dense3-multi", type=int, default=3500,
                    help="sft-copy3.jsonl: as --dense-multi, half the questions after random words")
    ap.add_argument("--index", help="write only the entries, a JSON list of [name, text], to this file")
    a = ap.parse_args()
    items = docs_index(a.corpus)
    if a.index:
        with open(a.index, "w", encoding="utf-8") as f:
            json.dump(items, f, ensure_ascii=False)
        print(f"{len(items)} documented names in {a.index}")
        return
    os.makedirs(a.out, exist_ok=True)
    seen = {name for name, _ in items}
    rng = Rng("pydoc-chat-2")
    tools = [TOOL]

    def call(name):
        return {"id": "call_0", "type": "function", "function": {"name": "lookup_docs", "arguments": json.dumps({"name": name})}}

    def ask(phrasing, name):
        return [{"role": "user", "content": phrasing.format(n=name)}]

    def round_trip(phrasing, name, result):
        return ask(phrasing, name) + [{"role": "assistant", "content": None, "tool_calls": [call(name)]},
                                      {"role": "tool", "tool_call_id": "call_0", "content": result}]

    def tool_call(phrasing, name):
        return {"messages": ask(phrasing, name) + [{"role": "assistant", "content": None, "tool_calls": [call(name)]}],
                "tools": tools}

    def answered(phrasing, name, result, answer):
        return {"messages": round_trip(phrasing, name, result) + [{"role": "assistant", "content": answer}], "tools": tools}

    def plain(phrasing, name, answer):
        return {"messages": ask(phrasing, name) + [{"role": "assistant", "content": answer}]}

    def made_up(i, phrasing, name):
        """The i-th conversation on a made-up name: a call, or (every 6th) a round trip where the tool finds nothing."""
        if i % 6 == 5:
            return answered(phrasing, name, not_found(name), f"I found no documentation for {name}.")
        return tool_call(phrasing, name)

    sft, ev, ev_new, held = [], [], [], []
    pick = lambda: TRAIN_PHRASINGS[rng.below(len(TRAIN_PHRASINGS))]
    for k, (name, text) in enumerate(items):
        answer = first_sentence(text)
        result = tool_result(text)
        if held_out(name):
            held.append(name)
            for dst, phr in ((ev, TRAIN_PHRASINGS[k % len(TRAIN_PHRASINGS)]), (ev_new, NEW_PHRASINGS[k % len(NEW_PHRASINGS)])):
                dst.append({"messages": ask(phr, name), "tools": tools,
                            "expected_tool_call": {"name": "lookup_docs", "arguments": {"name": name}}})
                dst.append({"messages": round_trip(phr, name, result), "tools": tools, "reference": answer})
            continue
        # per training name: two tool calls, two tool round trips answered from the result, one plain answer
        sft += [tool_call(pick(), name) for _ in range(2)]
        sft += [answered(pick(), name, result, answer) for _ in range(2)]
        sft.append(plain(pick(), name, answer))
    held_set = set(held)
    synth_used = [n for n in synthetic_names(seen, a.synthetic, rng) if n not in held_set]
    sft += [made_up(i, pick(), name) for i, name in enumerate(synth_used)]
    order = sorted(range(len(sft)), key=lambda i: hashlib.sha256(f"order/{i}".encode()).digest())
    sft = [sft[i] for i in order]
    # The last stage's mixture. A training name's answer can be memorised (it appears with the same answer in several
    # conversations), so SFT on real round trips alone teaches the model to recall, not to read the tool's result, and
    # recall fails on held-out names. Here most round trips pair a made-up name with a random training entry's text:
    # the only way to the answer is to copy the result's first sentence. The extra calls on made-up names do the same
    # for the name (a real module with another entry's last part is the held-out names' most common miss).
    train_items = [(n, t) for n, t in items if not held_out(n)]
    fresh = [n for n in synthetic_names(seen | set(synth_used), a.mix_shuffled + a.mix_synthetic, Rng("pydoc-chat-mix"))
             if n not in held_set]
    mix_rng = Rng("pydoc-chat-mix-pick")

    def vary(r=mix_rng):
        cores = TRAIN_PHRASINGS + MIX_CORES
        p = cores[r.below(len(cores))]
        if r.below(2):
            p = MIX_OPENINGS[r.below(len(MIX_OPENINGS))] + (p[0].lower() + p[1:] if p[0] != "{" else p)
        if r.below(5) < 2:
            p += MIX_CLOSINGS[r.below(len(MIX_CLOSINGS))]
        assert "summary" not in p and "sentence" not in p
        return p

    # per training name: a call, a round trip and a plain answer (without plain answers the model forgets to answer
    # without a tool: its replies degenerate)
    mix = []
    for name, text in train_items:
        answer = first_sentence(text)
        mix += [tool_call(vary(), name), answered(vary(), name, tool_result(text), answer), plain(vary(), name, answer)]
    mix += [made_up(i, vary(), name) for i, name in enumerate(synth_used)]
    for name in fresh[:a.mix_shuffled]:
        _, text = train_items[mix_rng.below(len(train_items))]
        mix.append(answered(vary(), name, tool_result(text), first_sentence(text)))
    mix += [tool_call(vary(), name) for name in fresh[a.mix_shuffled:]]
    order = sorted(range(len(mix)), key=lambda i: hashlib.sha256(f"mix-order/{i}".encode()).digest())
    mix = [mix[i] for i in order]
    # Stage 7's mixture (sft-copy.jsonl). After the mixture above, held-out names were right 2 times in 3:
    # the misses copy the start of the name, then drift to a familiar training name. Here most calls are on names
    # that look like real ones but are not (near_names), so a familiar continuation is wrong and only copying is right;
    # a round trip per training name and a plain answer for every other one keep what the earlier stages taught.
    copy_rng = Rng("pydoc-chat-copy")
    near = near_names([n for n, _ in train_items], a.copy_near + a.copy_shuffled, Rng("pydoc-chat-near"),
                      seen | set(synth_used) | set(fresh))
    copy = []
    for k, (name, text) in enumerate(train_items):
        answer = first_sentence(text)
        copy.append(answered(vary(copy_rng), name, tool_result(text), answer))
        if k % 2 == 0:
            copy.append(plain(vary(copy_rng), name, answer))
    copy += [made_up(i, vary(copy_rng), name) for i, name in enumerate(near[:a.copy_near])]
    for name in near[a.copy_near:]:
        _, text = train_items[copy_rng.below(len(train_items))]
        copy.append(answered(vary(copy_rng), name, tool_result(text), first_sentence(text)))
    order = sorted(range(len(copy)), key=lambda i: hashlib.sha256(f"copy-order/{i}".encode()).digest())
    copy = [copy[i] for i in order]
    # The dense copying stage (sft-copy2.jsonl). A single call copies one name, ~10 of a 512-token row's tokens, and
    # the rest of the trained tokens (answers, calls on familiar names) train recall, the held-out names' enemy. Here
    # most rows ask about 2-5 names at once, mostly look-alikes, and are answered with one call per name: five times
    # the copying per row. Single calls, round trips and plain answers in smaller shares keep the rest.
    train_names = [n for n, _ in train_items]
    # Words for stage 9's preambles: lower-case words of the training entries' first sentences, without the held-out
    # phrasings' own words (it must not see "Give me a short summary of" or "In one sentence").
    held_words = {"give", "short", "summary", "one", "sentence"}
    words = sorted({w for _, t in train_items for w in re.findall(r"\b[a-z]{3,10}\b", first_sentence(t))} - held_words)

    def dense_mix(tag, n_multi, taken, noisy):
        """A dense copying mixture: n_multi questions about 2-5 names (70% look-alikes, 10% made-up, 20% training
        names) answered with one call per name; 3/7 as many single calls on look-alikes; 5/14 as many round trips with
        another entry's text and as many on training names; 1/7 as many plain answers. `noisy`: half of the questions
        start with 1-4 random words, so the name is found by its form, not by where the sentence starts."""
        dense_rng = Rng("pydoc-chat-dense" + tag)
        dpick = lambda xs: xs[dense_rng.below(len(xs))]

        def ask_as(p):
            if not noisy or dense_rng.below(2):
                return p
            pre = " ".join(dpick(words) for _ in range(1 + dense_rng.below(4)))
            sep = dpick([". ", "! ", ": ", ", ", " - "])
            return pre[0].upper() + pre[1:] + sep + (p if sep in (". ", "! ") or p[0] == "{" else p[0].lower() + p[1:])
        look = near_names(train_names, 6 * n_multi, Rng("pydoc-chat-near-2" + tag), taken)
        made = [n for n in synthetic_names(taken | set(look), n_multi, Rng("pydoc-chat-dense-synth" + tag)) if n not in held_set]
        look_at, made_at = iter(look), iter(made)

        def multi(k):
            names = []
            for _ in range(k):
                r = dense_rng.below(10)
                names.append(next(look_at) if r < 7 else next(made_at) if r < 8 else dpick(train_names))
            q = [f"`{n}`" for n in names] if dense_rng.below(5) == 0 else names
            joined = ", ".join(q) if dense_rng.below(3) == 0 else ", ".join(q[:-1]) + " and " + q[-1]
            p = dpick(MULTI_CORES)
            if dense_rng.below(2):
                p = dpick(MIX_OPENINGS) + p[0].lower() + p[1:]
            if dense_rng.below(5) < 2:
                p += dpick(MIX_CLOSINGS)
            calls = [dict(call(n), id=f"call_{j}") for j, n in enumerate(names)]
            return {"messages": [{"role": "user", "content": ask_as(p).format(names=joined)},
                                 {"role": "assistant", "content": None, "tool_calls": calls}], "tools": tools}

        dense = [multi(2 + dense_rng.below(4)) for _ in range(n_multi)]
        n_single, n_trip = 3 * n_multi // 7, 5 * n_multi // 14
        dense += [tool_call(ask_as(vary(dense_rng)), next(look_at)) for _ in range(n_single)]
        for _ in range(n_trip):
            _, text = train_items[dense_rng.below(len(train_items))]
            dense.append(answered(ask_as(vary(dense_rng)), next(look_at), tool_result(text), first_sentence(text)))
        for _ in range(n_trip):
            name, text = train_items[dense_rng.below(len(train_items))]
            dense.append(answered(ask_as(vary(dense_rng)), name, tool_result(text), first_sentence(text)))
        for _ in range(n_multi // 7):
            name, text = train_items[dense_rng.below(len(train_items))]
            dense.append(plain(ask_as(vary(dense_rng)), name, first_sentence(text)))
        order = sorted(range(len(dense)), key=lambda i: hashlib.sha256(f"dense-order{tag}/{i}".encode()).digest())
        dense = [dense[i] for i in order]
        return dense, set(look) | set(made)

    taken = seen | set(synth_used) | set(fresh) | set(near)
    dense, used = dense_mix("", a.dense_multi, taken, noisy=False)
    # Stage 9's mixture (sft-copy3.jsonl): the same kinds, fresh names, half the questions after random words. After
    # stage 8, "Give me a short summary of aifc.close." gave lookup_docs("Give.set"): the model took the capitalised
    # first word for the module.
    dense3, _ = dense_mix("-3", a.dense3_multi, taken | used, noisy=True)
    # The tool-call conversations alone (a question, then the call): the call-copying stage before the full fine-tune.
    calls = [r for r in sft if len(r["messages"]) == 2 and r["messages"][-1].get("tool_calls")]
    # The tool round trips alone (question, call, result, answer): examples/sft-pydoc-roundtrips.json, an experiment.
    trips = [r for r in sft if len(r["messages"]) == 4 and r["messages"][2]["role"] == "tool"]
    for fname, rows in (("sft.jsonl", sft), ("sft-calls.jsonl", calls), ("sft-roundtrips.jsonl", trips),
                        ("sft-mix.jsonl", mix), ("sft-copy.jsonl", copy), ("sft-copy2.jsonl", dense), ("sft-copy3.jsonl", dense3),
                        ("eval-heldout.jsonl", ev), ("eval-heldout-newphrasing.jsonl", ev_new)):
        with open(os.path.join(a.out, fname), "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    with open(os.path.join(a.out, "heldout-names.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(held) + "\n")
    print(f"{len(items)} documented names ({len(held)} held out): {len(sft)} training conversations, "
          f"{len(mix)} in the mixture, {len(copy)} + {len(dense)} + {len(dense3)} in the copying mixtures, {len(ev)} + {len(ev_new)} eval items in {a.out}")


if __name__ == "__main__":
    main()
