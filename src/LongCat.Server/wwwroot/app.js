// LongCat chat page: talks to this server's /v1/chat/completions with stream: true and renders the SSE chunks
// as they arrive. No libraries, no CDN: everything here is served by the server itself.
"use strict";

const $ = (id) => document.getElementById(id);
const history = [];          // {role, content} of the conversation so far
let controller = null;       // AbortController of the reply in flight
let modelId = null;
let chatEpoch = 0;           // bumped by "New chat": a reply of an older chat must not touch the new history

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api_key").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

function addMessage(role, text) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  div.appendChild(body);
  $("messages").appendChild(div);
  $("messages").scrollTop = $("messages").scrollHeight;
  return div;
}

function numberOrNull(id) {
  const v = $(id).value.trim();
  return v === "" ? null : Number(v);
}

function settings() {
  const body = {
    temperature: numberOrNull("temperature"),
    top_p: numberOrNull("top_p"),
    top_k: numberOrNull("top_k"),
    max_tokens: numberOrNull("max_tokens"),
    seed: numberOrNull("seed"),
    frequency_penalty: numberOrNull("frequency_penalty"),
    presence_penalty: numberOrNull("presence_penalty"),
  };
  const stops = $("stop_strings").value.split(",").map((s) => s.trim()).filter((s) => s.length > 0);
  if (stops.length > 0) body.stop = stops;
  if ($("speculative").checked) body.speculative = true;
  for (const k of Object.keys(body)) if (body[k] === null) delete body[k];
  return body;
}

function setBusy(busy) {
  $("send").disabled = busy;
  $("stop").disabled = !busy;
}

async function loadModel() {
  try {
    const r = await fetch("/v1/models", { headers: headers() });
    const j = await r.json();
    if (!r.ok) throw new Error(j.error ? j.error.message : r.statusText);
    const m = j.data[0];
    modelId = m.id;
    $("model").textContent = `model ${m.id} · context ${m.context_length} tokens` + (m.speculative ? " · MTP head" : "");
    $("speculative").disabled = !m.speculative;
  } catch (e) {
    $("model").textContent = "cannot list models: " + e.message;
  }
}

async function send(text) {
  const epoch = chatEpoch;
  history.push({ role: "user", content: text });
  addMessage("user", text);
  const div = addMessage("assistant", "");
  const out = div.querySelector(".text");
  const stats = document.createElement("span");
  stats.className = "stats";
  div.appendChild(stats);

  const messages = [];
  const system = $("system").value.trim();
  if (system) messages.push({ role: "system", content: system });
  messages.push(...history);
  const body = Object.assign({ model: modelId || undefined, messages, stream: true, stream_options: { include_usage: true } }, settings());

  controller = new AbortController();
  setBusy(true);
  const started = performance.now();
  let firstToken = null, reply = "", usage = null, extra = null, finish = null;
  try {
    const r = await fetch("/v1/chat/completions", { method: "POST", headers: headers(), body: JSON.stringify(body), signal: controller.signal });
    if (!r.ok) {
      let msg = r.status + " " + r.statusText;
      try { const j = await r.json(); if (j.error) msg = j.error.message; } catch (_) { /* not JSON */ }
      throw new Error(msg);
    }
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data: ")) continue;
          const data = line.slice(6);
          if (data === "[DONE]") continue;
          const chunk = JSON.parse(data);
          if (chunk.error) throw new Error(chunk.error.message);
          if (chunk.usage) usage = chunk.usage;
          if (chunk.longcat) extra = chunk.longcat;
          for (const c of chunk.choices || []) {
            if (c.delta && c.delta.content) {
              if (firstToken === null) firstToken = performance.now();
              reply += c.delta.content;
              out.textContent = reply;
              $("messages").scrollTop = $("messages").scrollHeight;
            }
            if (c.finish_reason) finish = c.finish_reason;
          }
        }
      }
    }
    if (epoch === chatEpoch) history.push({ role: "assistant", content: reply });
    stats.textContent = describe(usage, extra, finish, started, firstToken);
  } catch (e) {
    if (epoch !== chatEpoch) {
      // "New chat" aborted this reply: its conversation is gone, leave the new one alone.
    } else if (e.name === "AbortError") {
      history.push({ role: "assistant", content: reply });
      const rest = describe(usage, extra, null, started, firstToken);
      stats.textContent = rest ? "stopped · " + rest : "stopped";
    } else {
      div.classList.add("error");
      out.textContent = (reply ? reply + "\n" : "") + "error: " + e.message;
      history.pop();
    }
  } finally {
    controller = null;
    setBusy(false);
    $("input").focus();
  }
}

function describe(usage, extra, finish, started, firstToken) {
  const parts = [];
  const secs = (performance.now() - started) / 1000;
  if (usage) parts.push(`${usage.completion_tokens} tokens`);
  if (extra && extra.decode_tokens_per_second !== undefined) parts.push(`${extra.decode_tokens_per_second.toFixed(1)} tok/s`);
  else if (usage && secs > 0) parts.push(`${(usage.completion_tokens / secs).toFixed(1)} tok/s`);
  if (extra && extra.real_experts_per_token !== undefined) parts.push(`${extra.real_experts_per_token.toFixed(2)} experts/token`);
  if (extra && extra.mtp_acceptance !== null && extra.mtp_acceptance !== undefined) parts.push(`MTP acceptance ${(100 * extra.mtp_acceptance).toFixed(0)}%`);
  if (firstToken !== null) parts.push(`first token ${((firstToken - started) / 1000).toFixed(2)} s`);
  if (finish) parts.push(finish);
  return parts.join(" · ");
}

$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("input").value.trim();
  if (!text || controller) return;
  $("input").value = "";
  send(text);
});
$("input").addEventListener("keydown", (e) => {
  // Enter while an input method is composing (Chinese, Japanese...) confirms the composition: it must not send.
  if (e.isComposing || e.keyCode === 229) return;
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("composer").requestSubmit(); }
});
$("stop").addEventListener("click", () => { if (controller) controller.abort(); });
$("clear").addEventListener("click", () => {
  chatEpoch++;
  if (controller) controller.abort();
  history.length = 0;
  $("messages").textContent = "";
});
$("api_key").addEventListener("change", loadModel);
loadModel();
