using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using LongCat.Inference;

namespace LongCat.Server;

/// <summary>HTTP request counters, and the Prometheus text exposition of them plus the scheduler's gauges (/metrics).</summary>
public sealed class ServerMetrics
{
    readonly ConcurrentDictionary<(string Route, int Status), long> _requests = new();

    /// <summary>Counts one answered request.</summary>
    public void Count(string route, int status) => _requests.AddOrUpdate((route, status), 1, (_, n) => n + 1);

    /// <summary>Requests answered so far with this route and status.</summary>
    public long Requests(string route, int status) => _requests.TryGetValue((route, status), out var n) ? n : 0;

    /// <summary>Prometheus text format 0.0.4.</summary>
    public string Render(SchedulerStats s, string modelId)
    {
        var sb = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        string model = $"model=\"{Escape(modelId)}\"";
        void Metric(string name, string type, string help, params (string Labels, double Value)[] samples)
        {
            sb.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n');
            sb.Append("# TYPE ").Append(name).Append(' ').Append(type).Append('\n');
            foreach (var (labels, value) in samples)
                sb.Append(name).Append('{').Append(labels).Append("} ").Append(value.ToString("R", inv)).Append('\n');
        }
        var reqs = _requests.OrderBy(k => k.Key.Route, StringComparer.Ordinal).ThenBy(k => k.Key.Status)
            .Select(k => ($"route=\"{Escape(k.Key.Route)}\",status=\"{k.Key.Status}\"", (double)k.Value)).ToArray();
        Metric("longcat_http_requests_total", "counter", "HTTP requests answered, by route and status.", reqs);
        Metric("longcat_requests_submitted_total", "counter", "Generations queued.", (model, s.Submitted));
        Metric("longcat_requests_rejected_total", "counter", "Generations refused because the queue was full (429).", (model, s.Rejected));
        Metric("longcat_requests_finished_total", "counter", "Generations that ended normally.", (model, s.Finished));
        Metric("longcat_requests_cancelled_total", "counter", "Generations cancelled (client disconnected).", (model, s.Cancelled));
        Metric("longcat_requests_failed_total", "counter", "Generations that failed with an internal error.", (model, s.Failed));
        Metric("longcat_prompt_tokens_total", "counter", "Prompt tokens of finished sequences (tokens in; a prompt shared by n choices counts n times).", (model, s.PromptTokens));
        Metric("longcat_prefill_tokens_total", "counter", "Prompt tokens run through the model (a prompt shared by n choices counts once).", (model, s.PrefillTokens));
        Metric("longcat_completion_tokens_total", "counter", "Tokens generated (tokens out).", (model, s.CompletionTokens));
        Metric("longcat_generation_tokens_per_second", "gauge", "Tokens generated per second over the last 5 seconds, all sequences together.", (model, Math.Round(s.RecentTokensPerSecond, 3)));
        Metric("longcat_queue_depth", "gauge", "Requests waiting for a slot or KV-cache room.", (model, s.Queued));
        Metric("longcat_running_sequences", "gauge", "Sequences admitted and not finished.", (model, s.Running));
        Metric("longcat_batch_steps_total", "counter", "Batched forward steps.", (model, s.Steps));
        Metric("longcat_kv_cache_bytes", "gauge", "KV-cache bytes by state (rented to running sequences, idle for reuse, capacity of the pool).",
            ($"{model},state=\"rented\"", s.KvCacheBytesRented), ($"{model},state=\"idle\"", s.KvCacheBytesIdle), ($"{model},state=\"capacity\"", s.KvCacheBytesCapacity));
        Metric("longcat_kv_cache_usage_ratio", "gauge", "Rented KV-cache bytes over the pool's capacity.", (model, s.KvCacheBytesCapacity == 0 ? 0 : Math.Round((double)s.KvCacheBytesRented / s.KvCacheBytesCapacity, 6)));
        Metric("longcat_mtp_drafted_tokens_total", "counter", "Tokens drafted by the MTP head.", (model, s.DraftedTokens));
        Metric("longcat_mtp_accepted_tokens_total", "counter", "Drafted tokens the main model accepted.", (model, s.AcceptedDrafts));
        Metric("longcat_mtp_acceptance_ratio", "gauge", "Accepted over drafted tokens since start.", (model, Math.Round(s.MtpAcceptanceRate, 6)));
        Metric("longcat_real_experts_per_token", "gauge", "Mean real (non-zero) experts per generated token per layer since start.", (model, Math.Round(s.MeanRealExperts, 6)));
        return sb.ToString();
    }

    static string Escape(string s) => s.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);
}
