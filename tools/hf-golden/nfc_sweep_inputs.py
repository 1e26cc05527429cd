#!/usr/bin/env python3
"""Writes the inputs of the NFC sweep (issue 15) as JSON lines {"text", "category"} to stdout.

The marks: every code point with a non-zero canonical combining class in this Python's Unicode data (14.0),
plus every mark (general category Mn, Mc, Me) whose Unicode age is 10.0-14.0 (from Perl's Unicode::UCD).
Each goes into the contexts below, chosen to exercise canonical ordering, blocking and composition around it.
Deterministic: no randomness; the order is the contexts' order for each mark in code point order.
Run: python3 nfc_sweep_inputs.py | node gen_nfc_sweep.js (see README.md).
"""
import json
import subprocess
import sys
import unicodedata as ud

# The minimal inputs of issue 15 (HF ids differed from ours with Unicode 14.0 NFC tables).
ISSUE = ["\u036a\u1df7", "\u0eb8\u0eba", "\u0915\u094d\u0c3c", "\u0301\u1df9",
         "E\u1df9\u0300", "a\u1df9\u0301", "\U00011935\U00011930"]

# {m} is the mark. Base letters, marks of ccc 1 (U+0334), 220 (U+0316, U+0323), 230 (U+0301), 240 (U+0345),
# a composing pair (e + U+0301), Hangul L + V jamo and a space.
CONTEXTS = {
    "after_base": "a{m}",
    "alone": "{m}",
    "after_230": "a\u0301{m}",
    "before_220": "a{m}\u0316",
    "between_240_1": "o\u0345{m}\u0334",
    "before_composing": "e{m}\u0301",
    "after_composed_before_220": "e\u0301{m}\u0323",
    "doubled": "{m}{m}a",
    "after_space": "x {m}y",
    "between_jamo": "\u1100{m}\u1161",
}


def ages():
    script = ('use Unicode::UCD qw(prop_invmap); my ($l, $m) = prop_invmap("Age"); '
              'print "$l->[$_] $m->[$_]\\n" for 0 .. $#$l;')
    out = subprocess.run(["perl", "-e", script], check=True, capture_output=True, text=True).stdout.split("\n")
    ranges = [(int(s), a) for s, a in (line.split() for line in out if line)]
    result = {}
    for (start, age), nxt in zip(ranges, ranges[1:] + [(0x110000, None)]):
        if age != "Unassigned" and (10, 0) <= tuple(int(x) for x in age.split(".")) <= (14, 0):
            for cp in range(start, nxt[0]):
                result[cp] = age
    return result


def main():
    new = ages()
    marks = []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        ch = chr(cp)
        if ud.combining(ch) or (cp in new and ud.category(ch) in ("Mn", "Mc", "Me")):
            marks.append(cp)
    out = sys.stdout
    for text in ISSUE:
        out.write(json.dumps({"text": text, "category": "issue15"}, ensure_ascii=False) + "\n")
    # Characters of Unicode 10.0-14.0 with a canonical decomposition, as themselves and decomposed.
    for cp in sorted(new):
        d = ud.decomposition(chr(cp))
        if d and not d.startswith("<"):
            parts = "".join(chr(int(h, 16)) for h in d.split())
            for text in (chr(cp), parts, "a" + parts + "\u0301"):
                out.write(json.dumps({"text": text, "category": "new_decomposition"}, ensure_ascii=False) + "\n")
    for cp in marks:
        m = chr(cp)
        for name, pattern in CONTEXTS.items():
            out.write(json.dumps({"text": pattern.replace("{m}", m), "category": name}, ensure_ascii=False) + "\n")
    print(f"{len(marks)} marks ({sum(1 for c in marks if c in new)} of Unicode 10.0-14.0)", file=sys.stderr)


main()
