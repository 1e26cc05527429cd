using System.Text.Json;
using LongCat.Config;
using LongCat.Inference;
using LongCat.Kernels;
using LongCat.IO;
using LongCat.Model;

namespace LongCat.Tests;

/// <summary>
/// A checkpoint whose MTP head is in the official LongCat-Flash layout (the tensor names vLLM's
/// <c>longcat_flash_mtp.py</c> and SGLang's <c>longcat_flash_nextn.py</c> map from, listed here by hand, not taken from
/// <see cref="CheckpointLayout"/>) loads its draft head and drafts what a plain re-implementation of the head's math
/// computes from the same weights; a head under other names is refused by name, never silently dropped.
/// </summary>
public class MtpOfficialLayoutTests
{
    /// <summary>The MTP tensors of the released checkpoint (both engines' name tables; FP8 adds weight_scale_inv).</summary>
    static readonly string[] OfficialNames =
    [
        "model.mtp.embed_tokens.weight",
        "model.mtp.layers.0.eh_proj.weight",
        "model.mtp.layers.0.enorm.m.weight",
        "model.mtp.layers.0.hnorm.m.weight",
        "model.mtp.layers.0.input_layernorm.weight",
        "model.mtp.layers.0.post_attention_layernorm.weight",
        "model.mtp.layers.0.self_attn.kv_a_layernorm.weight",
        "model.mtp.layers.0.self_attn.kv_a_proj_with_mqa.weight",
        "model.mtp.layers.0.self_attn.kv_b_proj.weight",
        "model.mtp.layers.0.self_attn.o_proj.weight",
        "model.mtp.layers.0.self_attn.q_a_layernorm.weight",
        "model.mtp.layers.0.self_attn.q_a_proj.weight",
        "model.mtp.layers.0.self_attn.q_b_proj.weight",
        "model.mtp.layers.0.transformer_layer.mlp.down_proj.weight",
        "model.mtp.layers.0.transformer_layer.mlp.gate_proj.weight",
        "model.mtp.layers.0.transformer_layer.mlp.up_proj.weight",
        "model.mtp.norm.weight",
    ];

    static long[] ShapeOf(string name, LongCatConfig c)
    {
        long h = c.HiddenSize, nh = c.NumAttentionHeads, f = c.FfnHiddenSize;
        string s = name.Replace("model.mtp.layers.0.", "").Replace("model.mtp.", "");
        return s switch
        {
            "embed_tokens.weight" => [c.VocabSize, h],
            "eh_proj.weight" => [h, 2 * h],
            "self_attn.q_a_proj.weight" => [c.QLoraRank, h],
            "self_attn.q_a_layernorm.weight" => [c.QLoraRank],
            "self_attn.q_b_proj.weight" => [nh * (c.QkNopeHeadDim + c.QkRopeHeadDim), c.QLoraRank],
            "self_attn.kv_a_proj_with_mqa.weight" => [c.KvLoraRank + c.QkRopeHeadDim, h],
            "self_attn.kv_a_layernorm.weight" => [c.KvLoraRank],
            "self_attn.kv_b_proj.weight" => [nh * (c.QkNopeHeadDim + c.VHeadDim), c.KvLoraRank],
            "self_attn.o_proj.weight" => [h, nh * c.VHeadDim],
            "transformer_layer.mlp.gate_proj.weight" or "transformer_layer.mlp.up_proj.weight" => [f, h],
            "transformer_layer.mlp.down_proj.weight" => [h, f],
            _ => [h], // the norms
        };
    }

