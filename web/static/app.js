// The page: video input and player, model picker and settings, the streamed chat thread, the timeline.
import { ApiError, apiKey, getJSON, playableURL, postJSON, streamChat, uploadFile } from "./api.js";
import { renderTimeline, segmentButton, seconds } from "./timeline.js";

const $ = (id) => document.getElementById(id);
const ui = {
  urlForm: $("url-form"), url: $("video-url"), file: $("video-file"), videoStatus: $("video-status"),
  videoError: $("video-error"), playerBox: $("player-box"), player: $("player"), caption: $("video-caption"),
  timeline: $("timeline"), rows: $("timeline-rows"), loadURL: $("load-url"), factsBox: $("facts-box"), facts: $("facts"),
  settings: $("settings"), settingsSummary: $("settings-summary"), model: $("model"), reloadModels: $("reload-models"), temperature: $("temperature"),
  topP: $("top-p"), maxTokens: $("max-tokens"), iterations: $("iterations"), merge: $("merge"), key: $("api-key"),
  forgetKey: $("forget-key"), keyHint: $("key-hint"), chatError: $("chat-error"), thread: $("thread"),
  askForm: $("ask-form"), question: $("question"), ask: $("ask"), stop: $("stop"), newChat: $("new-chat"),
  overlay: $("drop-overlay"),
};

const state = {
  video: null, // {id, facts, content_url, part, label}
  history: [], // the conversation as sent to the gateway
  sentVideo: null, // the video id the conversation already carries
  controller: null,
  moveHeads: () => {},
  playerURL: null,
};

function el(tag, props = {}, children = []) {
  const node = Object.assign(document.createElement(tag), props);
  for (const child of [].concat(children)) node.append(child);
  return node;
}

function show(node, message) {
  node.textContent = message || "";
  node.hidden = !message;
}

/** Readable text for any failure; a 401 also opens the settings at the API-key field. */
function describe(err) {
  if (err instanceof ApiError && err.status === 401) {
    ui.settings.open = true;
    ui.key.focus();
    ui.keyHint.textContent = "This gateway needs an API key: enter it here, then try again.";
    ui.keyHint.classList.add("warn");
  }
  if (err instanceof ApiError) return err.message;
  return `Something went wrong: ${err.message || err}`;
}

// ---- models and settings ------------------------------------------------------------------------------------

function groupOf(model) {
  if (model.owned_by === "google" || model.id === "gemini") return "Gemini alone";
  if (model.id.endsWith("+gemini")) return "Merged with Gemini";
  return model.parent ? "Adapters" : "Base model";
}

async function loadModels() {
  const previous = ui.model.value;
  try {
    const { data } = await getJSON("/v1/models");
    const groups = new Map();
    for (const model of data) {
      const group = groupOf(model);
      if (!groups.has(group)) groups.set(group, el("optgroup", { label: group }));
      groups.get(group).append(el("option", { value: model.id, textContent: model.id }));
    }
    const order = ["Base model", "Adapters", "Merged with Gemini", "Gemini alone"];
    ui.model.replaceChildren(...order.filter((g) => groups.has(g)).map((g) => groups.get(g)));
    if (data.some((m) => m.id === previous)) ui.model.value = previous;
    show(ui.chatError, data.length ? "" : "The gateway lists no models.");
  } catch (err) {
    ui.model.replaceChildren(el("option", { value: "", textContent: "(no models: see the message)" }));
    show(ui.chatError, `Could not list the models: ${describe(err)}`);
  }
  syncMerge();
}

function syncMerge() {
  const merged = ui.model.value.endsWith("+gemini");
  ui.merge.disabled = !merged;
  ui.merge.closest(".field").classList.toggle("off", !merged);
  summarizeSettings();
}

/** The closed settings panel still says what is set. */
function summarizeSettings() {
  const parts = [
    ["temperature", ui.temperature.value], ["top-p", ui.topP.value], ["max tokens", ui.maxTokens.value],
    ["rounds", ui.iterations.value], ["merge", ui.merge.disabled ? "" : ui.merge.value],
  ].filter(([, value]) => value.trim() !== "").map(([name, value]) => `${name} ${value}`);
  if (apiKey.get()) parts.push("API key set");
  ui.settingsSummary.textContent = parts.length ? `(${parts.join(", ")})` : "(gateway defaults)";
}

