using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace LongCat.Tests;

/// <summary>
/// Debian's Chromium, headless, driven over the Chrome DevTools Protocol (a WebSocket and JSON; no npm, no driver).
/// Started with the flags that work on a machine without network (docs: platform notes) and a fresh profile.
/// Throws when no Chromium is installed: a browser test must fail then, not skip.
/// </summary>
public sealed partial class HeadlessChromium : IAsyncDisposable
{
    readonly Process _process;
    readonly ClientWebSocket _ws = new();
    readonly string _profile;
    readonly ConcurrentDictionary<int, TaskCompletionSource<JsonElement>> _pending = new();
    readonly CancellationTokenSource _stop = new();
    Task? _receive;
    int _nextId;
    string? _session;

    HeadlessChromium(Process process, string profile)
    {
        _process = process;
        _profile = profile;
    }

    static readonly string[] Candidates = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"];
    static readonly Lazy<string> Executable = new(() => FindOrInstall(Candidates, CanInstallWithApt(), InstallWithApt));

    /// <summary>
    /// The executable: $LONGCAT_CHROMIUM, else Debian's /usr/bin/chromium (or chromium-browser, google-chrome); when
    /// none is there and this runs as root with apt-get (a fresh container), Debian's chromium is installed once, so
    /// the README's plain <c>dotnet test</c> works on a fresh machine. $LONGCAT_NO_BROWSER_INSTALL=1 turns that off.
    /// </summary>
    public static string FindExecutable() =>
        Environment.GetEnvironmentVariable("LONGCAT_CHROMIUM") is { Length: > 0 } env ? env : Executable.Value;

    /// <summary>The first existing candidate, else what <paramref name="install"/> provides; a clear error otherwise.</summary>
    internal static string FindOrInstall(IReadOnlyList<string> candidates, bool canInstall, Func<(bool Ok, string Log)> install)
    {
        if (candidates.FirstOrDefault(File.Exists) is { } found) return found;
        const string how = "install Debian's package (as root: apt-get install -y chromium), or set LONGCAT_CHROMIUM to a Chromium binary";
        if (!canInstall)
            throw new InvalidOperationException($"Chromium not found (looked for {string.Join(", ", candidates)}) and it cannot be installed here " +
                $"(that needs root and apt-get, and LONGCAT_NO_BROWSER_INSTALL unset): {how}");
        var (ok, log) = install();
        if (ok && candidates.FirstOrDefault(File.Exists) is { } installed) return installed;
        var tail = string.Join('\n', log.Split('\n').TakeLast(15));
        throw new InvalidOperationException($"Chromium not found and installing it failed ({(ok ? "no browser after the install" : "the install command failed")}): {how}\n{tail}");
    }

    static bool CanInstallWithApt() => DebianPackages.CanInstall("LONGCAT_NO_BROWSER_INSTALL");

    static (bool, string) InstallWithApt() => DebianPackages.Install("chromium");

    [GeneratedRegex(@"DevTools listening on (ws://\S+)")]
    private static partial Regex DevToolsUrl();

