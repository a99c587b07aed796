// The gateway's HTTP API as the page uses it: the API key, OpenAI error envelopes, uploads and SSE streams.

const KEY_STORAGE = "vchat.apiKey";

export class ApiError extends Error {
  constructor(message, { status = 0, code = null, type = null, param = null } = {}) {
    super(message);
    Object.assign(this, { status, code, type, param });
  }
}

export const apiKey = {
  get: () => localStorage.getItem(KEY_STORAGE) || "",
  set: (value) => (value ? localStorage.setItem(KEY_STORAGE, value) : localStorage.removeItem(KEY_STORAGE)),
};

/** A gateway path resolved against the page's own address (so a path prefix in front of the gateway works). */
export const endpoint = (path) => new URL(path.replace(/^\//, ""), document.baseURI).href;

function headers(extra = {}) {
  const key = apiKey.get();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : { ...extra };
}

/** The error a failed response carries (the OpenAI envelope's message, or the status line). */
async function errorOf(response) {
  let error = null;
  try {
    error = (await response.json()).error;
  } catch {
    /* not JSON: fall back to the status */
  }
  const message = error?.message || `${response.status} ${response.statusText || "error"}`;
  return new ApiError(message, { status: response.status, ...(error || {}) });
}

async function call(path, init = {}) {
  let response;
  try {
    response = await fetch(endpoint(path), { ...init, headers: headers(init.headers) });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(`Cannot reach the gateway (${err.message}).`);
  }
  if (!response.ok) throw await errorOf(response);
  return response;
}

export const getJSON = async (path) => (await call(path)).json();

export const postJSON = async (path, body, signal) =>
  (await call(path, {
    method: "POST", body: JSON.stringify(body), signal, headers: { "Content-Type": "application/json" },
  })).json();

/** POST /v1/files: the video is checked and sanitized by the gateway before the file id comes back. */
export async function uploadFile(file, signal) {
  const form = new FormData();
  form.append("purpose", "user_data");
  form.append("file", file, file.name || "video");
  return (await call("/v1/files", { method: "POST", body: form, signal })).json();
}

/** A playable URL for a gateway video. A <video> element cannot send the API key, so with a key set the
 * sanitized copy is fetched with it and played from memory; without one the player streams (and seeks) it. */
export async function playableURL(path) {
  if (!apiKey.get()) return endpoint(path);
  const blob = await (await call(path)).blob();
  return URL.createObjectURL(blob);
}

/** POST /v1/chat/completions with stream:true; yields each chunk. An error event mid-stream is thrown. */
export async function* streamChat(body, signal) {
  const response = await call("/v1/chat/completions", {
    method: "POST", body: JSON.stringify(body), signal,
    headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
  });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
        const data = event.split(/\r?\n/).filter((l) => l.startsWith("data:"))
          .map((l) => l.slice(5).replace(/^ /, "")).join("\n");
        if (!data) continue;
        if (data === "[DONE]") return;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new ApiError(chunk.error.message || "The answer failed.", chunk.error);
        yield chunk;
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
  throw new ApiError("The answer stopped before it was complete (the connection closed).");
}