// Empty: the gateway's default. Out-of-range values are sent as typed, so the gateway's message explains them.
const numberOf = (input) => {
  const value = Number(input.value.trim() || NaN);
  return Number.isFinite(value) ? value : undefined;
};

// ---- video input --------------------------------------------------------------------------------------------

async function withVideoWork(message, work) {
  show(ui.videoError, "");
  ui.videoStatus.textContent = message;
  document.body.classList.add("busy-video");
  ui.loadURL.disabled = ui.file.disabled = true;
  try {
    await work();
    ui.videoStatus.textContent = "";
  } catch (err) {
    ui.videoStatus.textContent = "";
    show(ui.videoError, `Could not use this video: ${describe(err)}`);
  } finally {
    document.body.classList.remove("busy-video");
    ui.loadURL.disabled = ui.file.disabled = false;
  }
}

async function useVideo(video, part, label) {
  state.video = { ...video, part, label };
  if (state.playerURL?.startsWith("blob:")) URL.revokeObjectURL(state.playerURL);
  state.playerURL = await playableURL(video.content_url);
  ui.player.src = state.playerURL;
  ui.playerBox.hidden = false;
  ui.caption.textContent = label;
  renderFacts(video.facts);
  ui.timeline.hidden = true;
  ui.rows.replaceChildren();
  ui.videoStatus.textContent = "";
}

function loadURL(url) {
  url = url.trim();
  if (!url) {
    show(ui.videoError, "Enter a video URL first.");
    ui.url.focus();
    return Promise.resolve();
  }
  return withVideoWork("Fetching and checking the video…", async () => {
    const video = await postJSON("/v1/videos", { url });
    await useVideo(video, { type: "video_url", video_url: { url } }, url);
  });
}

function loadFile(file) {
  const size = file.size > 1e6 ? `${(file.size / 1e6).toFixed(1)} MB` : `${Math.ceil(file.size / 1e3)} kB`;
  return withVideoWork(`Uploading ${file.name} (${size}) and checking it…`, async () => {
    const record = await uploadFile(file);
    const video = await postJSON("/v1/videos", { file_id: record.id });
    await useVideo(video, { type: "file", file: { file_id: record.id } }, `${file.name} (uploaded as ${record.id})`);
  });
}

function renderFacts(facts) {
  const kb = facts.bytes > 1e6 ? `${(facts.bytes / 1e6).toFixed(1)} MB` : `${Math.ceil(facts.bytes / 1e3)} kB`;
  const rows = [
    ["Duration", seconds(facts.duration_s)],
    ["Size", `${facts.width}×${facts.height}`],
    ["Frame rate", `${Number(facts.fps).toFixed(facts.fps % 1 ? 2 : 0)} fps`],
    ["Video codec", facts.codec],
    ["Audio", facts.has_audio ? facts.audio_codec || "yes" : "none"],
    ["File", kb],
    ["Source", facts.source_host ? `${facts.source} (${facts.source_host})` : facts.source],
  ];
  ui.facts.replaceChildren(...rows.map(([k, v]) => el("div", {}, [el("dt", { textContent: k }), el("dd", { textContent: v })])));
  ui.factsBox.hidden = false;
}

// ---- chat ---------------------------------------------------------------------------------------------------

/** Minimal, safe rendering of the answer: text with **bold** (merged answers label their parts that way). */
function renderText(node, text) {
  node.replaceChildren(...text.split(/\*\*(.+?)\*\*/s).map((part, i) => (i % 2 ? el("strong", { textContent: part }) : part)));
}

/** Keeps the newest message in view (where the thread scrolls by itself), unless the reader scrolled up. */
let following = true;
function scrollThread(force = false) {
  if (force) following = true;
  if (following) ui.thread.scrollTop = ui.thread.scrollHeight;
}

function addUserMessage(text, videoLabel) {
  const item = el("li", { className: "msg user" }, [el("p", { className: "who", textContent: "You" })]);
  if (videoLabel) item.append(el("p", { className: "attached", textContent: `Video: ${videoLabel}` }));
  item.append(el("p", { className: "text", textContent: text }));
  ui.thread.append(item);
}

