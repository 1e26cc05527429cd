using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace LongCat.Server;

/// <summary>
/// The request body limit (<see cref="ServerOptions.MaxRequestBodyBytes"/>, 413 beyond), enforced so that the client
/// reads the 413. Kestrel's own limit answers 413 and closes the connection while the client is still sending, so a
/// client writing a large body often sees "broken pipe" instead of the answer. Here the body is counted as it is read;
/// past the limit the rest is read and discarded (up to <see cref="DrainBytes"/> and for at most
/// <see cref="DrainTime"/>, nginx's "lingering close") before the 413 is written. Kestrel's limit stays, at the drain
/// cap, as the hard stop: a body beyond it still gets the 413, with <c>Connection: close</c>.
/// </summary>
static class RequestBodyLimit
{
    public static readonly TimeSpan DrainTime = TimeSpan.FromSeconds(10);

    /// <summary>How much of an oversized body is read and thrown away so that the client gets to read the 413.</summary>
    public static long DrainBytes(ServerOptions options) => Math.Max(4 * options.MaxRequestBodyBytes, 16L << 20);

    public static ApiException TooLarge(long? limit) =>
        new(413, "the request body is too large" + (limit is { } l ? $": the limit is {l} bytes" : ""), code: "request_too_large");

    /// <summary>Counts the body: 413 (an <see cref="ApiException"/>) as soon as a Content-Length or the bytes read pass the limit.</summary>
    public static void Use(WebApplication app, ServerOptions options)
    {
        long limit = options.MaxRequestBodyBytes;
        app.Use(async (ctx, next) =>
        {
            if (ctx.Request.ContentLength > limit) throw TooLarge(limit);
            if (ctx.Request.ContentLength is null && HttpMethods.IsPost(ctx.Request.Method))
                ctx.Request.Body = new LimitedStream(ctx.Request.Body, limit);
            await next(ctx);
        });
    }

    /// <summary>
    /// Before a 413 is written: reads what is left of the body (the original stream, not the counting one) and discards
    /// it, so that the client finishes sending and reads the answer. Stops at the drain cap or after
    /// <see cref="DrainTime"/>; then the answer says <c>Connection: close</c>.
    /// </summary>
    public static async Task DrainAsync(HttpContext ctx)
    {
        var body = ctx.Request.Body is LimitedStream l ? l.Inner : ctx.Request.Body;
        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(64 * 1024);
        try
        {
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted);
            cts.CancelAfter(DrainTime);
            while (await body.ReadAsync(buffer, cts.Token) > 0) { }
        }
        catch (Exception e) when (e is BadHttpRequestException or OperationCanceledException or IOException)
        {
            ctx.Response.Headers.Connection = "close";
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>A read-only view of a body of unknown length that throws the 413 once more than the limit has been read.</summary>
    sealed class LimitedStream(Stream inner, long limit) : Stream
    {
        long _read;
        public Stream Inner => inner;
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => _read; set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override int Read(byte[] buffer, int offset, int count) => Count(inner.Read(buffer, offset, count));
        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken ct = default) => Count(await inner.ReadAsync(buffer, ct));
        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken ct) => ReadAsync(buffer.AsMemory(offset, count), ct).AsTask();

        int Count(int n)
        {
            _read += n;
            if (_read > limit) throw TooLarge(limit);
            return n;
        }
    }
}
