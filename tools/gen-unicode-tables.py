#!/usr/bin/env python3
"""Generates src/LongCat/Tokenization/UnicodeTables.g.cs from Python's unicodedata and Perl's Unicode::UCD.

Why a table and not the BCL: .NET exposes no canonical combining class, no decomposition mapping and no
case folding, and its invariant-mode casing deliberately does not map U+017F (long s) to 's', which
Oniguruma's (?i) does. The tokenizer needs all three (NFC with HF's alignment bookkeeping, and
case-insensitive pre-tokenizer regexes).

NFC follows Unicode 9.0, not the Unicode version of this Python. Hugging Face tokenizers normalizes with the
`unicode-normalization-alignments` crate, 0.1.12 in tokenizers 0.23.2 (its source path is in the npm binary), a
fork of `unicode-normalization` 0.1.x with Unicode 9.0.0 tables. A model's ids come from that crate, so for it
every character assigned after 9.0 is unassigned: a starter with combining class 0, no decomposition and no
composition. Issue 15 measured the difference (all 98 combining marks added in Unicode 10.0-14.0 diverged, no
older mark did), and tests/fixtures/tokenizers/hf_nfc/ pins the result against HF itself. So the NFC tables
(combining classes, decompositions, compositions, exclusions) keep only characters whose Unicode age is <= 9.0.

Why Unicode 14.0 data restricted by age equals the 9.0 data: Unicode's Normalization Stability policy (Unicode
4.1+) says that once a character is encoded, its canonical combining class and decomposition mapping do not change
in a way that affects normalization, and a character can only be a composition exclusion from the version that
encodes it. A decomposition only uses characters at least as old as the decomposed one. So the 14.0 values of the
characters of age <= 9.0 are their 9.0 values, and dropping every newer character gives the 9.0 tables, from data
installed on any Debian, offline. (The golden sweep over every combining mark checks this against HF.)

Ages come from Perl's Unicode::UCD (`prop_invmap("Age")`, core Perl, its own UCD copy; any Perl whose
Unicode is >= 9.0 gives the same answer for age <= 9.0). Case folding is not NFC: it serves the pre-tokenizer
regexes (Oniguruma's tables) and keeps the full Unicode version of this Python.

Run: python3 tools/gen-unicode-tables.py > src/LongCat/Tokenization/UnicodeTables.g.cs
The output is deterministic for a given Python and Perl (their versions are written into the file).
"""
import subprocess
import sys
import unicodedata as ud

# The Unicode version of HF tokenizers' NFC (see above).
NFC_UNICODE = (9, 0)

MAX = 0x110000
SBASE, LBASE, VBASE, TBASE = 0xAC00, 0x1100, 0x1161, 0x11A7
SCOUNT = 11172


def read_ages():
    """(range starts, ages) from Perl's Unicode::UCD; an age is a (major, minor) tuple or None (unassigned)."""
    script = ('use Unicode::UCD qw(prop_invmap); my ($l, $m) = prop_invmap("Age"); '
              'print Unicode::UCD::UnicodeVersion(), " $^V\\n"; print "$l->[$_] $m->[$_]\\n" for 0 .. $#$l;')
    out = subprocess.run(["perl", "-e", script], check=True, capture_output=True, text=True).stdout.splitlines()
    unicode_version, perl_version = out[0].split()
    starts, ages = [], []
    for line in out[1:]:
        start, age = line.split()
        starts.append(int(start))
        ages.append(None if age == "Unassigned" else tuple(int(x) for x in age.split(".")))
    return starts, ages, unicode_version, perl_version


AGE_STARTS, AGES, PERL_UNICODE, PERL_VERSION = read_ages()
if tuple(int(x) for x in PERL_UNICODE.split(".")[:2]) < NFC_UNICODE:
    sys.exit(f"Perl's Unicode::UCD has Unicode {PERL_UNICODE}; ages up to {NFC_UNICODE} need a newer one")


def in_nfc_unicode(cp):
    """True when cp was assigned in Unicode 9.0 or earlier (HF's NFC knows it)."""
    lo, hi = 0, len(AGE_STARTS) - 1
    while lo < hi:  # last range start <= cp
        mid = (lo + hi + 1) // 2
        if AGE_STARTS[mid] <= cp:
            lo = mid
        else:
            hi = mid - 1
    age = AGES[lo]
    return age is not None and age <= NFC_UNICODE


