using System.Text.Json;
using Xunit.Abstractions;

namespace LongCat.Tests;

/// <summary>
/// The chat page end to end in headless Chromium: type a message, see the reply stream in, read the per-reply
/// stats, stop a reply with the Stop button (its sequence leaves the batch and frees its KV cache).
/// </summary>
public class ServerBrowserTests(ServerFixture f, ITestOutputHelper output) : IClassFixture<ServerFixture>
{
    const string LastReply = "(() => { const m = [...document.querySelectorAll('.msg.assistant')].pop(); " +
        "return m ? { text: m.querySelector('.text').textContent, stats: m.querySelector('.stats').textContent, error: m.classList.contains('error') } : null; })()";

    [Fact]
    public async Task TypeAMessageAndWatchTheReplyStream()
    {
        await using var browser = await HeadlessChromium.LaunchAsync(TimeSpan.FromSeconds(60));
        await browser.OpenAsync(f.Server.BaseAddress.ToString());
        Assert.True(await Poll(async () => (await browser.EvalAsync("document.getElementById('model')?.textContent ?? ''")).GetString()!.StartsWith("model longcat-test", StringComparison.Ordinal), 30),
            "the page did not list the model");

        // Settings: enough tokens that the reply takes many SSE chunks.
        await browser.EvalAsync("document.getElementById('max_tokens').value = '300'; document.getElementById('temperature').value = '0.8'; document.getElementById('seed').value = '7'; true");
        await browser.EvalAsync("document.getElementById('input').focus()");
        const string message = "Hello LongCat, tell me a story about a cat.";
        await browser.TypeAsync(message);
        await browser.PressAsync("Enter", 13);

        // Watch the reply grow: several different partial lengths before the stats line says it is done.
        var partial = new HashSet<int>();
        JsonElement reply = default;
        var end = DateTime.UtcNow.AddSeconds(90);
        while (DateTime.UtcNow < end)
        {
            reply = await browser.EvalAsync(LastReply);
            if (reply.ValueKind == JsonValueKind.Object)
            {
                Assert.False(reply.GetProperty("error").GetBoolean(), reply.GetProperty("text").GetString());
                if (reply.GetProperty("stats").GetString()!.Length > 0) break;
                int len = reply.GetProperty("text").GetString()!.Length;
                if (len > 0) partial.Add(len);
            }
            await Task.Delay(10);
        }
        var stats = reply.GetProperty("stats").GetString()!;
        output.WriteLine($"partial lengths seen: {partial.Count}; stats: {stats}");
        Assert.True(partial.Count >= 2, $"saw {partial.Count} partial states of the reply: it did not stream");
        Assert.True(reply.GetProperty("text").GetString()!.Length > 0);
        Assert.Contains("tok/s", stats);
        Assert.Contains("experts/token", stats);
        Assert.Matches(@"^\d+ tokens · ", stats);
        Assert.Equal(message, (await browser.EvalAsync("document.querySelector('.msg.user .text').textContent")).GetString());

        var png = await browser.ScreenshotAsync();
        var shot = Path.Combine(Path.GetTempPath(), "longcat-tests", "chat-page.png");
        await File.WriteAllBytesAsync(shot, png);
        output.WriteLine("screenshot: " + shot);
        Assert.True(png.Length > 1000);

        // Stop: a long reply, stopped with the button once text shows.
        await browser.EvalAsync("document.getElementById('max_tokens').value = '500'; document.getElementById('input').focus()");
        await browser.TypeAsync("Now a very long story, please.");
        await browser.ClickAsync("#send");
        Assert.True(await Poll(async () => (await browser.EvalAsync(LastReply)).GetProperty("text").GetString()!.Length > 0 && (await browser.EvalAsync(LastReply)).GetProperty("stats").GetString()!.Length == 0, 60),
            "the second reply did not start");
        await browser.ClickAsync("#stop");
        Assert.True(await Poll(async () => (await browser.EvalAsync(LastReply)).GetProperty("stats").GetString()!.StartsWith("stopped", StringComparison.Ordinal), 30),
            "the Stop button did not stop the reply: " + (await browser.EvalAsync(LastReply)).GetRawText());
        Assert.True(await ServerTestSupport.WaitUntil(() => f.Served.Scheduler.Stats().Running == 0 && f.Served.Scheduler.Pool.RentedBytes == 0, 30));
        Assert.True(f.Served.Scheduler.Stats().Cancelled >= 1);
        Assert.False((await browser.EvalAsync("document.getElementById('send').disabled")).GetBoolean());
        var stopped = (await browser.EvalAsync(LastReply)).GetProperty("stats").GetString()!;
        Assert.Single(System.Text.RegularExpressions.Regex.Matches(stopped, "stopped"));

        // Enter while an input method is composing confirms the composition; it must not send.
        int before = (await browser.EvalAsync("document.querySelectorAll('.msg').length")).GetInt32();
        await browser.EvalAsync("const i = document.getElementById('input'); i.value = 'ni hao'; " +
            "i.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', keyCode: 229, isComposing: true, bubbles: true, cancelable: true })); true");
        await Task.Delay(300);
        Assert.Equal(before, (await browser.EvalAsync("document.querySelectorAll('.msg').length")).GetInt32());
        Assert.Equal("ni hao", (await browser.EvalAsync("document.getElementById('input').value")).GetString());

        // "New chat" while a reply streams, then a message: the new chat has just that exchange, and it works.
        await browser.EvalAsync("document.getElementById('input').value = 'Another long story.'; true");
        await browser.ClickAsync("#send");
        Assert.True(await Poll(async () => (await browser.EvalAsync(LastReply)).GetProperty("text").GetString()!.Length > 0, 60), "the third reply did not start");
        await browser.ClickAsync("#clear");
        Assert.True(await Poll(async () => !(await browser.EvalAsync("document.getElementById('send').disabled")).GetBoolean(), 30));
        await browser.EvalAsync("document.getElementById('max_tokens').value = '5'; document.getElementById('input').value = 'Hi again'; true");
        await browser.ClickAsync("#send");
        Assert.True(await Poll(async () => (await browser.EvalAsync(LastReply)) is { ValueKind: JsonValueKind.Object } r && r.GetProperty("stats").GetString()!.Length > 0, 60),
            "the reply after New chat did not finish");
        var fresh = await browser.EvalAsync(LastReply);
        Assert.False(fresh.GetProperty("error").GetBoolean(), fresh.GetProperty("text").GetString());
        Assert.Equal(2, (await browser.EvalAsync("document.querySelectorAll('.msg').length")).GetInt32());
        // The page's conversation (the script's top-level `history`) holds only the new exchange.
        Assert.Equal("user,assistant", (await browser.EvalAsync("history.map(m => m.role).join(',')")).GetString());
        Assert.Equal("Hi again", (await browser.EvalAsync("history[0].content")).GetString());
    }

    static async Task<bool> Poll(Func<Task<bool>> condition, double seconds)
    {
        var end = DateTime.UtcNow.AddSeconds(seconds);
        while (DateTime.UtcNow < end)
        {
            if (await condition()) return true;
            await Task.Delay(20);
        }
        return await condition();
    }
}
