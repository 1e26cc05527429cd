#!/usr/bin/python3
"""Parity of the PyTorch peer (longcat_peer.py) with the golden fixtures in tests/fixtures/reference.

For every fixture with float weights: logits, hidden_after_layer_L, final_hidden, router top-k (exact indices,
weights), the loss, the 16-token greedy continuation decoded through the latent KV cache (absorbed decode,
so the cached path is checked too, and must be exact), and every parameter's gradient. Tolerances are the ones
the C# golden tests use (tests/LongCat.Tests/GoldenParityTests.cs, GradientParityTests.cs): logits and router
weights 1e-5, hidden states 5e-5, loss 1e-5, gradient max |diff| <= 1e-4 x that tensor's max |grad|. A
quantized fixture (small-fp8) must be refused with an error naming the dtype.

Usage: /usr/bin/python3 bench/peer/test_parity.py [fixtures dir]; exit status 0 when everything holds. Prints one
line per check.
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import longcat_peer as lp  # noqa: E402

TOL = {"logits": 1e-5, "router": 1e-5, "hidden": 5e-5, "loss": 1e-5, "grad_rel": 1e-4}


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "reference")
    torch.set_num_threads(int(os.environ.get("PEER_THREADS", "2")))
    failures = []

    def check(what, ok, detail):
        print(f"{'ok  ' if ok else 'FAIL'} {what}: {detail}", flush=True)
        if not ok:
            failures.append(what)

    fixtures = sorted(d for d in os.listdir(root) if os.path.exists(os.path.join(root, d, "expected.safetensors")))
    if not fixtures:
        print(f"no fixtures under {root}")
        return 1
    for name in fixtures:
        d = os.path.join(root, name)
        with open(os.path.join(d, "config.json")) as f:
            quantized = "quantization_config" in f.read()
        if quantized:
            try:
                lp.LongCatPeer.load(d)
                check(f"{name}: refused", False, "a quantized checkpoint loaded without an error")
            except lp.PeerError as e:
                check(f"{name}: refused", "quantization_config" in str(e) or "F8_E4M3" in str(e), str(e))
            continue
        model = lp.LongCatPeer.load(d)
        exp = lp._read_safetensors(os.path.join(d, "expected.safetensors"))
        ids = torch.from_numpy(np.array(exp["input_ids"]))
        logits, hf, hidden = model(ids, keep_hidden=True)
        loss = lp.next_token_loss(logits, ids)
        err = float((logits.detach() - torch.from_numpy(np.array(exp["logits"]))).abs().max())
        check(f"{name}: logits", err <= TOL["logits"], f"max |diff| {err:.2e}")
        err = float((hf.detach() - torch.from_numpy(np.array(exp["final_hidden"]))).abs().max())
        check(f"{name}: final_hidden", err <= TOL["hidden"], f"max |diff| {err:.2e}")
        for l, L in enumerate(model.layers):
            err = float((hidden[l].detach() - torch.from_numpy(np.array(exp[f"hidden_after_layer_{l}"]))).abs().max())
            check(f"{name}: hidden_after_layer_{l}", err <= TOL["hidden"], f"max |diff| {err:.2e}")
            sel, w = L.moe.last_topk
            sel_sorted, order = torch.sort(sel, dim=-1)
            w_sorted = w.detach().gather(-1, order)
            same = np.array_equal(sel_sorted.numpy(), np.array(exp[f"router_topk_indices_layer_{l}"]))
            check(f"{name}: router indices layer {l}", same, "identical" if same else "differ")
            err = float((w_sorted - torch.from_numpy(np.array(exp[f"router_topk_weights_layer_{l}"]))).abs().max())
            check(f"{name}: router weights layer {l}", err <= TOL["router"], f"max |diff| {err:.2e}")
        err = abs(float(loss) - float(np.array(exp["loss"])))
        check(f"{name}: loss", err <= TOL["loss"], f"{float(loss):.8f}, |diff| {err:.2e}")

        loss.backward()
        grads = model.gradients()
        want = lp._read_safetensors(os.path.join(d, "grads.safetensors"))
        missing = sorted(set(want) ^ set(grads))
        check(f"{name}: gradient names", not missing, "same set" if not missing else f"differ: {missing[:3]}")
        worst, worst_name = 0.0, ""
        for n, g in want.items():
            if n not in grads:
                continue
            g = np.array(g)
            scale = float(np.abs(g).max())
            rel = float(np.abs(grads[n] - g).max()) / scale if scale > 0 else float(np.abs(grads[n]).max())
            if rel > worst:
                worst, worst_name = rel, n
        check(f"{name}: gradients", worst <= TOL["grad_rel"], f"worst max|diff|/max|grad| {worst:.2e} ({worst_name})")

        prompt = [int(t) for t in np.array(exp["greedy_prompt"])]
        cont = [int(t) for t in np.array(exp["greedy_continuation"])]
        toks, _, _, _ = lp.generate(model, prompt, len(cont))
        check(f"{name}: greedy (latent KV cache)", toks == cont, "identical" if toks == cont else f"{toks} vs {cont}")
        if name == "tiny-bf16":
            bf = lp.LongCatPeer.load(d).to_compute_dtype(torch.bfloat16)
            with torch.no_grad():
                lg, _, _ = bf(ids)
            err = float((lg.float() - torch.from_numpy(np.array(exp["logits"]))).abs().max())
            toks, _, _, _ = lp.generate(bf, prompt, len(cont))
            check(f"{name}: bfloat16 compute (the peer's bf16 mode)", err <= 2e-2 and toks == cont, f"logits max |diff| {err:.2e}, greedy {'identical' if toks == cont else 'differs'}")

    # MTP speculative decoding must not change the output: a random model with an MTP head (no fixture has one).
    c = lp.Config.load(os.path.join(root, "tiny"))
    torch.manual_seed(5)
    m = lp.LongCatPeer(c, mtp=True)
    with torch.no_grad():
        for _, t, kind in m.named_tensors():
            if kind != "buffer":
                t.normal_(0, 0.3) if t.dim() > 1 else t.normal_(1, 0.1)
    prompt = [1, 17, 42, 99, 5]
    plain, _, _, _ = lp.generate(m, prompt, 24)
    spec, _, _, acc = lp.generate(m, prompt, 24, mtp=True)
    check("MTP speculative decoding (random model with an MTP head)", spec == plain,
          f"same 24 tokens as plain greedy, acceptance {acc:.2f}" if spec == plain else f"{spec} vs {plain}")

    # ... and with a draft head that is right two times in three (an oracle over the plain greedy sequence, wrong at
    # every third draft), so that both the accept and the reject paths of the verifier run.
    seq = prompt + plain + [0, 0]

    class Oracle(torch.nn.Module):
        calls = 0

        def forward(self, main_hidden, next_tokens, main_embed, lm_head, rope, cache):
            n = next_tokens.shape[1]
            cache.length += n
            Oracle.calls += 1
            logits = torch.zeros(1, n, c.vocab_size)
            target = seq[cache.length + 1]
            logits[0, -1, (target + (1 if Oracle.calls % 3 == 0 else 0)) % c.vocab_size] = 1
            return logits

    m.mtp = Oracle()
    spec, _, _, acc = lp.generate(m, prompt, 24, mtp=True)
    check("MTP speculative decoding (oracle draft head, 2 of 3 right)", spec == plain and 0.4 < acc < 0.9,
          f"same 24 tokens as plain greedy, acceptance {acc:.2f}" if spec == plain else f"{spec} vs {plain}")
    print(f"{'PASS' if not failures else 'FAIL'}: {len(failures)} failed checks", flush=True)
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
