using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace LongCat.Server;

/// <summary>
/// Cross-origin access for the origins given with <c>--cors-origin</c> (none by default, so no other web page can
/// read this server's answers). A preflight (<c>OPTIONS</c> with <c>Access-Control-Request-Method</c>) from an
/// allowed origin gets 204 with the allowed methods and the requested headers; from any other origin, 403. Actual
/// requests from an allowed origin get <c>Access-Control-Allow-Origin</c>; "*" allows every origin.
/// </summary>
public static class Cors
{
    public static void Use(IApplicationBuilder app, ServerOptions options)
    {
        var origins = new HashSet<string>(options.CorsOrigins.Select(o => o.TrimEnd('/')), StringComparer.OrdinalIgnoreCase);
        bool any = origins.Contains("*");
        app.Use(async (ctx, next) =>
        {
            var req = ctx.Request;
            string origin = req.Headers.Origin.ToString();
            bool allowed = origin.Length > 0 && (any || origins.Contains(origin));
            if (HttpMethods.IsOptions(req.Method) && req.Headers.ContainsKey("Access-Control-Request-Method"))
            {
                if (!allowed)
                    throw new ApiException(403, origins.Count == 0
                        ? $"cross-origin requests are not allowed (origin '{origin}'): start the server with --cors-origin ORIGIN to allow one"
                        : $"origin '{origin}' is not allowed: this server allows {string.Join(", ", origins.Order(StringComparer.Ordinal))}", code: "cors_origin_not_allowed");
                var h = ctx.Response.Headers;
                h.AccessControlAllowOrigin = any ? "*" : origin;
                h.AccessControlAllowMethods = "GET, POST, OPTIONS";
                var asked = req.Headers.AccessControlRequestHeaders.ToString();
                h.AccessControlAllowHeaders = asked.Length > 0 ? asked : "Authorization, Content-Type";
                h.AccessControlMaxAge = "600";
                h.Vary = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";
                ctx.Response.StatusCode = StatusCodes.Status204NoContent;
                return;
            }
            if (allowed)
            {
                ctx.Response.Headers.AccessControlAllowOrigin = any ? "*" : origin;
                ctx.Response.Headers.AccessControlExposeHeaders = "Retry-After";
                ctx.Response.Headers.Vary = "Origin";
            }
            await next(ctx);
        });
    }
}
