#!/usr/bin/env node
// Hugging Face tokenizers (npm `tokenizers`, the Node binding of the Rust library) as the same-run reference of
// `longcat bench tokenize`. Install once: `cd bench/hf-tokenizers && npm install` (node_modules is git-ignored).
//
// JSON-lines server on stdin/stdout (the C# bench alternates its repeats with ours); first line: {"type": "info", ...}
//   {"op": "load", "tokenizer": "path/tokenizer.json", "chunks": ["...", ...]}  -> {"ok": true, "chunks": n}
//   {"op": "run", "mode": "ids" | "offsets" | "batch"}  -> {"seconds": wall, "cpu_seconds": cpu, "tokens": n}
//   {"op": "quit"}
// Modes, like ours: "ids" encodes the chunks one after another and reads the ids; "offsets" also reads the offsets;
// "batch" is encodeBatch over all chunks (Rayon threads: RAYON_NUM_THREADS, set by the caller to --threads).
// No special tokens are added (addSpecialTokens: false), as our EncodeToIds.
'use strict';
const readline = require('readline');
const path = require('path');

let tokenizers;
try {
  tokenizers = require(path.join(__dirname, 'node_modules', 'tokenizers'));
} catch (e) {
  process.stderr.write(`the npm package 'tokenizers' is not installed: run 'npm install' in ${__dirname} (${e.message})\n`);
  process.exit(2);
}
const pkg = require(path.join(__dirname, 'node_modules', 'tokenizers', 'package.json'));

let tok = null;
let chunks = [];
const opts = { addSpecialTokens: false };

async function run(mode) {
  let tokens = 0;
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  if (mode === 'batch') {
    const encs = await tok.encodeBatch(chunks, opts);
    for (const e of encs) tokens += e.getIds().length;
  } else {
    for (const c of chunks) {
      const e = await tok.encode(c, null, opts);
      tokens += e.getIds().length;
      if (mode === 'offsets') e.getOffsets();
    }
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(c0);
  return { seconds, cpu_seconds: (cpu.user + cpu.system) / 1e6, tokens };
}

async function main() {
  console.log(JSON.stringify({ type: 'info', tokenizers: pkg.version, node: process.version, rayon_threads: process.env.RAYON_NUM_THREADS || null }));
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of rl) {
    if (!line.trim()) continue;
    let out;
    try {
      const req = JSON.parse(line);
      if (req.op === 'quit') break;
      if (req.op === 'load') {
        tok = tokenizers.Tokenizer.fromFile(req.tokenizer);
        chunks = req.chunks;
        out = { ok: true, chunks: chunks.length };
      } else if (req.op === 'run') {
        if (!tok) throw new Error('no tokenizer loaded');
        if (!['ids', 'offsets', 'batch'].includes(req.mode)) throw new Error(`unknown mode ${req.mode}`);
        out = await run(req.mode);
      } else {
        out = { error: `unknown op ${req.op}` };
      }
    } catch (e) {
      out = { error: String(e && e.message ? e.message : e) };
    }
    console.log(JSON.stringify(out));
  }
  rl.close();
}

main();