function addAssistantMessage(model) {
  const who = el("p", { className: "who" }, [el("span", { textContent: "vChat " }), el("span", { className: "model", textContent: model })]);
  const summary = el("summary", { textContent: "Thinking" });
  const rounds = el("div", { className: "rounds" });
  const thinking = el("details", { className: "thinking", hidden: true }, [summary, rounds]);
  const content = el("div", { className: "text content" });
  const meta = el("div", { className: "meta" });
  const error = el("p", { className: "error", hidden: true });
  error.setAttribute("role", "alert");
  const item = el("li", { className: "msg assistant" }, [who, thinking, content, meta, error]);
  item.dataset.state = "streaming";
  item.setAttribute("aria-busy", "true");
  ui.thread.append(item);
  scrollThread(true);
  return { item, who, summary, rounds, thinking, content, meta, error, current: null };
}

/** Reasoning deltas: each round starts with "Round N/M:", and gets a block of its own. */
function addReasoning(view, text) {
  view.thinking.hidden = false;
  const match = /^Round (\d+)\/(\d+)/.exec(text);
  if (match || !view.current) {
    const title = match ? `Round ${match[1]} of ${match[2]}` : "Notes";
    view.current = el("pre", { className: "round-text" });
    view.rounds.append(el("section", { className: "round" }, [el("h4", { textContent: title }), view.current]));
    view.summary.textContent = `Thinking (${title.toLowerCase()})`;
  }
  view.current.textContent += text;
}

function finishMeta(view, perception, usage) {
  const parts = [];
  if (perception) {
    const rounds = perception.rounds?.length || 0;
    view.summary.textContent = `Thinking (${rounds} round${rounds === 1 ? "" : "s"})`;
    if (perception.segments?.length) {
      const box = el("p", { className: "segments" }, [el("span", { textContent: "Grounded in: " })]);
      for (const segment of perception.segments) box.append(segmentButton(ui.player, segment, "Answer", "seg final chip"));
      view.meta.append(box);
    }
    if (perception.sources?.length) parts.push(`answered by ${perception.sources.join(" + ")}`);
    for (const warning of perception.warnings || []) view.meta.append(el("p", { className: "warn", textContent: warning }));
  } else if (view.plain && view.item.dataset.state === "done") {
    parts.push("plain chat, no video");
  }
  if (usage) parts.push(`${usage.total_tokens} tokens (${usage.prompt_tokens} in, ${usage.completion_tokens} out)`);
  if (parts.length) view.meta.append(el("p", { className: "usage", textContent: parts.join(" · ") }));
}

function showTimeline(perception) {
  if (!perception?.rounds?.length) return;
  ui.timeline.hidden = false;
  state.moveHeads = renderTimeline(ui.rows, ui.player, perception);
}

function requestBody(messages) {
  const body = {
    model: ui.model.value, messages, stream: true, stream_options: { include_usage: true },
    temperature: numberOf(ui.temperature), top_p: numberOf(ui.topP), max_tokens: numberOf(ui.maxTokens),
  };
  const vchat = { iterations: numberOf(ui.iterations) };
  if (!ui.merge.disabled && ui.merge.value) vchat.merge = ui.merge.value;
  body.vchat = vchat;
  return JSON.parse(JSON.stringify(body)); // drops the settings left empty (undefined)
}

function setBusy(busy) {
  ui.ask.disabled = busy;
  ui.stop.disabled = !busy;
  ui.askForm.setAttribute("aria-busy", String(busy));
}

