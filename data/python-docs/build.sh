#!/usr/bin/env bash
# Rebuilds corpus.jsonl.gz from Debian's python3.11-doc package (the reStructuredText sources of the Python 3.11
# documentation, PSF licence: see LICENSE). Needs apt-get (download only, nothing is installed) and python3.
# Output is deterministic: one JSON line {"source": path, "text": contents} per .rst file, sorted by path.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
apt-get download python3.11-doc=3.11.2-6+deb12u9 >/dev/null
dpkg-deb -x python3.11-doc_*.deb x
src=x/usr/share/doc/python3.11/html/_sources
cp x/usr/share/doc/python3.11-doc/copyright "$here/LICENSE"
python3 - "$src" <<'PY' | gzip -9n > "$here/corpus.jsonl.gz"
import json, os, sys
root = sys.argv[1]
# The user-facing documentation. Left out: whatsnew (changelogs), c-api, distutils/install (deprecated), and the
# licence/about/bugs/contents pages.
keep = ["tutorial", "library", "reference", "howto", "faq", "using", "extending", "installing", "distributing",
        "glossary.rst.txt"]
files = []
for k in keep:
    p = os.path.join(root, k)
    if os.path.isfile(p):
        files.append(p)
    else:
        for d, _, fs in os.walk(p):
            files += [os.path.join(d, f) for f in fs if f.endswith(".rst.txt")]
for f in sorted(files):
    with open(f, encoding="utf-8") as fh:
        text = fh.read()
    print(json.dumps({"source": os.path.relpath(f, root)[:-len(".txt")], "text": text}, ensure_ascii=False))
PY
echo "wrote $here/corpus.jsonl.gz ($(stat -c %s "$here/corpus.jsonl.gz") bytes)"
