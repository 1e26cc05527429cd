// Encodes the NFC sweep inputs (JSON lines {"text", "category"} on stdin, from nfc_sweep_inputs.py) with Hugging
// Face tokenizers (npm tokenizers@0.23.2, pinned in package.json) and the three fixture tokenizers, and writes
// tests/fixtures/tokenizers/hf_nfc/sweep.jsonl: per input, each tokenizer's ids, offsets (code points of the
// input) and decode(ids, skip_special_tokens=false), from encode(text, null, {addSpecialTokens: false}).
// usage: npm install && python3 nfc_sweep_inputs.py | node gen_nfc_sweep.js
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require('tokenizers');
const fixtures = path.join(__dirname, '..', '..', 'tests', 'fixtures', 'tokenizers');
const names = ['qwen3', 'deepseek_v3', 'longcat_style'];

(async () => {
  const version = require('tokenizers/package.json').version;
  if (version !== '0.23.2') throw new Error(`tokenizers ${version} installed; the fixtures pin 0.23.2`);
  const toks = names.map(n => Tokenizer.fromFile(path.join(fixtures, n, 'tokenizer.json')));
  const inputs = fs.readFileSync(0, 'utf8').split('\n').filter(l => l.length).map(l => JSON.parse(l));
  const lines = [];
  for (const { text, category } of inputs) {
    const row = { text, category };
    for (let i = 0; i < names.length; i++) {
      const e = await toks[i].encode(text, null, { addSpecialTokens: false });
      const ids = Array.from(e.getIds());
      row[names[i]] = { ids, offsets: e.getOffsets(), decoded: await toks[i].decode(ids, false) };
    }
    lines.push(JSON.stringify(row));
  }
  const out = path.join(fixtures, 'hf_nfc');
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, 'sweep.jsonl'), lines.join('\n') + '\n');
  console.error(`${lines.length} inputs x ${names.length} tokenizers, tokenizers ${version}, node ${process.version}`);
})().catch(e => { console.error(e); process.exit(1); });