    /// <summary>
    /// The tiny golden fixture plus an MTP shard written under <paramref name="rename"/>(official name) (null drops the
    /// tensor), with its own embedding (distinct from the main one) and non-unit norms, so that a head that read the
    /// main embedding, swapped the halves of eh_proj's input or skipped a norm would draft different logits.
    /// </summary>
    static (string Dir, Dictionary<string, float[]> W) Checkpoint(Func<string, string?>? rename = null, bool fp8 = false)
    {
        var src = Fixtures.Reference("tiny");
        var dir = Fixtures.NewTempDir();
        File.Copy(Path.Combine(src, "config.json"), Path.Combine(dir, "config.json"));
        File.Copy(Path.Combine(src, "model.safetensors"), Path.Combine(dir, "model-00001-of-00002.safetensors"));
        var c = LongCatConfig.Load(Path.Combine(dir, "config.json"));
        var weights = new Dictionary<string, float[]>();
        var w = new SafeTensorsWriter();
        var map = new Dictionary<string, string>();
        using (var a = SafeTensorFile.Open(Path.Combine(dir, "model-00001-of-00002.safetensors")))
            foreach (var n in a.Tensors.Keys) map[n] = "model-00001-of-00002.safetensors";
        foreach (var name in OfficialNames)
        {
            var shape = ShapeOf(name, c);
            var v = new float[shape.Aggregate(1L, (x, y) => x * y)];
            var rng = new NormalRng(23, name);
            bool norm = shape.Length == 1;
            for (int i = 0; i < v.Length; i++) v[i] = norm ? (float)(1 + 0.2 * rng.Next()) : (float)(rng.Next() * 0.05);
            weights[name] = v;
            var stored = rename is null ? name : rename(name);
            if (stored is null) continue;
            // The FP8 release: every MTP linear (eh_proj included) as E4M3 + 128x128 block scales; embedding and norms as stored.
            if (fp8 && shape.Length == 2 && !name.Contains("embed_tokens"))
            {
                w.AddFp8Blocked(stored, stored[..^".weight".Length] + ".weight_scale_inv", v, (int)shape[0], (int)shape[1]);
                map[stored[..^".weight".Length] + ".weight_scale_inv"] = "model-00002-of-00002.safetensors";
            }
            else w.AddF32(stored, v, shape);
            map[stored] = "model-00002-of-00002.safetensors";
        }
        w.Save(Path.Combine(dir, "model-00002-of-00002.safetensors"));
        File.WriteAllText(Path.Combine(dir, "model.safetensors.index.json"), JsonSerializer.Serialize(new { metadata = new { }, weight_map = map }));
        using (var m = SafeTensorFile.Open(Path.Combine(src, "model.safetensors")))
            foreach (var n in new[] { "lm_head.weight", "model.embed_tokens.weight" }) weights[n] = m.Tensor(n).ToFloat32();
        return (dir, weights);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void OfficialLayoutLoadsItsOwnHeadAndDraftsWhatTheSpecComputes(bool fp8)
    {
        var (dir, w) = Checkpoint(fp8: fp8);
        using var model = LongCatModel.Load(dir);
        var mtp = model.Mtp;
        Assert.NotNull(mtp);
        if (fp8)
        {
            // The reference reads what the FP8 tensors hold: e4m3 values times their block scales.
            Assert.All(mtp.Linears.Where(x => x != mtp.Embed), x => Assert.Equal(DType.F8_E4M3, x.DType));
            foreach (var x in mtp.Linears)
            {
                var d = new float[(long)x.Rows * x.Cols];
                for (int r = 0; r < x.Rows; r++) x.DequantizeRow(r, d.AsSpan(r * x.Cols, x.Cols));
                w[x.Name] = d;
            }
        }
        Assert.True(mtp.OwnEmbedding);
        Assert.Equal("model.mtp.embed_tokens.weight", mtp.Embed.Name);

        // h_t: the golden final hidden (after model.norm) of the fixture's first sequence; pairs (h_t, id_{t+1}).
        var c = model.Config;
        int hd = c.HiddenSize, v = c.VocabSize;
        using var e = SafeTensorFile.Open(Path.Combine(Fixtures.Reference("tiny"), "expected.safetensors"));
        var ids = e.Tensor("input_ids").ToInt64().Select(x => (int)x).ToArray();
        var hidden = e.Tensor("final_hidden").ToFloat32();
        int seq = (int)e.Tensor("input_ids").Shape[1], pairs = seq - 1;
        var h = hidden.AsSpan(0, pairs * hd).ToArray();
        var next = ids.AsSpan(1, pairs).ToArray();

        // Ours, through the head's KV cache: 3 pairs in one call, then one pair per call.
        var cache = mtp.NewCache(seq);
        var got = new float[pairs * v];
        mtp.Forward(h.AsSpan(0, 3 * hd), next.AsSpan(0, 3), cache, model.LmHead, model.Rope, allLogits: true).CopyTo(got, 0);
        for (int t = 3; t < pairs; t++)
            mtp.Forward(h.AsSpan(t * hd, hd), next.AsSpan(t, 1), cache, model.LmHead, model.Rope).CopyTo(got, t * v);

        var want = Reference(c, w, h, next, "model.mtp.embed_tokens.weight", swapHalves: false);
        double scale = want.Max(Math.Abs);
        Assert.True(scale > 0.05, $"draft logits too small to be a meaningful check ({scale})");
        for (int i = 0; i < want.Length; i++)
            Assert.True(Math.Abs(got[i] - want[i]) < 2e-5 * Math.Max(1, scale), $"draft logit {i}: {got[i]} vs reference {want[i]}");

        // The check can fail: the plausible misreadings move the logits far beyond the tolerance.
        foreach (var wrong in new[] { Reference(c, w, h, next, "model.embed_tokens.weight", false), Reference(c, w, h, next, "model.mtp.embed_tokens.weight", true) })
            Assert.True(want.Zip(wrong, (a, b) => Math.Abs(a - b)).Max() > 1e-2 * scale);
    }

    [Fact]
    public void OfficialLayoutSpeculativeGreedyEqualsTheGoldenContinuation()
    {
        var (dir, _) = Checkpoint();
        using var model = LongCatModel.Load(dir);
        using var e = SafeTensorFile.Open(Path.Combine(Fixtures.Reference("tiny"), "expected.safetensors"));
        var prompt = e.Tensor("greedy_prompt").ToInt64().Select(x => (int)x).ToArray();
        var want = e.Tensor("greedy_continuation").ToInt64();
        var s = new GenerationSession(model, prompt, new GenerationOptions { Temperature = 0, MaxTokens = want.Length, Speculative = true });
        Assert.Equal(want, s.Run().Select(x => (long)x));
        Assert.True(s.Result!.DraftedTokens > 0);
    }

    [Theory]
    [InlineData("model.mtp.layers.0.enorm.m.weight", "model.mtp.layers.0.enorm.weight")]          // vLLM's module name, not the checkpoint's
    [InlineData("model.mtp.layers.0.eh_proj.weight", "model.layers.4.eh_proj.weight")]            // DeepSeek-style next-n layer index
    [InlineData("model.mtp.norm.weight", "model.mtp.layers.0.final_layernorm.weight")]
    public void HeadUnderOtherNamesIsRefusedByName(string official, string stored)
    {
        var (dir, _) = Checkpoint(n => n == official ? stored : n);
        var ex = Assert.Throws<ModelFormatException>(() => LongCatModel.Load(dir).Dispose());
        Assert.Contains(stored, ex.Message);
        Assert.Contains("model.mtp.layers.0.", ex.Message);
    }

    [Fact]
    public void IncompleteHeadIsRefusedNamingWhatIsMissing()
    {
        var (dir, _) = Checkpoint(n => n == "model.mtp.layers.0.eh_proj.weight" ? null : n);
        var ex = Assert.Throws<ModelFormatException>(() => LongCatModel.Load(dir).Dispose());
        Assert.Contains("incomplete", ex.Message);
        Assert.Contains("model.mtp.layers.0.eh_proj.weight", ex.Message);
    }

    // ---- The MTP head's math written out plainly (spec section 2), in double precision, from the raw weights ----

    static double[] Reference(LongCatConfig c, Dictionary<string, float[]> w, float[] h, int[] next, string embedding, bool swapHalves)
    {
        const string p = "model.mtp.layers.0.";
        int hd = c.HiddenSize, n = next.Length, v = c.VocabSize;
        double eps = c.RmsNormEps;
        var x0 = new double[n][];
        for (int t = 0; t < n; t++)
        {
            var en = RmsNorm(w[embedding].AsSpan(next[t] * hd, hd).ToArray().Select(x => (double)x).ToArray(), w[p + "enorm.m.weight"], eps);
            var gn = RmsNorm(h.AsSpan(t * hd, hd).ToArray().Select(x => (double)x).ToArray(), w[p + "hnorm.m.weight"], eps);
            x0[t] = MatVec(w[p + "eh_proj.weight"], swapHalves ? [.. gn, .. en] : [.. en, .. gn], hd);
        }
        var a = Attention(c, w, p + "self_attn.", x0.Select(x => RmsNorm(x, w[p + "input_layernorm.weight"], eps)).ToArray());
        var logits = new double[n * v];
        for (int t = 0; t < n; t++)
        {
            var x1 = x0[t].Zip(a[t], (x, y) => x + y).ToArray();
            var b = RmsNorm(x1, w[p + "post_attention_layernorm.weight"], eps);
            var g = MatVec(w[p + "transformer_layer.mlp.gate_proj.weight"], b, c.FfnHiddenSize);
            var u = MatVec(w[p + "transformer_layer.mlp.up_proj.weight"], b, c.FfnHiddenSize);
            var f = MatVec(w[p + "transformer_layer.mlp.down_proj.weight"], g.Zip(u, (gi, ui) => gi / (1 + Math.Exp(-gi)) * ui).ToArray(), hd);
            var x2 = x1.Zip(f, (x, y) => x + y).ToArray();
            MatVec(w["lm_head.weight"], RmsNorm(x2, w["model.mtp.norm.weight"], eps), v).CopyTo(logits, t * v);
        }
        return logits;
    }

    /// <summary>Causal MLA over positions 0..n-1 (no cache), q/kv latent norms with the latent eps, α scales, interleaved RoPE.</summary>
    static double[][] Attention(LongCatConfig c, Dictionary<string, float[]> w, string p, double[][] x)
    {
        int n = x.Length, nh = c.NumAttentionHeads, dn = c.QkNopeHeadDim, dr = c.QkRopeHeadDim, dv = c.VHeadDim, rkv = c.KvLoraRank;
        double le = c.LatentNormEps, aq = c.AlphaQ, akv = c.AlphaKv;
        var q = new double[n][]; var k = new double[n][]; var val = new double[n][]; var kr = new double[n][];
        for (int t = 0; t < n; t++)
        {
            var cq = RmsNorm(MatVec(w[p + "q_a_proj.weight"], x[t], c.QLoraRank), w[p + "q_a_layernorm.weight"], le);
            q[t] = MatVec(w[p + "q_b_proj.weight"], cq, nh * (dn + dr)).Select(z => z * aq).ToArray();
            var kv = MatVec(w[p + "kv_a_proj_with_mqa.weight"], x[t], rkv + dr);
            var ckv = RmsNorm(kv[..rkv], w[p + "kv_a_layernorm.weight"], le).Select(z => z * akv).ToArray();
            var kvb = MatVec(w[p + "kv_b_proj.weight"], ckv, nh * (dn + dv));
            k[t] = new double[nh * dn]; val[t] = new double[nh * dv];
            for (int hh = 0; hh < nh; hh++)
            {
                Array.Copy(kvb, hh * (dn + dv), k[t], hh * dn, dn);
                Array.Copy(kvb, hh * (dn + dv) + dn, val[t], hh * dv, dv);
                Rotate(q[t].AsSpan(hh * (dn + dr) + dn, dr), t, c.RopeTheta);
            }
            kr[t] = kv[rkv..];
            Rotate(kr[t], t, c.RopeTheta);
        }
        var y = new double[n][];
        double scale = 1 / Math.Sqrt(dn + dr);
        for (int t = 0; t < n; t++)
        {
            var o = new double[nh * dv];
            for (int hh = 0; hh < nh; hh++)
            {
                var s = new double[t + 1];
                for (int j = 0; j <= t; j++)
                {
                    double d = 0;
                    for (int i = 0; i < dn; i++) d += q[t][hh * (dn + dr) + i] * k[j][hh * dn + i];
                    for (int i = 0; i < dr; i++) d += q[t][hh * (dn + dr) + dn + i] * kr[j][i];
                    s[j] = d * scale;
                }
                double mx = s.Max(), sum = s.Sum(z => Math.Exp(z - mx));
                for (int j = 0; j <= t; j++)
                    for (int i = 0; i < dv; i++) o[hh * dv + i] += Math.Exp(s[j] - mx) / sum * val[j][hh * dv + i];
            }
            y[t] = MatVec(w[p + "o_proj.weight"], o, c.HiddenSize);
        }
        return y;
    }

    static void Rotate(Span<double> x, int pos, double theta)
    {
        int d = x.Length;
        for (int i = 0; i < d / 2; i++)
        {
            double ang = pos * Math.Pow(theta, -2.0 * i / d), cs = Math.Cos(ang), sn = Math.Sin(ang);
            double a = x[2 * i], b = x[2 * i + 1];
            x[2 * i] = a * cs - b * sn;
            x[2 * i + 1] = a * sn + b * cs;
        }
    }

    static double[] RmsNorm(double[] x, float[] g, double eps)
    {
        double r = 1 / Math.Sqrt(x.Sum(z => z * z) / x.Length + eps);
        return x.Select((z, i) => z * r * g[i]).ToArray();
    }

    static double[] MatVec(float[] m, double[] x, int rows)
    {
        int cols = x.Length;
        var y = new double[rows];
        for (int r = 0; r < rows; r++)
        {
            double s = 0;
            for (int i = 0; i < cols; i++) s += m[(long)r * cols + i] * x[i];
            y[r] = s;
        }
        return y;
    }
}
