namespace LongCat.Server;

/// <summary>How the HTTP server listens and what it accepts.</summary>
public sealed record ServerOptions
{
    /// <summary>IP address to bind ("127.0.0.1" by default: only this machine can connect), or "localhost".</summary>
    public string Host { get; init; } = "127.0.0.1";
    /// <summary>TCP port; 0 picks a free one (see <see cref="RunningServer.BaseAddress"/>).</summary>
    public int Port { get; init; } = 8000;
    /// <summary>When set, every /v1 route requires <c>Authorization: Bearer KEY</c>.</summary>
    public string? ApiKey { get; init; }
    /// <summary>Largest request body accepted (413 beyond).</summary>
    public long MaxRequestBodyBytes { get; init; } = 1 << 20;
    /// <summary>Host names accepted in the Host header besides localhost, 127.0.0.1 and [::1] (see <see cref="HostFiltering"/>).</summary>
    public IReadOnlyList<string> AllowedHosts { get; init; } = [];
    /// <summary>Origins whose web pages may call the API (CORS); none by default, "*" for any.</summary>
    public IReadOnlyList<string> CorsOrigins { get; init; } = [];
    /// <summary>Log requests and errors to the console (the CLI); tests keep it quiet.</summary>
    public bool ConsoleLogging { get; init; }

    /// <summary>Throws <see cref="ArgumentException"/> naming the option that is out of range.</summary>
    public void Validate()
    {
        if (Port < 0 || Port > 65535) throw new ArgumentException($"--port must be in 0..65535, got {Port}");
        if (MaxRequestBodyBytes < 1024) throw new ArgumentException($"the request body limit must be at least 1024 bytes, got {MaxRequestBodyBytes}");
        if (ApiKey is { Length: 0 }) throw new ArgumentException("--api-key must not be empty");
        _ = ParseHost(Host);
        foreach (var h in AllowedHosts)
            if (h.Length == 0 || h.Any(c => char.IsWhiteSpace(c) || c is '/' or ',')) throw new ArgumentException($"--allowed-host must be a host name or address, got '{h}'");
        foreach (var o in CorsOrigins)
            if (o != "*" && !(Uri.TryCreate(o, UriKind.Absolute, out var u) && u.Scheme is "http" or "https" && u.PathAndQuery == "/"))
                throw new ArgumentException($"--cors-origin must be '*' or an origin like https://app.example:8080, got '{o}'");
    }

    /// <summary>The address to bind for a --host value.</summary>
    public static System.Net.IPAddress ParseHost(string host) =>
        host.Equals("localhost", StringComparison.OrdinalIgnoreCase) ? System.Net.IPAddress.Loopback
        : System.Net.IPAddress.TryParse(host.Trim('[', ']'), out var ip) ? ip
        : throw new ArgumentException($"--host must be an IP address (127.0.0.1, 0.0.0.0, ::1) or localhost, got '{host}'");
}
