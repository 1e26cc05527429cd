namespace LongCat.Tests;

/// <summary>
/// How the browser test finds Chromium on a fresh machine (issue 12 item 9): the first installed candidate, else
/// an install (Debian's apt-get as root), else an error that says what to do. Exercised with stand-in paths and a
/// stand-in installer, so no package is touched.
/// </summary>
public class BrowserSetupTests
{
    [Fact]
    public void FindsInstallsOrExplains()
    {
        var dir = Fixtures.NewTempDir();
        string a = Path.Combine(dir, "chromium"), b = Path.Combine(dir, "google-chrome");
        string[] candidates = [a, b];

        // Nothing installed, no way to install: a message naming the fix, and the installer is never run.
        var e = Assert.Throws<InvalidOperationException>(() => HeadlessChromium.FindOrInstall(candidates, false, () => throw new Exception("must not run")));
        Assert.Contains("apt-get install -y chromium", e.Message);
        Assert.Contains("LONGCAT_CHROMIUM", e.Message);

        // A failing install: the message carries the installer's last lines.
        e = Assert.Throws<InvalidOperationException>(() => HeadlessChromium.FindOrInstall(candidates, true, () => (false, "E: Unable to locate package chromium")));
        Assert.Contains("Unable to locate package", e.Message);

        // An install that succeeds: the installed binary is found.
        int runs = 0;
        Assert.Equal(b, HeadlessChromium.FindOrInstall(candidates, true, () => { runs++; File.WriteAllText(b, ""); return (true, "ok"); }));
        Assert.Equal(1, runs);

        // Already there: no install, the first candidate wins.
        File.WriteAllText(a, "");
        Assert.Equal(a, HeadlessChromium.FindOrInstall(candidates, true, () => throw new Exception("must not run")));
    }
}
