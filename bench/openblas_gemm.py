#!/usr/bin/python3
"""OpenBLAS sgemm reference for `longcat bench gemm`: times y = x @ W.T (x [M, K], W [N, K], float32).

Run it with Debian's python (/usr/bin/python3) and numpy linked to OpenBLAS:
    apt-get install -y python3-numpy libopenblas0-pthread python3-threadpoolctl

Two modes, both printing one JSON object per line:
  * one-shot:  openblas_gemm.py --shapes 2048x2048x2048,512x256x1024 [--seconds 0.3] [--repeats 5]
               (shapes are MxNxK: M rows of x, N output features, K input features)
  * server:    openblas_gemm.py --serve   (used by `longcat bench gemm` to interleave repeats with its own)
               stdin lines:  {"op": "prepare", "m": M, "n": N, "k": K}
                             {"op": "run", "seconds": S}      -> {"gflops": G, "calls": C, "seconds": T}
                             {"op": "run", "seconds": S, "variant": "dx"|"dw"}: the backward GEMMs of the
                               same layer, dx = dy @ W and dw = dy.T @ x (dy [M, N]), same flop count
                             {"op": "bandwidth", "mib": 512, "seconds": S} -> {"gbps": G}
                             {"op": "quit"}
The first line printed is always an "info" object (numpy/OpenBLAS version, kernel, threads).

Environment (this process only): OPENBLAS_L2_SIZE is removed and OPENBLAS_CORETYPE is set from the CPU's flags
(see openblas_coretype: OpenBLAS 0.3.21 misdetects some virtualised Xeons as "Prescott"); threads default to 2 (--threads); OMP_WAIT_POLICY=PASSIVE; OPENBLAS_THREAD_TIMEOUT=20
(worker threads stop spinning ~1 ms after a call, so they do not steal the cores from the next C# repeat).
"""
import json
import os
import sys


def openblas_coretype():
    """The OpenBLAS kernel for this CPU from /proc/cpuinfo's flags, or None (then OpenBLAS detects it).

    OpenBLAS 0.3.21 (Debian 12) does not recognise some virtualised Xeons (model name "Intel(R) Xeon(R) Processor")
    and falls back to its SSE3 "Prescott" kernel, several times below the machine's F32 peak; naming the kernel that
    matches the CPU's instruction set gives the real peak (an honest reference is the best OpenBLAS can do here).
    """
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((l.split(":", 1)[1].split() for l in f if l.startswith("flags")), [])
    except OSError:
        return None
    if "avx512_bf16" in flags:
        return "COOPERLAKE"
    if "avx512f" in flags and "avx512vl" in flags and "avx512bw" in flags:
        return "SKYLAKEX"
    if "avx2" in flags and "fma" in flags:
        return "HASWELL"
    return None


