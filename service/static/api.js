// The /v1 API as the page calls it.
//
// The API key (when the service has keys) is asked for on the first 401, kept in
// sessionStorage (this tab only) and sent in the Authorization header of every request:
// artifacts are fetched with it and shown through blob: URLs, and the job event stream is
// read with fetch() and parsed here (EventSource cannot send headers). The key never goes
// into a URL. Problems (RFC 9457) are shown as the API worded them.

import { $, h, sleep } from "./dom.js";
import { TERMINAL } from "./state.js";

const KEY_STORAGE = "glassbox.apiKey";
let apiKey = sessionStorage.getItem(KEY_STORAGE) || null;
let keyPrompt = null;

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

export async function readProblem(response) {
  const text = await response.text().catch(() => "");
  try {
    const body = JSON.parse(text);
    if (body && typeof body === "object") return { status: response.status, ...body };
  } catch {
    /* not JSON: fall through */
  }
  return { status: response.status, title: `${response.status} ${response.statusText}`.trim(), detail: text.slice(0, 500) };
}

/** Call the API; on 401 ask for a key and try again. Throws ApiError with the problem. */
export async function api(path, { method = "GET", json, headers = {}, raw = false, signal } = {}) {
  for (;;) {
    const sentKey = apiKey;
    const sent = { Accept: "application/json", ...headers };
    if (sentKey) sent.Authorization = `Bearer ${sentKey}`;
    let body;
    if (json !== undefined) {
      sent["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    }
    const response = await fetch(path, { method, headers: sent, body, signal });
    if (response.status === 401) {
      const problem = await readProblem(response);
      // Another request may have got a new key meanwhile: use it before asking again.
      if (apiKey === sentKey) await askForKey(problem, sentKey !== null);
      continue;
    }
    if (!response.ok) throw new ApiError(response.status, await readProblem(response));
    if (raw) return response;
    if (response.status === 204) return null;
    return response.json();
  }
}

function askForKey(problem, rejected) {
  if (rejected) {
    apiKey = null;
    sessionStorage.removeItem(KEY_STORAGE);
    renderAuthState();
  }
  if (keyPrompt) return keyPrompt;
  keyPrompt = new Promise((resolve) => {
    const dialog = keyDialog();
    const input = $("#key-input");
    $("#key-reason").textContent = problem.detail || problem.title || "";
    input.value = "";
    const submit = (event) => {
      event.preventDefault();
      const key = input.value.trim();
      if (!key) return;
      apiKey = key;
      sessionStorage.setItem(KEY_STORAGE, key);
      $("#key-form").removeEventListener("submit", submit);
      dialog.close();
      keyPrompt = null;
      renderAuthState();
      resolve();
    };
    $("#key-form").addEventListener("submit", submit);
    if (!dialog.open) dialog.showModal();
    input.focus();
  });
  return keyPrompt;
}

/** The API-key dialog, made on first need (both pages share it). It stays until a key is
 * given: every request waits on it. */
function keyDialog() {
  const made = $("#key-dialog");
  if (made) return made;
  const dialog = h("dialog", {id: "key-dialog", "aria-labelledby": "key-title"},
    h("form", {id: "key-form", method: "dialog"},
      h("h2", {id: "key-title"}, "API key"),
      h("p", {}, "This service needs an API key. It is kept for this tab only."),
      h("p", {id: "key-reason", class: "problem-inline"}),
      h("label", {class: "field"},
        h("span", {class: "field-label"}, "Key"),
        h("input", {id: "key-input", type: "password", autocomplete: "off", required: true})),
      h("div", {class: "actions"}, h("button", {type: "submit", class: "primary"}, "Use key"))));
  dialog.addEventListener("cancel", (event) => event.preventDefault());
  document.body.append(dialog);
  return dialog;
}

export function forgetKey() {
  apiKey = null;
  sessionStorage.removeItem(KEY_STORAGE);
}

export function keyPromptOpen() {
  return keyPrompt !== null;
}

export function renderAuthState() {
  $("#auth-state").textContent = apiKey ? "API key set for this tab" : "";
  $("#forget-key").hidden = !apiKey;
}

/** The events of a text/event-stream body, parsed as the SSE specification says. */
async function* sseEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let type = "message";
  let data = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let newline;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        let line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        if (line.endsWith("\r")) line = line.slice(0, -1);
        if (line === "") {
          if (data.length) yield { event: type, data: data.join("\n") };
          type = "message";
          data = [];
          continue;
        }
        if (line.startsWith(":")) continue; // a comment (keep-alive)
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let text = colon < 0 ? "" : line.slice(colon + 1);
        if (text.startsWith(" ")) text = text.slice(1);
        if (field === "event") type = text;
        else if (field === "data") data.push(text);
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

/** Follow a job's event stream until it ends; reconnects if the stream drops. */
export async function followJob(jobId, { onStatus, onProgress }, signal) {
  for (let attempt = 0; ; attempt++) {
    let last = null;
    try {
      const response = await api(`/v1/jobs/${jobId}/events`, { raw: true, signal, headers: { Accept: "text/event-stream" } });
      for await (const event of sseEvents(response.body)) {
        if (event.event === "status") {
          last = JSON.parse(event.data);
          onStatus(last);
        } else if (event.event === "progress") {
          onProgress(JSON.parse(event.data));
        }
      }
    } catch (error) {
      if (signal.aborted || error instanceof ApiError) throw error;
      // A dropped connection: look at the job, then reconnect.
    }
    if (last && TERMINAL.has(last.status)) return last;
    const job = await api(`/v1/jobs/${jobId}`, { signal });
    onStatus(job);
    if (TERMINAL.has(job.status)) return job;
    await sleep(Math.min(500 * 2 ** attempt, 5000), signal);
  }
}

/** Show an API problem as the API worded it: title, detail, and each errors[] loc and msg. */
export function showProblem(box, error, context) {
  box.replaceChildren();
  box.hidden = false;
  const problem = error instanceof ApiError ? error.problem : { title: context || "Error", detail: String(error?.message ?? error) };
  box.append(h("div", { class: "problem-title" }, problem.title || `HTTP ${problem.status}`, problem.status ? h("span", { class: "problem-status" }, ` ${problem.status}`) : null));
  if (problem.detail) box.append(h("div", { class: "problem-detail" }, problem.detail));
  if (Array.isArray(problem.errors) && problem.errors.length) {
    box.append(
      h("ul", { class: "problem-errors" },
        problem.errors.map((e) => h("li", {}, h("code", {}, (e.loc || []).join(".")), " ", h("span", { class: "problem-msg" }, e.msg))),
      ),
    );
  }
}

export function hideProblem(box) {
  box.hidden = true;
  box.replaceChildren();
}

export function reportAppError(error, context) {
  if (error?.name === "AbortError") return;
  console.error(context, error);
  showProblem($("#app-error"), error, context);
}