    public static async Task<HeadlessChromium> LaunchAsync(TimeSpan timeout)
    {
        var profile = Fixtures.NewTempDir();
        var psi = new ProcessStartInfo(FindExecutable()) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in new[]
                 {
                     "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--disable-extensions", "--mute-audio",
                     "--window-size=1200,800", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", $"--user-data-dir={profile}", "about:blank",
                 })
            psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        var c = new HeadlessChromium(p, profile);
        try
        {
            var url = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
            var log = new StringBuilder();
            // Keep reading both pipes for the browser's whole life, so it never blocks on a full pipe.
            p.ErrorDataReceived += (_, e) =>
            {
                if (e.Data is null) { url.TrySetException(new InvalidOperationException("Chromium exited: " + log)); return; }
                lock (log) if (log.Length < 8000) log.AppendLine(e.Data);
                if (DevToolsUrl().Match(e.Data) is { Success: true } m) url.TrySetResult(m.Groups[1].Value);
            };
            p.OutputDataReceived += (_, _) => { };
            p.BeginErrorReadLine();
            p.BeginOutputReadLine();
            var ws = await url.Task.WaitAsync(timeout);
            await c._ws.ConnectAsync(new Uri(ws), CancellationToken.None).WaitAsync(timeout);
            c._receive = Task.Run(c.ReceiveLoop);
            return c;
        }
        catch
        {
            await c.DisposeAsync();
            throw;
        }
    }

    async Task ReceiveLoop()
    {
        var buf = new byte[1 << 16];
        var msg = new MemoryStream();
        try
        {
            while (!_stop.IsCancellationRequested && _ws.State == WebSocketState.Open)
            {
                var r = await _ws.ReceiveAsync(buf, _stop.Token);
                if (r.MessageType == WebSocketMessageType.Close) break;
                msg.Write(buf, 0, r.Count);
                if (!r.EndOfMessage) continue;
                using var doc = JsonDocument.Parse(msg.ToArray());
                msg.SetLength(0);
                var root = doc.RootElement;
                if (root.TryGetProperty("id", out var id) && _pending.TryRemove(id.GetInt32(), out var tcs))
                {
                    if (root.TryGetProperty("error", out var err)) tcs.TrySetException(new InvalidOperationException("CDP: " + err.GetRawText()));
                    else tcs.TrySetResult(root.GetProperty("result").Clone());
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or WebSocketException) { }
        foreach (var t in _pending.Values) t.TrySetException(new InvalidOperationException("the DevTools connection closed"));
    }

    /// <summary>Sends one CDP command (to the attached page unless <paramref name="browser"/>) and waits for its result.</summary>
    public async Task<JsonElement> Send(string method, object? parameters = null, bool browser = false)
    {
        int id = Interlocked.Increment(ref _nextId);
        var tcs = new TaskCompletionSource<JsonElement>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[id] = tcs;
        var msg = new Dictionary<string, object?> { ["id"] = id, ["method"] = method, ["params"] = parameters ?? new { } };
        if (!browser && _session is not null) msg["sessionId"] = _session;
        var bytes = JsonSerializer.SerializeToUtf8Bytes(msg);
        lock (_ws) _ws.SendAsync(bytes, WebSocketMessageType.Text, true, CancellationToken.None).GetAwaiter().GetResult();
        return await tcs.Task.WaitAsync(TimeSpan.FromSeconds(30));
    }

    /// <summary>Opens a tab on <paramref name="url"/> and makes it the target of later commands.</summary>
    public async Task OpenAsync(string url)
    {
        var target = await Send("Target.createTarget", new { url }, browser: true);
        var attached = await Send("Target.attachToTarget", new { targetId = target.GetProperty("targetId").GetString(), flatten = true }, browser: true);
        _session = attached.GetProperty("sessionId").GetString();
    }

    /// <summary>Evaluates JavaScript in the page and returns its (JSON) value.</summary>
    public async Task<JsonElement> EvalAsync(string expression)
    {
        var r = await Send("Runtime.evaluate", new { expression, returnByValue = true, awaitPromise = true });
        if (r.TryGetProperty("exceptionDetails", out var ex)) throw new InvalidOperationException("page script failed: " + ex.GetRawText());
        return r.GetProperty("result").TryGetProperty("value", out var v) ? v.Clone() : default;
    }

    /// <summary>Types text into the focused element, as a keyboard would.</summary>
    public Task TypeAsync(string text) => Send("Input.insertText", new { text });

    /// <summary>Presses and releases a key (e.g. Enter: "Enter", 13).</summary>
    public async Task PressAsync(string key, int keyCode)
    {
        await Send("Input.dispatchKeyEvent", new { type = "rawKeyDown", key, code = key, windowsVirtualKeyCode = keyCode, nativeVirtualKeyCode = keyCode });
        await Send("Input.dispatchKeyEvent", new { type = "keyUp", key, code = key, windowsVirtualKeyCode = keyCode, nativeVirtualKeyCode = keyCode });
    }

    /// <summary>Clicks the centre of the element <paramref name="selector"/> matches, with the mouse.</summary>
    public async Task ClickAsync(string selector)
    {
        var box = await EvalAsync($"(() => {{ const r = document.querySelector({JsonSerializer.Serialize(selector)}).getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()");
        double x = box[0].GetDouble(), y = box[1].GetDouble();
        await Send("Input.dispatchMouseEvent", new { type = "mousePressed", x, y, button = "left", clickCount = 1 });
        await Send("Input.dispatchMouseEvent", new { type = "mouseReleased", x, y, button = "left", clickCount = 1 });
    }

    /// <summary>A PNG of the page.</summary>
    public async Task<byte[]> ScreenshotAsync() => Convert.FromBase64String((await Send("Page.captureScreenshot", new { format = "png" })).GetProperty("data").GetString()!);

    public async ValueTask DisposeAsync()
    {
        try { if (_ws.State == WebSocketState.Open) await Send("Browser.close", browser: true).WaitAsync(TimeSpan.FromSeconds(5)); } catch (Exception) { }
        _stop.Cancel();
        try { if (_receive is not null) await _receive.WaitAsync(TimeSpan.FromSeconds(5)); } catch (Exception) { }
        try { if (!_process.WaitForExit(5000)) _process.Kill(entireProcessTree: true); } catch (Exception) { }
        _process.Dispose();
        _ws.Dispose();
        try { Directory.Delete(_profile, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