async function ask(question) {
  show(ui.chatError, "");
  if (!ui.model.value) {
    show(ui.chatError, "No model to ask: the model list did not load.");
    return;
  }
  // The video travels with the first question about it; follow-ups send the history, which already carries it
  // (the gateway resolves the same URL or file id from its cache).
  const attach = state.video && state.sentVideo !== state.video.id ? state.video : null;
  const content = attach ? [attach.part, { type: "text", text: question }] : question;
  const userMessage = { role: "user", content };
  ui.settings.open = false; // the summary line keeps showing what is set; the thread gets the room
  addUserMessage(question, attach?.label);
  const view = addAssistantMessage(ui.model.value);
  // No video loaded and none in the conversation: the question goes to the model as plain text.
  view.plain = !state.video && !state.sentVideo;
  const controller = (state.controller = new AbortController());
  setBusy(true);
  let answer = "";
  let perception = null;
  let usage = null;
  try {
    for await (const chunk of streamChat(requestBody([...state.history, userMessage]), controller.signal)) {
      if (chunk.model) view.who.querySelector(".model").textContent = chunk.model;
      if (chunk.usage) usage = chunk.usage;
      if (chunk.perception) perception = chunk.perception;
      const delta = chunk.choices?.[0]?.delta || {};
      if (delta.reasoning_content) addReasoning(view, delta.reasoning_content);
      if (delta.content) {
        answer += delta.content;
        renderText(view.content, answer);
      }
      scrollThread();
    }
    if (!answer.trim()) view.content.append(el("em", { textContent: "(empty answer)" }));
    state.history.push(userMessage, { role: "assistant", content: answer.trim() });
    if (attach) state.sentVideo = attach.id;
    view.item.dataset.state = "done";
    if (perception) showTimeline(perception);
  } catch (err) {
    const aborted = err.name === "AbortError";
    show(view.error, aborted ? "Stopped." : describe(err));
    view.item.dataset.state = aborted ? "stopped" : "error";
  } finally {
    finishMeta(view, perception, usage);
    scrollThread();
    view.item.removeAttribute("aria-busy");
    state.controller = null;
    setBusy(false);
  }
}

// ---- wiring -------------------------------------------------------------------------------------------------

ui.urlForm.addEventListener("submit", (event) => {
  event.preventDefault();
  loadURL(ui.url.value);
});
ui.file.addEventListener("change", () => {
  if (ui.file.files[0]) loadFile(ui.file.files[0]).finally(() => (ui.file.value = ""));
});
ui.model.addEventListener("change", syncMerge);
for (const input of [ui.temperature, ui.topP, ui.maxTokens, ui.iterations, ui.merge]) {
  input.addEventListener("input", summarizeSettings);
}
ui.thread.addEventListener("scroll", () => {
  following = ui.thread.scrollHeight - ui.thread.scrollTop - ui.thread.clientHeight < 40;
});
ui.reloadModels.addEventListener("click", loadModels);
ui.key.value = apiKey.get();
ui.key.addEventListener("change", () => {
  apiKey.set(ui.key.value.trim());
  ui.keyHint.classList.remove("warn");
  ui.keyHint.textContent = "Saved in this browser; sent as “Authorization: Bearer”.";
  summarizeSettings();
  loadModels();
});
ui.forgetKey.addEventListener("click", () => {
  ui.key.value = "";
  apiKey.set("");
  ui.keyHint.textContent = "Forgotten.";
  summarizeSettings();
});
ui.askForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const question = ui.question.value.trim();
  if (!question || state.controller) return;
  ui.question.value = "";
  ask(question);
});
ui.question.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    ui.askForm.requestSubmit();
  }
});
ui.stop.addEventListener("click", () => state.controller?.abort());
ui.newChat.addEventListener("click", () => {
  state.controller?.abort();
  state.history = [];
  state.sentVideo = null;
  ui.thread.replaceChildren();
  show(ui.chatError, "");
  ui.question.focus();
});
ui.player.addEventListener("timeupdate", () => state.moveHeads());
ui.player.addEventListener("seeked", () => state.moveHeads());
ui.player.addEventListener("error", () => {
  if (state.video) show(ui.videoError, "The browser cannot play this video (it can still be asked about).");
});

// Drag and drop anywhere: a file is uploaded, a dragged link is loaded as a URL.
let dragDepth = 0;
const dragging = (on) => (ui.overlay.hidden = !on);
document.addEventListener("dragenter", (event) => {
  event.preventDefault();
  dragDepth += 1;
  dragging(true);
});
document.addEventListener("dragover", (event) => event.preventDefault());
document.addEventListener("dragleave", () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (!dragDepth) dragging(false);
});
document.addEventListener("drop", (event) => {
  event.preventDefault();
  dragDepth = 0;
  dragging(false);
  const file = event.dataTransfer.files[0];
  if (file) {
    loadFile(file);
    return;
  }
  const link = (event.dataTransfer.getData("text/uri-list") || event.dataTransfer.getData("text/plain"))
    .split(/\r?\n/).find((line) => line && !line.startsWith("#"));
  if (link) {
    ui.url.value = link.trim();
    loadURL(link);
  }
});

loadModels();