def _setup_env(threads):
    # Must happen before numpy (and so OpenBLAS) is loaded; re-exec so the loader sees it.
    wanted = {
        "OMP_WAIT_POLICY": "PASSIVE",
        "OPENBLAS_NUM_THREADS": str(threads),
        "OMP_NUM_THREADS": str(threads),
        "OPENBLAS_THREAD_TIMEOUT": "20",
    }
    core = openblas_coretype()
    if core:
        wanted["OPENBLAS_CORETYPE"] = core
    removed = [v for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_VERBOSE") if v in os.environ and v not in wanted]
    changed = any(os.environ.get(k) != v for k, v in wanted.items()) or removed
    if changed and os.environ.get("_LONGCAT_BLAS_REEXEC") != "1":
        env = dict(os.environ)
        for v in removed:
            env.pop(v, None)
        env.pop("OPENBLAS_CORETYPE", None)
        env.update(wanted)
        env["_LONGCAT_BLAS_REEXEC"] = "1"
        env["_LONGCAT_BLAS_REMOVED"] = ",".join(removed)
        os.execve(sys.executable, [sys.executable] + sys.argv, env)


def _info(threads):
    import numpy as np
    info = {"type": "info", "numpy": np.__version__, "threads": threads, "coretype": os.environ.get("OPENBLAS_CORETYPE"),
            "removed_env": [v for v in os.environ.get("_LONGCAT_BLAS_REMOVED", "").split(",") if v]}
    try:
        import threadpoolctl
        pools = [p for p in threadpoolctl.threadpool_info() if p.get("user_api") == "blas"]
        if pools:
            p = pools[0]
            info.update(blas=p.get("internal_api"), version=p.get("version"), kernel=p.get("architecture"),
                        threading=p.get("threading_layer"), blas_threads=p.get("num_threads"), library=p.get("filepath"))
    except ImportError:
        info["note"] = "python3-threadpoolctl not installed: kernel unknown"
        try:
            cfg = np.show_config(mode="dicts")  # numpy >= 1.25
            info["blas"] = json.dumps(cfg.get("Build Dependencies", {}).get("blas", {}))
        except Exception:  # older numpy: config only printable
            pass
    return info


class Gemm:
    def __init__(self, m, n, k):
        import numpy as np
        rng = np.random.default_rng(1)
        self.x = rng.standard_normal((m, k), dtype=np.float32)
        self.w = rng.standard_normal((n, k), dtype=np.float32) * np.float32(0.02)
        self.y = np.empty((m, n), dtype=np.float32)
        self.flops = 2.0 * m * n * k
        self.wt = self.w.T  # F-contiguous view: sgemm with a transposed operand, no copy
        self.m, self.n, self.k = m, n, k
        self.dy = None

    def run(self, seconds, variant="fwd"):
        import numpy as np
        import time
        if variant == "fwd":
            a, b, out = self.x, self.wt, self.y
        else:
            if self.dy is None:
                rng = np.random.default_rng(2)
                self.dy = rng.standard_normal((self.m, self.n), dtype=np.float32)
                self.dx = np.empty((self.m, self.k), dtype=np.float32)
                self.dw = np.empty((self.n, self.k), dtype=np.float32)
            if variant == "dx":
                a, b, out = self.dy, self.w, self.dx
            elif variant == "dw":
                a, b, out = self.dy.T, self.x, self.dw
            else:
                raise ValueError(f"unknown variant {variant!r}")
        calls = 0
        t0 = time.perf_counter()
        while True:
            np.matmul(a, b, out=out)
            calls += 1
            t = time.perf_counter() - t0
            if t >= seconds:
                break
        return {"gflops": self.flops * calls / t / 1e9, "calls": calls, "seconds": t}


def _bandwidth(mib, seconds):
    import numpy as np
    import time
    a = np.ones(mib * 1024 * 1024 // 4, dtype=np.float32)
    a.sum()
    n = 0
    t0 = time.perf_counter()
    while True:
        a.sum()
        n += 1
        t = time.perf_counter() - t0
        if t >= seconds:
            break
    return {"gbps": a.nbytes * n / t / 1e9}


def _shape(s):
    m, n, k = (int(v) for v in s.lower().split("x"))
    return m, n, k


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--serve", action="store_true")
    ap.add_argument("--shapes", default="2048x2048x2048")
    ap.add_argument("--seconds", type=float, default=0.3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    _setup_env(a.threads)
    print(json.dumps(_info(a.threads)), flush=True)
    if a.serve:
        g = None
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            try:
                req = json.loads(line)
                op = req.get("op")
                if op == "quit":
                    break
                if op == "prepare":
                    g = None
                    g = Gemm(int(req["m"]), int(req["n"]), int(req["k"]))
                    g.run(0)
                    out = {"ok": True}
                elif op == "run":
                    out = g.run(float(req.get("seconds", 0.3)), req.get("variant", "fwd"))
                elif op == "bandwidth":
                    out = _bandwidth(int(req.get("mib", 512)), float(req.get("seconds", 0.5)))
                else:
                    out = {"error": f"unknown op {op!r}"}
            except Exception as e:  # report, keep serving
                out = {"error": f"{type(e).__name__}: {e}"}
            print(json.dumps(out), flush=True)
        return
    import statistics
    for s in a.shapes.split(","):
        m, n, k = _shape(s)
        g = Gemm(m, n, k)
        g.run(max(a.seconds, 1.0))  # warm-up (and lets the second core join)
        rs = [g.run(a.seconds)["gflops"] for _ in range(a.repeats)]
        print(json.dumps({"type": "gemm", "m": m, "n": n, "k": k, "gflops_median": statistics.median(rs),
                          "gflops": rs}), flush=True)


if __name__ == "__main__":
    main()
