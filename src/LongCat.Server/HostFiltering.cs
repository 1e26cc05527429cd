using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace LongCat.Server;

/// <summary>
/// Refuses requests whose <c>Host</c> header names a host this server does not answer for (DNS rebinding: a web page
/// on evil.example whose name later resolves to 127.0.0.1 would otherwise reach a keyless local server). Bound to a
/// loopback address, only <c>localhost</c>, <c>127.0.0.1</c> and <c>[::1]</c> (any port) plus the
/// <see cref="ServerOptions.AllowedHosts"/> are accepted; bound to another address, only the allowed hosts when any
/// are given, else every host (the API key is then the guard). A refused request is 421 Misdirected Request.
/// </summary>
public static class HostFiltering
{
    static readonly string[] Loopback = ["localhost", "127.0.0.1", "[::1]"];

    /// <summary>The accepted host names for these options, or null when every host is accepted.</summary>
    public static HashSet<string>? AcceptedHosts(ServerOptions options)
    {
        bool loopback = System.Net.IPAddress.IsLoopback(ServerOptions.ParseHost(options.Host));
        if (!loopback && options.AllowedHosts.Count == 0) return null;
        var set = new HashSet<string>(options.AllowedHosts.Select(Normalize), StringComparer.OrdinalIgnoreCase);
        if (loopback) set.UnionWith(Loopback);
        return set;
    }

    /// <summary>The host part of a Host header value, without the port; IPv6 keeps its brackets. Null when malformed.</summary>
    public static string? HostPart(string header)
    {
        if (header.Length == 0) return null;
        if (header[0] == '[')
        {
            int close = header.IndexOf(']');
            if (close < 0) return null;
            var rest = header[(close + 1)..];
            return rest.Length == 0 || (rest[0] == ':' && IsPort(rest[1..])) ? header[..(close + 1)] : null;
        }
        int colon = header.IndexOf(':');
        if (colon < 0) return header;
        return IsPort(header[(colon + 1)..]) ? header[..colon] : null;
    }

    static bool IsPort(string s) => s.Length is > 0 and <= 5 && s.All(char.IsAsciiDigit);

    /// <summary>An --allowed-host value as compared: "::1" and "[::1]" are the same, a port is dropped.</summary>
    static string Normalize(string host) =>
        System.Net.IPAddress.TryParse(host, out var ip) && ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? "[" + host + "]"
        : HostPart(host) ?? host;

    public static void Use(IApplicationBuilder app, ServerOptions options)
    {
        var accepted = AcceptedHosts(options);
        if (accepted is null) return;
        app.Use(async (ctx, next) =>
        {
            var header = ctx.Request.Headers.Host.ToString();
            var host = HostPart(header);
            if (host is null || !accepted.Contains(host))
                throw new ApiException(421, $"Host '{header}' is not served here: this server answers to {string.Join(", ", accepted.Order(StringComparer.Ordinal))} " +
                    "(start it with --allowed-host NAME to add a name)", code: "host_not_allowed");
            await next(ctx);
        });
    }
}