def is_hangul(cp):
    return SBASE <= cp < SBASE + SCOUNT


def canon_decomp(cp):
    """Full canonical decomposition (recursive), or None. Hangul is algorithmic and left out."""
    if is_hangul(cp):
        return None
    d = ud.decomposition(chr(cp))
    if not d or d.startswith('<'):
        return None
    out = []
    for h in d.split():
        c = int(h, 16)
        sub = canon_decomp(c)
        out.extend(sub if sub else [c])
    return out


decomp = {}
ccc = {}
for cp in range(MAX):
    if 0xD800 <= cp <= 0xDFFF:
        continue
    if not in_nfc_unicode(cp):
        continue
    ch = chr(cp)
    c = ud.combining(ch)
    if c:
        ccc[cp] = c
    d = canon_decomp(cp)
    if d:
        assert all(in_nfc_unicode(x) for x in d), f"U+{cp:04X} decomposes to a newer character"
        decomp[cp] = d

# Primary composites: a canonical decomposition of exactly two code points whose NFC is the character itself
# (this drops composition exclusions and singletons), among the characters HF's NFC knows.
compose = {}
for cp in range(MAX):
    if 0xD800 <= cp <= 0xDFFF or is_hangul(cp) or not in_nfc_unicode(cp):
        continue
    d = ud.decomposition(chr(cp))
    if not d or d.startswith('<'):
        continue
    parts = [int(h, 16) for h in d.split()]
    if len(parts) == 2 and ud.normalize('NFC', chr(parts[0]) + chr(parts[1])) == chr(cp):
        compose[(parts[0], parts[1])] = cp

# Simple case folding, approximated from Python's full casefold(): single-code-point folds are the simple
# folds; where the full fold is longer (U+1E9E, Greek with ypogegrammeni), lower() gives the simple one.
# Turkic dotted/dotless i have no common simple fold and stay out, as in CaseFolding.txt status C+S.
fold = {}
for cp in range(MAX):
    if 0xD800 <= cp <= 0xDFFF or cp in (0x130, 0x131):
        continue
    ch = chr(cp)
    f = ch.casefold()
    if len(f) != 1:
        f = ch.lower()
        if len(f) != 1:
            continue
    if f != ch:
        fold[cp] = ord(f)


def emit(name, values, per_line=16):
    print(f"    internal static ReadOnlySpan<int> {name} =>")
    print("    [")
    for i in range(0, len(values), per_line):
        print("        " + ", ".join(f"0x{v:X}" for v in values[i:i + per_line]) + ",")
    print("    ];")
    print()


print("// <auto-generated>")
print(f"// Generated by tools/gen-unicode-tables.py from Python {sys.version.split()[0]} unicodedata, Unicode {ud.unidata_version},")
print(f"// NFC tables restricted to characters of Unicode age <= {NFC_UNICODE[0]}.{NFC_UNICODE[1]} (HF tokenizers' NFC), ages from")
print(f"// Perl {PERL_VERSION} Unicode::UCD (Unicode {PERL_UNICODE}).")
print("// Do not edit by hand; rerun the script.")
print("// </auto-generated>")
print("namespace LongCat.Tokenization;")
print()
print("static partial class UnicodeTables")
print("{")
print("    /// <summary>The Unicode version of case folding (and of this Python).</summary>")
print(f"    internal const string UnicodeVersion = \"{ud.unidata_version}\";")
print(f"    /// <summary>The Unicode version NFC follows: HF tokenizers' (see tools/gen-unicode-tables.py).</summary>")
print(f"    internal const string NfcUnicodeVersion = \"{NFC_UNICODE[0]}.{NFC_UNICODE[1]}.0\";")
print()
keys = sorted(ccc)
emit("CccKeys", keys)
emit("CccValues", [ccc[k] for k in keys])
keys = sorted(decomp)
offs, vals = [0], []
for k in keys:
    vals.extend(decomp[k])
    offs.append(len(vals))
emit("DecompKeys", keys)
emit("DecompOffsets", offs)
emit("DecompValues", vals)
pairs = sorted(compose)
emit("ComposeFirst", [p[0] for p in pairs])
emit("ComposeSecond", [p[1] for p in pairs])
emit("ComposeResult", [compose[p] for p in pairs])
keys = sorted(fold)
emit("FoldKeys", keys)
emit("FoldValues", [fold[k] for k in keys])
print("}")
