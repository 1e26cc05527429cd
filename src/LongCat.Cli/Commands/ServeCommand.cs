using System.CommandLine;
using LongCat.IO;
using LongCat.Inference;
using LongCat.Server;

namespace LongCat.Cli.Commands;

/// <summary><c>longcat serve</c>: the OpenAI-compatible HTTP server with continuous batching and the web chat page.</summary>
public static class ServeCommand
{
    public static Command Create()
    {
        var model = CliSupport.ModelOption("Checkpoint folder (config.json, safetensors, and tokenizer.json unless --tokenizer says where).", DemoModelKind.Chat);
        var tokenizer = new Option<string?>("--tokenizer") { Description = "tokenizer.json (default: the one in the model folder)." };
        var host = new Option<string>("--host") { Description = "Address to bind. The default serves only this machine; 0.0.0.0 serves the network (use --api-key).", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "TCP port (0 = any free port).", DefaultValueFactory = _ => 8000 };
        var apiKey = new Option<string?>("--api-key") { Description = "Require 'Authorization: Bearer KEY' on every /v1 route (default: $LONGCAT_API_KEY, else none)." };
        var name = new Option<string?>("--model-name") { Description = "Model id clients send and /v1/models lists (default: the folder's name)." };
        var ctx = new Option<int?>("--context") { Description = "Context length per sequence, prompt + completion (default: min(max_position_embeddings, 4096))." };
        var maxRunning = new Option<int>("--max-running") { Description = "Sequences decoded together in one batch, at most.", DefaultValueFactory = _ => 64 };
        var kvMb = new Option<int>("--kv-cache-mb") { Description = "KV-cache pool size in MiB; requests wait when it is full.", DefaultValueFactory = _ => 1024 };
        var maxQueue = new Option<int>("--max-queue") { Description = "Requests that may wait for a slot; beyond that the server answers 429.", DefaultValueFactory = _ => 256 };
        var prefill = new Option<int>("--prefill-chunk") { Description = "Prompt tokens prefilled per batch step, so long prompts do not stall running streams.", DefaultValueFactory = _ => 256 };
        var maxTokens = new Option<int>("--max-tokens-limit") { Description = "Largest max_tokens a request may ask for (400 beyond).", DefaultValueFactory = _ => 4096 };
        var defaultMax = new Option<int>("--default-max-tokens") { Description = "Completion tokens when a chat request sets no max_tokens.", DefaultValueFactory = _ => 512 };
        var speculative = new Option<string?>("--speculative") { Description = "'mtp': draft with the MTP head by default (requests can still say \"speculative\": false)." };
        var maxBody = new Option<int>("--max-body-kb") { Description = "Largest request body in KiB (413 beyond).", DefaultValueFactory = _ => 1024 };
        var allowedHost = new Option<string[]>("--allowed-host") { Description = "Host header value to accept besides localhost, 127.0.0.1 and [::1] (repeatable; e.g. the name a reverse proxy forwards). Other hosts get 421." };
        var corsOrigin = new Option<string[]>("--cors-origin") { Description = "Origin whose web pages may call the API, e.g. https://app.example (repeatable; '*' for any). None by default." };
        var cmd = new Command("serve", "Serve the model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, /v1/models), with continuous batching, /health, /metrics and a chat page at /.")
        {
            model, tokenizer, host, port, apiKey, name, ctx, maxRunning, kvMb, maxQueue, prefill, maxTokens, defaultMax, speculative, maxBody, allowedHost, corsOrigin,
        };
        cmd.SetAction(p => CliSupport.Run(p, () =>
        {
            var dir = Path.GetFullPath(CliSupport.ResolveModel(p.GetValue(model), DemoModelKind.Chat));
            var spec = p.GetValue(speculative);
            if (spec is not null && spec != "mtp") throw new CliException($"--speculative must be 'mtp', got '{spec}'");
            if (p.GetValue(kvMb) is < 1 or > 1 << 20) throw new CliException($"--kv-cache-mb must be in 1..{1 << 20}, got {p.GetValue(kvMb)}");
            if (p.GetValue(maxBody) is < 1 or > 1 << 20) throw new CliException($"--max-body-kb must be in 1..{1 << 20}, got {p.GetValue(maxBody)}");
            var key = p.GetValue(apiKey);
            if (key is null && Environment.GetEnvironmentVariable("LONGCAT_API_KEY") is { Length: > 0 } env) key = env;
            var server = new ServerOptions
            {
                Host = p.GetValue(host)!,
                Port = p.GetValue(port),
                ApiKey = key,
                MaxRequestBodyBytes = p.GetValue(maxBody) * 1024L,
                ConsoleLogging = true,
                AllowedHosts = p.GetValue(allowedHost) ?? [],
                CorsOrigins = p.GetValue(corsOrigin) ?? [],
            };
            server.Validate();
            var config = Config.LongCatConfig.Load(Path.Combine(dir, "config.json"));
            var sched = new SchedulerOptions
            {
                MaxRunningSequences = p.GetValue(maxRunning),
                KvCacheBytes = p.GetValue(kvMb) * (1L << 20),
                MaxQueuedRequests = p.GetValue(maxQueue),
                PrefillChunkTokens = p.GetValue(prefill),
                ContextLength = p.GetValue(ctx) ?? Math.Min(config.MaxPositionEmbeddings, 4096),
            };
            sched.Validate();
            var chat = new ChatClientOptions
            {
                ModelId = p.GetValue(name) ?? Path.GetFileName(dir.TrimEnd(Path.DirectorySeparatorChar)),
                MaxTokensLimit = p.GetValue(maxTokens),
                DefaultMaxTokens = p.GetValue(defaultMax),
                Speculative = spec == "mtp",
            };
            if (chat.MaxTokensLimit < 1) throw new CliException($"--max-tokens-limit must be at least 1, got {chat.MaxTokensLimit}");
            if (chat.DefaultMaxTokens < 1) throw new CliException($"--default-max-tokens must be at least 1, got {chat.DefaultMaxTokens}");
            using var served = ServedModel.Load(dir, p.GetValue(tokenizer), sched, chat);
            if (chat.Speculative && served.Model.Mtp is null) throw new CliException("--speculative mtp: this checkpoint has no MTP head (model.mtp.*)");
            var running = LongCatServer.StartAsync(served, server).GetAwaiter().GetResult();
            bool exposed = !System.Net.IPAddress.IsLoopback(ServerOptions.ParseHost(server.Host));
            Console.WriteLine($"longcat: serving '{served.ModelId}' at {running.BaseAddress} (chat page at /, OpenAI API at {running.BaseAddress}v1, metrics at /metrics)" +
                (exposed && key is null ? " -- warning: reachable from the network without --api-key" : "") + "; Ctrl+C stops");
            running.WaitForShutdownAsync().GetAwaiter().GetResult();
            running.DisposeAsync().AsTask().GetAwaiter().GetResult();
            return 0;
        }));
        return cmd;
    }
}
