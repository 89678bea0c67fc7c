// Glassbox web page: a client of the /v1 API, no build step, no framework.
//
// The API key (when the service has keys) is asked for on the first 401, kept in
// sessionStorage (this tab only) and sent in the Authorization header of every request:
// artifacts are fetched with it and shown through blob: URLs, and the job event stream is
// read with fetch() and parsed here (EventSource cannot send headers). The key never goes
// into a URL. Everything the API returns is put into the page as text, never as HTML.

const KEY_STORAGE = "glassbox.apiKey";
const TERMINAL = new Set(["succeeded", "failed", "canceled"]);
const ACTIVE = new Set(["queued", "running"]);
const HISTORY_PAGE_SIZE = 20;
const HISTORY_POLL_MS = 3000;
// Kinds tried first for a model of each kind (the first one this deployment runs wins).
const PREFERRED_KINDS = {
  image: ["deconvnet", "activation_maximization"],
  tabular: ["tabular_attribution"],
};
const DATASET_KIND = { image: "images", tabular: "table" };
// Parameters filled from the layer/unit selection and the model's datasets.
const LAYER_PARAMS = new Set(["layer"]);
const UNITS_PARAMS = new Set(["channels", "units"]);
const UNIT_PARAMS = new Set(["unit"]);
const DATASET_PARAMS = new Set(["dataset", "reference_dataset"]);
const PRIMARY_FIELD_COUNT = 5;
// Which fields of a parameter group apply to each value of its discriminator, and which of them
// are then required: the kind's validators say it, its JSON Schema cannot. Fields not named
// here show for every value.
const GROUP_VARIANTS = {
  "activation_maximization.objective": {
    by: "type",
    fields: {
      neuron: { required: ["layer", "units"], optional: ["position"] },
      channel: { required: ["layer", "units"], optional: [] },
      layer: { required: ["layer"], optional: [] },
      class: { required: ["units"], optional: ["layer", "softmax_weight", "softmax_start"] },
      direction: { required: ["layer", "vector"], optional: ["position"] },
    },
  },
};

// ---------------------------------------------------------------------------- helpers

const $ = (selector, root = document) => root.querySelector(selector);

/** Build an element: h("td", {class: "num", dataset: {x: 1}, onclick: f}, "text", child). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** A number for people: 4 significant digits, exponent for the very small and large. */
function fmt(value) {
  if (typeof value !== "number") return value === null || value === undefined ? "–" : String(value);
  if (!Number.isFinite(value)) return String(value);
  if (Number.isInteger(value) && Math.abs(value) < 1e15) return String(value);
  const size = Math.abs(value);
  if (size !== 0 && (size < 1e-3 || size >= 1e6)) return value.toExponential(3);
  return String(Number(value.toPrecision(4)));
}

function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 ** 2).toFixed(1)} MiB`;
}

function fmtTime(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  const sameDay = date.toDateString() === new Date().toDateString();
  return sameDay
    ? date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" })
    : date.toLocaleString(undefined, { dateStyle: "short", timeStyle: "short" });
}

function fmtDuration(startIso, endIso) {
  if (!startIso || !endIso) return null;
  const seconds = (new Date(endIso) - new Date(startIso)) / 1000;
  return seconds < 60 ? `${seconds.toFixed(1)} s` : `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

function shape(dims) {
  return Array.isArray(dims) ? dims.join(" × ") : "–";
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
  });
}

function deepEqual(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

function modelPath(id) {
  return id.split("/").map(encodeURIComponent).join("/");
}

// ------------------------------------------------------------------------------- API

let apiKey = sessionStorage.getItem(KEY_STORAGE) || null;
let keyPrompt = null;

class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

async function readProblem(response) {
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
async function api(path, { method = "GET", json, headers = {}, raw = false, signal } = {}) {
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
    const dialog = $("#key-dialog");
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

function renderAuthState() {
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
async function followJob(jobId, { onStatus, onProgress }, signal) {
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

// -------------------------------------------------------------------- problems shown

/** Show an API problem as the API worded it: title, detail, and each errors[] loc and msg. */
function showProblem(box, error, context) {
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

function hideProblem(box) {
  box.hidden = true;
  box.replaceChildren();
}

function reportAppError(error, context) {
  if (error?.name === "AbortError") return;
  console.error(context, error);
  showProblem($("#app-error"), error, context);
}

// ------------------------------------------------------------------------------ state

const state = {
  models: [],
  model: null, // ModelInfo of the selected model
  kinds: [],
  datasets: [],
  layer: null, // the selected layer object
  unit: null, // the selected unit (integer) or null
  fields: [], // the form fields of the selected kind
  job: null, // the job shown
  follow: null, // AbortController of the job shown
  blobUrls: [],
  historyToken: null,
  historyJobs: new Map(),
  pendingDelete: null, // {id, until}: a delete waiting for its confirmation
  modelChosen: false, // the person picked the model (the page no longer picks it for them)
  kindChosen: false, // the person picked the job kind
};

// ------------------------------------------------------------------------------ models

async function loadModels() {
  state.models = await api("/v1/models");
  const select = $("#model-select");
  const groups = new Map();
  for (const model of state.models) {
    const source = model.source || "other";
    if (!groups.has(source)) groups.set(source, []);
    groups.get(source).push(model);
  }
  const order = ["builtin", "upload", "plugin", "torchvision"];
  const sources = [...groups.keys()].sort((a, b) => (order.indexOf(a) + 1 || 99) - (order.indexOf(b) + 1 || 99));
  const previous = state.modelChosen ? select.value : state.model?.id;
  select.replaceChildren(
    ...sources.map((source) =>
      h("optgroup", { label: source },
        groups.get(source).map((m) => h("option", { value: m.id }, `${m.id} (${m.kind}${m.status === "ready" ? "" : `, ${m.status}`})`)),
      ),
    ),
  );
  const preferred = (state.modelChosen && state.models.find((m) => m.id === previous)) || state.models.find((m) => m.id === "shapes-cnn")
    || state.models.find((m) => m.status === "ready") || state.models.find((m) => m.id === previous) || state.models[0];
  if (preferred) select.value = preferred.id;
}

let modelRequest = 0;

async function selectModel(id) {
  const request = ++modelRequest;
  delete document.body.dataset.model;
  const info = await api(`/v1/models/${modelPath(id)}`);
  if (request !== modelRequest) return; // another model was chosen meanwhile
  const kindChanged = state.model?.kind !== info.kind;
  state.model = info;
  $("#model-select").value = info.id;
  $("#model-description").textContent = info.description || "";
  renderModelFacts(info);
  $("#weights-row").hidden = info.source !== "torchvision";
  renderLayers();
  if (kindChanged || !state.kindChosen) chooseDefaultKind();
  renderKindForm();
  document.body.dataset.model = info.id; // the model's layers and form are shown
}

function renderModelFacts(info) {
  const facts = [["kind", info.kind], ["source", info.source], ["status", info.status]];
  const image = info.input?.image;
  const tabular = info.input?.tabular;
  if (image) facts.push(["input", `${image.channels ?? 3} × ${shape(image.size)} image`]);
  if (tabular) facts.push(["input", `${tabular.features?.length ?? 0} variables`]);
  if (info.output) facts.push(["output", info.output]);
  if (info.parameters) facts.push(["parameters", info.parameters.toLocaleString("en-US")]);
  if (info.labels) facts.push(["labels", `${info.labels.length}`]);
  if (info.error) facts.push(["error", info.error]);
  $("#model-facts").replaceChildren(...facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", { dataset: { fact: k } }, v)]));
}

/** The model as a job names it: torchvision models carry their weights choice. */
function modelRef() {
  const info = state.model;
  if (!info) return "";
  if (info.source !== "torchvision") return info.id;
  if ($("#weights-select").value === "random") return `${info.id}?weights=random&seed=${Number($("#weights-seed").value) || 0}`;
  return info.id;
}

function renderLayers() {
  const info = state.model;
  const layers = info.layers || [];
  const empty = layers.length === 0;
  $("#layers-empty").hidden = !empty;
  $("#layers-browser").hidden = empty;
  if (empty) {
    const text = {
      available: "Layers are listed once a worker has loaded this model: run a model_inspection job.",
      pending: `This upload is being inspected${info.inspection_job ? ` (job ${info.inspection_job})` : ""}; its layers appear when that job ends.`,
      failed: `The model failed inspection: ${info.error || "see its inspection job"}.`,
    }[info.status] || "This model lists no layers.";
    $("#layers-empty-text").textContent = text;
    // Inspection lists the layers of a model not loaded yet, or tells why it fails to load.
    $("#inspect-model").hidden = !(["available", "failed"].includes(info.status) || (info.status === "pending" && info.inspection_job));
    $("#inspect-model").textContent = info.status === "pending" ? "Open the inspection job" : "Inspect model";
  }
  const keep = state.layer && layers.find((l) => l.name === state.layer.name);
  state.layer = keep || null;
  if (!keep) state.unit = null;
  const tbody = $("#layer-table tbody");
  tbody.replaceChildren(
    ...layers.map((layer) =>
      h("tr", {
        tabindex: 0,
        dataset: { layer: layer.name },
        class: state.layer?.name === layer.name ? "selected" : null,
        onclick: () => selectLayer(layer),
        onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); selectLayer(layer); } },
      },
      h("td", { class: "mono" }, layer.name),
      h("td", {}, layer.type),
      h("td", { class: "mono" }, shape(layer.output_shape)),
      h("td", { class: "num" }, layer.units)),
    ),
  );
  filterLayers();
  renderSelection();
}

function filterLayers() {
  const needle = $("#layer-filter").value.trim().toLowerCase();
  for (const row of $("#layer-table tbody").rows) {
    row.hidden = needle !== "" && !row.textContent.toLowerCase().includes(needle);
  }
}

function selectLayer(layer) {
  state.layer = layer;
  state.unit = null;
  for (const row of $("#layer-table tbody").rows) row.classList.toggle("selected", row.dataset.layer === layer.name);
  renderSelection();
  applySelection();
}

function renderSelection() {
  const layer = state.layer;
  $("#selected-layer").textContent = layer ? `${layer.name} (${shape(layer.output_shape)})` : "none";
  const unit = $("#unit-input");
  unit.disabled = !layer;
  unit.max = layer ? layer.units - 1 : "";
  unit.value = state.unit ?? "";
  $("#unit-range").textContent = layer ? `0 to ${layer.units - 1}` : "";
  $("#clear-unit").hidden = state.unit === null;
}

function onUnitInput() {
  const raw = $("#unit-input").value.trim();
  const value = Number(raw);
  state.unit = raw !== "" && Number.isInteger(value) ? value : null;
  $("#clear-unit").hidden = state.unit === null;
  applySelection();
}

// ------------------------------------------------------------------ waiting for models

// Right after `glassbox up` the API answers before a worker has registered the built-in models:
// the page says what the service waits for (as /readyz words it) and tries again until then.
const CATALOG_RETRY_FIRST_MS = 1000;
const CATALOG_RETRY_MAX_MS = 8000;

/** What /readyz says the service waits for, as a problem; null when it is ready. */
async function readiness() {
  const response = await fetch("/readyz", { headers: { Accept: "application/json" } });
  return response.ok ? null : readProblem(response);
}

/**
 * Load models, kinds and datasets and show the best model; returns what the page still waits
 * for (a problem: /readyz's 503, or no ready model yet), or null when everything is there.
 */
async function refreshCatalog() {
  try {
    const before = JSON.stringify([state.models, state.datasets]);
    await loadModels();
    await Promise.all([loadKinds(), loadDatasets()]);
    const chosen = $("#model-select").value;
    // Shown again when something came since: the model's record, its layers, its datasets.
    if (chosen && (chosen !== state.model?.id || JSON.stringify([state.models, state.datasets]) !== before)) await selectModel(chosen);
    const waiting = await readiness();
    if (waiting) return waiting;
    if (!state.models.some((m) => m.status === "ready")) {
      return {
        title: "No model is ready yet",
        detail: state.models.length
          ? "None of the models listed is ready yet: a worker inspects them."
          : "The service lists no model yet: a worker registers the built-in ones when it starts.",
      };
    }
    return null;
  } catch (error) {
    if (error instanceof ApiError) return error.problem;
    return { title: "The service did not answer", detail: String(error?.message ?? error) };
  }
}

function showWaiting(problem, retryMs) {
  $("#service-wait").hidden = !problem;
  if (!problem) return;
  $("#service-wait-title").textContent = problem.title || `HTTP ${problem.status}`;
  $("#service-wait-detail").textContent = problem.detail || "";
  $("#service-wait-retry").textContent = `Trying again in ${Math.round(retryMs / 1000)} s.`;
}

/** wake() ends the current wait of waitForCatalog at once ("Try now"). */
const catalogWaiter = { wake: () => {} };

/** Try again with a growing delay until the catalog is complete. */
async function waitForCatalog(problem) {
  for (let attempt = 0; problem; attempt++) {
    const delay = Math.min(CATALOG_RETRY_FIRST_MS * 2 ** attempt, CATALOG_RETRY_MAX_MS);
    showWaiting(problem, delay);
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, delay);
      catalogWaiter.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    problem = await refreshCatalog();
  }
  catalogWaiter.wake = () => {};
  showWaiting(null);
}

// ------------------------------------------------------------------------------- kinds

async function loadKinds() {
  const kinds = await api("/v1/kinds");
  const select = $("#kind-select");
  const unchanged = deepEqual(kinds.map((k) => k.name), state.kinds.map((k) => k.name));
  state.kinds = kinds;
  if (unchanged) return;
  const previous = select.value;
  select.replaceChildren(...kinds.map((k) => h("option", { value: k.name }, k.name)));
  if (kinds.some((k) => k.name === previous)) select.value = previous;
  else chooseDefaultKind();
}

async function loadDatasets() {
  state.datasets = await api("/v1/datasets");
}

function chooseDefaultKind() {
  const names = state.kinds.map((k) => k.name);
  const wanted = (PREFERRED_KINDS[state.model?.kind] || []).find((n) => names.includes(n))
    || names.find((n) => n !== "model_inspection" && !n.startsWith("test-"))
    || names[0];
  if (wanted) $("#kind-select").value = wanted;
}

function currentKind() {
  return state.kinds.find((k) => k.name === $("#kind-select").value) || null;
}

/** The dataset a model is meant for: the one its description names, else the first of its kind. */
function suggestedDataset() {
  const info = state.model;
  if (!info) return null;
  const fitting = state.datasets.filter((d) => !DATASET_KIND[info.kind] || d.kind === DATASET_KIND[info.kind]);
  const named = fitting.find((d) => (info.description || "").includes(d.id));
  return (named || fitting[0])?.id ?? null;
}

// ------------------------------------------------------------------- schema-driven form

function deref(schema, root) {
  let s = schema || {};
  for (let i = 0; s.$ref && i < 10; i++) {
    const name = s.$ref.split("/").pop();
    s = { ...(root.$defs?.[name] || root.definitions?.[name] || {}), ...Object.fromEntries(Object.entries(s).filter(([k]) => k !== "$ref")) };
  }
  if (s.allOf?.length === 1) s = { ...deref(s.allOf[0], root), ...s, allOf: undefined };
  return s;
}

/** Strip a `| null` alternative: returns [schema, nullable]. */
function unwrapNullable(schema, root) {
  const s = deref(schema, root);
  const variants = s.anyOf || s.oneOf;
  if (Array.isArray(variants)) {
    const nonNull = variants.filter((v) => deref(v, root).type !== "null");
    if (nonNull.length === 1 && nonNull.length < variants.length) {
      const inner = deref(nonNull[0], root);
      return [{ ...inner, title: s.title, description: s.description ?? inner.description, default: s.default }, true];
    }
  }
  return [s, false];
}

const SIMPLE = new Set(["string", "integer", "number", "boolean"]);

function itemType(items, root) {
  const s = deref(items, root);
  if (SIMPLE.has(s.type)) return s.type;
  const variants = s.anyOf || s.oneOf;
  if (Array.isArray(variants) && variants.every((v) => SIMPLE.has(deref(v, root).type))) {
    const types = variants.map((v) => deref(v, root).type);
    if (types.includes("integer") && types.includes("string")) return "integer-or-string";
  }
  return null;
}

/** How a property is edited: a form widget, a nested group, or the JSON box. */
function widgetFor(schema, root) {
  const [s, nullable] = unwrapNullable(schema, root);
  if (s.const !== undefined) return { widget: "const", schema: s, nullable };
  if (Array.isArray(s.enum) && s.enum.every((v) => typeof v === "string" || typeof v === "number")) return { widget: "enum", schema: s, nullable };
  if (s.type === "boolean") return { widget: "boolean", schema: s, nullable };
  if (s.type === "integer" || s.type === "number") return { widget: s.type, schema: s, nullable };
  if (s.type === "string") return { widget: "string", schema: s, nullable };
  if (s.type === "array") {
    const type = itemType(s.items, root);
    if (type === "integer" || type === "number" || type === "integer-or-string") return { widget: "list", itemType: type, schema: s, nullable };
  }
  if (s.type === "object" && s.properties && !(s.anyOf || s.oneOf)) return { widget: "object", schema: s, nullable };
  return { widget: "json", schema: s, nullable };
}

/** An example value for a required complex parameter (JSON box): defaults and constants. */
function exampleValue(schema, root, depth = 0) {
  const s = deref(schema, root);
  if (s.default !== undefined) return s.default;
  if (s.const !== undefined) return s.const;
  if (depth > 4) return null;
  const variants = s.oneOf || s.anyOf;
  if (Array.isArray(variants) && variants.length) {
    const first = variants.find((v) => deref(v, root).type !== "null") || variants[0];
    return exampleValue(first, root, depth + 1);
  }
  if (Array.isArray(s.enum)) return s.enum[0];
  if (s.type === "object" || s.properties) {
    const out = {};
    for (const name of s.required || []) out[name] = exampleValue(s.properties?.[name] || {}, root, depth + 1);
    return out;
  }
  if (s.type === "array") return [];
  if (s.type === "integer" || s.type === "number") return s.minimum ?? 0;
  if (s.type === "boolean") return false;
  return "";
}

function parseNumber(text, integer) {
  const value = Number(text);
  if (text === "" || !Number.isFinite(value) || (integer && !Number.isInteger(value))) return text; // the API words the error
  return value;
}

function parseList(text, type) {
  const tokens = text.split(/[\s,;]+/).map((t) => t.replace(/^\[|\]$/g, "")).filter((t) => t !== "");
  return tokens.map((t) => {
    const value = Number(t);
    if (Number.isFinite(value) && (type === "number" || Number.isInteger(value))) return value;
    return type === "integer-or-string" ? t.replace(/^["']|["']$/g, "") : t;
  });
}

/** One form field for one parameter; returns {name, path, element, read(), write(v), ...}. */
function makeField(name, path, schema, root, required, listId) {
  const spec = widgetFor(schema, root);
  const s = spec.schema;
  const id = `param-${path.join("-")}`;
  const marker = h("span", { class: "required", title: "required", hidden: !required }, " *");
  const label = h("span", { class: "field-label" }, h("code", {}, name), marker);
  const description = s.description || "";
  const help = description ? h("span", { class: "field-help", title: description }, description) : null;
  const field = { name, path, required, spec, default: s.default };
  let input;
  switch (spec.widget) {
    case "enum": {
      const options = s.enum.map((v) => h("option", { value: String(v) }, String(v)));
      // A required choice without a default starts at its first option; an optional one can stay unset.
      if (spec.nullable || (s.default === undefined && !required)) options.unshift(h("option", { value: "" }, spec.nullable ? "(none)" : "(default)"));
      input = h("select", { id }, options);
      field.read = () => (input.value === "" ? undefined : s.enum.find((v) => String(v) === input.value));
      field.write = (v) => { input.value = v === undefined || v === null ? "" : String(v); };
      break;
    }
    case "boolean": {
      input = h("select", { id }, h("option", { value: "true" }, "true"), h("option", { value: "false" }, "false"));
      if (spec.nullable || s.default === undefined) input.prepend(h("option", { value: "" }, "(default)"));
      field.read = () => (input.value === "" ? undefined : input.value === "true");
      field.write = (v) => { input.value = v === undefined || v === null ? "" : String(v); };
      break;
    }
    case "integer":
    case "number": {
      input = h("input", { id, type: "text", inputmode: spec.widget === "integer" ? "numeric" : "decimal", autocomplete: "off" });
      field.read = () => (input.value.trim() === "" ? undefined : parseNumber(input.value.trim(), spec.widget === "integer"));
      field.write = (v) => { input.value = v === undefined || v === null ? "" : String(v); };
      break;
    }
    case "string": {
      input = h("input", { id, type: "text", autocomplete: "off", spellcheck: "false", list: listId || null });
      field.read = () => (input.value.trim() === "" ? undefined : input.value.trim());
      field.write = (v) => { input.value = v ?? ""; };
      break;
    }
    case "list": {
      input = h("input", { id, type: "text", autocomplete: "off", spellcheck: "false" });
      field.read = () => (input.value.trim() === "" ? undefined : parseList(input.value.trim(), spec.itemType));
      field.write = (v) => { input.value = Array.isArray(v) ? v.join(", ") : v ?? ""; };
      break;
    }
    default:
      return null;
  }
  const bounds = [];
  if (s.minimum !== undefined) bounds.push(`≥ ${s.minimum}`);
  if (s.exclusiveMinimum !== undefined) bounds.push(`> ${s.exclusiveMinimum}`);
  if (s.maximum !== undefined) bounds.push(`≤ ${s.maximum}`);
  if (s.exclusiveMaximum !== undefined) bounds.push(`< ${s.exclusiveMaximum}`);
  /** Required or not can change with the group's variant (a neuron objective needs a layer). */
  field.setRequired = (value) => {
    field.required = value;
    marker.hidden = !value;
    const placeholder = spec.widget === "list" ? "comma-separated" : bounds.join(", ") || (value ? "" : "optional");
    if (input.tagName === "INPUT") input.placeholder = placeholder;
  };
  field.setRequired(required);
  input.dataset.param = path.join(".");
  input.addEventListener("input", updatePreview);
  input.addEventListener("change", updatePreview);
  field.input = input;
  field.element = h("label", { class: `field param-field widget-${spec.widget}`, for: id, dataset: { param: path.join(".") } },
    label, input, help, h("span", { class: "field-error", role: "alert" }));
  field.write(s.default ?? (spec.widget === "enum" && required ? s.enum[0] : undefined));
  return field;
}

function renderKindForm() {
  const kind = currentKind();
  const primary = $("#param-fields");
  const more = $("#more-param-fields");
  primary.replaceChildren();
  more.replaceChildren();
  hideProblem($("#submit-problem"));
  state.fields = [];
  $("#kind-description").textContent = kind?.description || "";
  if (!kind) return;
  const root = kind.params_schema || {};
  const props = root.properties || {};
  const required = new Set(root.required || []);
  // Datalists for the names a field may take.
  const layerList = h("datalist", { id: "layer-names" }, (state.model?.layers || []).map((l) => h("option", { value: l.name })));
  const datasetList = h("datalist", { id: "dataset-names" }, state.datasets.map((d) => h("option", { value: d.id }, `${d.id} (${d.kind}, ${d.count})`)));
  primary.append(layerList, datasetList);
  const listFor = (name) => (LAYER_PARAMS.has(name) ? "layer-names" : DATASET_PARAMS.has(name) || name === "background" ? "dataset-names" : null);

  const jsonParams = [];
  const extra = {};
  let generalCount = 0;
  const names = Object.keys(props).sort((a, b) => Number(required.has(b)) - Number(required.has(a)));
  for (const name of names) {
    const schema = props[name];
    const spec = widgetFor(schema, root);
    if (spec.widget === "object" && required.has(name)) {
      const group = h("fieldset", { class: "param-group", dataset: { param: name } },
        h("legend", {}, h("code", {}, name), h("span", { class: "required" }, " *")));
      if (spec.schema.description) group.append(h("p", { class: "field-help" }, spec.schema.description));
      const inner = spec.schema;
      const innerRequired = new Set(inner.required || []);
      const constants = {};
      for (const [innerName, innerSchema] of Object.entries(inner.properties)) {
        const innerSpec = widgetFor(innerSchema, root);
        if (innerSpec.widget === "const") { constants[innerName] = innerSpec.schema.const; continue; }
        const field = makeField(innerName, [name, innerName], innerSchema, root, innerRequired.has(innerName), listFor(innerName));
        if (field) {
          group.append(field.element);
          state.fields.push(field);
        }
      }
      const groupField = { name, path: [name], group: true, constants, required: true, variants: GROUP_VARIANTS[`${kind.name}.${name}`] };
      state.fields.push(groupField);
      primary.append(group);
      if (groupField.variants) {
        showGroupVariant(groupField);
        fieldAt([name, groupField.variants.by])?.input.addEventListener("change", () => showGroupVariant(groupField));
      }
      continue;
    }
    const field = spec.widget === "json" || spec.widget === "object" || spec.widget === "const" ? null : makeField(name, [name], schema, root, required.has(name), listFor(name));
    if (!field) {
      if (required.has(name)) extra[name] = exampleValue(schema, root);
      else jsonParams.push([name, deref(schema, root).description || ""]);
      continue;
    }
    state.fields.push(field);
    const special = required.has(name) || LAYER_PARAMS.has(name) || UNITS_PARAMS.has(name) || UNIT_PARAMS.has(name) || DATASET_PARAMS.has(name);
    const isPrimary = special || generalCount < PRIMARY_FIELD_COUNT;
    if (!special) generalCount += 1;
    (isPrimary ? primary : more).append(field.element);
  }
  $("#more-fields").hidden = more.childElementCount === 0;
  $("#more-fields summary").textContent = `More parameters (${more.childElementCount})`;
  setExtra(extra);
  const hint = $("#extra-hint");
  hint.replaceChildren();
  if (jsonParams.length) {
    hint.append("Also accepted here: ");
    jsonParams.forEach(([name, description], i) => {
      hint.append(h("code", { title: description }, name));
      if (i < jsonParams.length - 1) hint.append(", ");
    });
    hint.append(" (hover for what each means).");
  }
  // Dataset fields default to the model's dataset.
  const dataset = suggestedDataset();
  for (const field of state.fields) {
    if (!field.group && DATASET_PARAMS.has(field.name) && field.read() === undefined && dataset) field.write(dataset);
  }
  applySelection();
}

function fieldAt(path) {
  return state.fields.find((f) => !f.group && deepEqual(f.path, path)) || null;
}

/** Show the group's fields that apply to its discriminator's value, marked required or not. */
function showGroupVariant(group) {
  const { by, fields } = group.variants;
  const rule = fields[fieldAt([group.name, by])?.read()];
  for (const field of state.fields) {
    if (field.group || field.path.length !== 2 || field.path[0] !== group.name || field.path[1] === by) continue;
    field.schemaRequired ??= field.required;
    const required = rule ? rule.required.includes(field.name) : field.schemaRequired;
    field.hidden = Boolean(rule) && !required && !rule.optional.includes(field.name);
    field.element.hidden = field.hidden;
    field.setRequired(required);
  }
  updatePreview();
}

function setExtra(extra) {
  const box = $("#extra-params");
  box.value = Object.keys(extra).length ? JSON.stringify(extra, null, 1) : "";
  box.rows = Math.min(12, Math.max(3, box.value.split("\n").length));
}

/** Put the selected layer and unit into every parameter that names a layer or unit. */
function applySelection() {
  const layer = state.layer?.name;
  const unit = state.unit;
  for (const field of state.fields) {
    if (field.group) continue;
    if (LAYER_PARAMS.has(field.name) && layer) field.write(layer);
    if (UNITS_PARAMS.has(field.name) && field.spec.widget === "list") field.write(unit === null ? field.default ?? undefined : [unit]);
    if (UNIT_PARAMS.has(field.name) && unit !== null) field.write(unit);
  }
  // JSON-box parameters with a variant that names a layer and a unit (e.g. a neuron target).
  const kind = currentKind();
  const box = $("#extra-params");
  if (kind && layer && unit !== null) {
    let extra = {};
    try {
      extra = box.value.trim() ? JSON.parse(box.value) : {};
    } catch {
      extra = null; // the box holds something else: leave it
    }
    const root = kind.params_schema || {};
    const formNames = new Set(state.fields.map((f) => f.path[0]));
    let changed = false;
    for (const [name, schema] of Object.entries(root.properties || {})) {
      if (!extra || typeof extra !== "object" || formNames.has(name)) continue;
      const s = deref(schema, root);
      for (const variant of s.oneOf || s.anyOf || []) {
        const p = deref(variant, root).properties || {};
        if (!p.layer || !(p.unit || p.units)) continue;
        const value = Object.fromEntries(Object.entries(p).map(([k, x]) => [k, deref(x, root).const]).filter(([, c]) => c !== undefined));
        value.layer = layer;
        if (p.unit) value.unit = unit;
        else value.units = [unit];
        extra[name] = value;
        changed = true;
        break;
      }
    }
    if (changed) setExtra(extra);
  }
  updatePreview();
}

/** The job body from the form: {kind, model, params}. Throws Error for unreadable JSON. */
function buildRequest() {
  const kind = currentKind();
  const params = {};
  for (const field of state.fields) {
    if (field.group) {
      if (!(field.name in params)) params[field.name] = {};
      Object.assign(params[field.name], field.constants);
      continue;
    }
    if (field.hidden) continue; // does not apply to the group's variant
    const value = field.read();
    if (value === undefined) continue;
    if (!field.required && field.default !== undefined && deepEqual(value, field.default)) continue;
    let target = params;
    for (const key of field.path.slice(0, -1)) target = target[key] ??= {};
    target[field.path.at(-1)] = value;
  }
  const text = $("#extra-params").value.trim();
  if (text) {
    let extra;
    try {
      extra = JSON.parse(text);
    } catch (error) {
      throw new Error(`Other params: not valid JSON (${error.message})`);
    }
    if (!extra || typeof extra !== "object" || Array.isArray(extra)) throw new Error("Other params: give a JSON object, e.g. {\"seed\": 1}");
    Object.assign(params, extra);
  }
  return { kind: kind?.name, model: modelRef(), params };
}

function updatePreview() {
  try {
    $("#request-preview").textContent = JSON.stringify(buildRequest(), null, 1);
  } catch (error) {
    $("#request-preview").textContent = error.message;
  }
  scheduleEstimate();
}

// ---------------------------------------------------------------------------- estimate

// POST /v1/jobs/estimate takes the body of POST /v1/jobs and answers what the job would cost:
// {kind, seconds: {cpu, gpu | null}, basis}. A service without it (404, 405) is not asked again;
// a kind without a cost model (404 no-estimate) or a body it refuses (422) shows no estimate:
// submitting shows the problem.
const ESTIMATE_DEBOUNCE_MS = 400;
const estimate = { timer: null, controller: null, supported: true };

function scheduleEstimate() {
  if (!estimate.supported) return;
  clearTimeout(estimate.timer);
  estimate.timer = setTimeout(requestEstimate, ESTIMATE_DEBOUNCE_MS);
}

function fmtSeconds(seconds) {
  if (seconds < 10) return `${Number(seconds.toFixed(1))} s`;
  if (seconds < 120) return `${Math.round(seconds)} s`;
  return `${Math.round(seconds / 60)} min`;
}

async function requestEstimate() {
  estimate.controller?.abort();
  const box = $("#estimate");
  let body;
  try {
    body = buildRequest();
  } catch {
    box.hidden = true;
    return;
  }
  if (!body.kind || !body.model) {
    box.hidden = true;
    return;
  }
  const controller = new AbortController();
  estimate.controller = controller;
  try {
    const answer = await api("/v1/jobs/estimate", { method: "POST", json: body, signal: controller.signal });
    if (controller.signal.aborted) return;
    const { cpu, gpu } = answer.seconds || {};
    if (typeof cpu !== "number") throw new Error("no CPU estimate");
    box.textContent = `about ${fmtSeconds(cpu)} on a CPU worker${typeof gpu === "number" ? ` (${fmtSeconds(gpu)} on a GPU)` : ""}`;
    box.title = answer.basis || "";
    box.dataset.cpu = String(cpu);
    box.hidden = false;
    document.body.dataset.estimate = "shown";
  } catch (error) {
    if (controller.signal.aborted) return;
    // A 404 `no-estimate` is this kind's (it has no cost model); any other 404 or a 405 says
    // the service has no estimate endpoint at all.
    const missing = error instanceof ApiError && (error.status === 405
      || (error.status === 404 && !String(error.problem.type || "").endsWith("/no-estimate")));
    if (missing) {
      estimate.supported = false;
    }
    document.body.dataset.estimate = missing ? "unsupported" : "none";
    box.hidden = true;
  }
}

function markFieldErrors(problem) {
  for (const el of document.querySelectorAll(".param-field.invalid")) {
    el.classList.remove("invalid");
    $(".field-error", el).textContent = "";
  }
  for (const error of problem?.errors || []) {
    const loc = error.loc || [];
    if (loc[0] !== "body" || loc[1] !== "params") continue;
    for (let n = loc.length; n > 2; n--) {
      const el = document.querySelector(`.param-field[data-param="${CSS.escape(loc.slice(2, n).join("."))}"]`);
      if (el) {
        el.classList.add("invalid");
        $(".field-error", el).textContent = error.msg;
        break;
      }
    }
  }
}

async function submitJob(event) {
  event.preventDefault();
  const box = $("#submit-problem");
  const button = $("#submit-job");
  hideProblem(box);
  markFieldErrors(null);
  let body;
  try {
    body = buildRequest();
  } catch (error) {
    showProblem(box, error, "Not sent");
    return;
  }
  button.disabled = true;
  try {
    const job = await api("/v1/jobs", { method: "POST", json: body });
    openJob(job.id, job);
    revealJobView();
    refreshHistory();
  } catch (error) {
    showProblem(box, error, "The request failed");
    if (error instanceof ApiError) markFieldErrors(error.problem);
  } finally {
    button.disabled = false;
  }
}

async function inspectModel() {
  const info = state.model;
  if (info.status === "pending" && info.inspection_job) {
    openJob(info.inspection_job);
    return;
  }
  try {
    const job = await api("/v1/jobs", { method: "POST", json: { kind: "model_inspection", model: modelRef(), params: {} } });
    openJob(job.id, job);
    revealJobView();
    refreshHistory();
  } catch (error) {
    showProblem($("#submit-problem"), error, "The request failed");
  }
}

// ---------------------------------------------------------------------------- job view

function revokeBlobs() {
  for (const url of state.blobUrls) URL.revokeObjectURL(url);
  state.blobUrls = [];
}

function openJob(jobId, known) {
  state.follow?.abort();
  const controller = new AbortController();
  state.follow = controller;
  revokeBlobs();
  state.job = known || { id: jobId };
  history.replaceState(null, "", `#job=${jobId}`);
  $("#job-empty").hidden = true;
  $("#job-id").textContent = jobId;
  $("#result").replaceChildren();
  hideProblem($("#job-problem"));
  const progress = $("#job-progress");
  progress.hidden = false;
  progress.dataset.events = "0";
  setProgress({ fraction: 0, message: "" });
  if (known) renderJobHead(known);
  for (const row of $("#history-table tbody").rows) row.classList.toggle("current", row.dataset.jobId === jobId);
  run(controller.signal).catch((error) => {
    if (controller.signal.aborted) return;
    showProblem($("#job-problem"), error, "Could not follow the job");
  });

  async function run(signal) {
    let job = known && TERMINAL.has(known.status) ? known : null;
    if (!job) {
      job = await followJob(jobId, {
        onStatus: (j) => {
          if (signal.aborted) return;
          state.job = j;
          renderJobHead(j);
          setProgress(j.progress);
          updateHistoryRow(j);
        },
        onProgress: (p) => {
          if (signal.aborted) return;
          progress.dataset.events = String(Number(progress.dataset.events) + 1);
          setProgress(p);
        },
      }, signal);
    }
    if (signal.aborted) return;
    state.job = job;
    renderJobHead(job);
    setProgress(job.progress);
    updateHistoryRow(job);
    await renderOutcome(job, signal);
  }
}

function revealJobView() {
  const view = $("#job-view");
  const top = view.getBoundingClientRect().top;
  if (top < 0 || top > window.innerHeight * 0.6) view.scrollIntoView({ block: "start", behavior: "smooth" });
}

function closeJob() {
  state.follow?.abort();
  state.follow = null;
  state.job = null;
  revokeBlobs();
  history.replaceState(null, "", location.pathname);
  $("#job-id").textContent = "";
  $("#job-status").hidden = true;
  $("#job-cancel").hidden = true;
  $("#job-meta").replaceChildren();
  $("#job-progress").hidden = true;
  $("#progress-message").textContent = "";
  $("#result").replaceChildren();
  hideProblem($("#job-problem"));
  $("#job-empty").hidden = false;
}

function statusBadge(el, job) {
  const label = job.cancel_requested && !TERMINAL.has(job.status) ? "canceling" : job.status;
  el.textContent = label;
  el.className = `badge status-${job.status}`;
  el.dataset.status = job.status;
  el.hidden = false;
}

function renderJobHead(job) {
  statusBadge($("#job-status"), job);
  $("#job-cancel").hidden = !ACTIVE.has(job.status);
  const parts = [
    h("span", {}, h("strong", {}, job.kind), " on ", h("code", {}, job.model)),
    h("span", {}, `created ${fmtTime(job.created_at)}`),
  ];
  const took = fmtDuration(job.started_at, job.finished_at);
  if (took) parts.push(h("span", {}, `ran ${took}`));
  if (job.attempts > 1) parts.push(h("span", {}, `attempt ${job.attempts}`));
  if (job.expires_at) parts.push(h("span", {}, `kept until ${fmtTime(job.expires_at)}`));
  $("#job-meta").replaceChildren(...parts);
}

function setProgress(progress) {
  const fraction = Math.max(0, Math.min(1, Number(progress?.fraction) || 0));
  const bar = $("#job-progress");
  bar.dataset.fraction = String(fraction);
  bar.setAttribute("aria-valuenow", String(Math.round(fraction * 100)));
  $("#progress-bar").style.width = `${(fraction * 100).toFixed(1)}%`;
  $("#progress-message").textContent = `${Math.round(fraction * 100)}%${progress?.message ? ` · ${progress.message}` : ""}`;
}

async function cancelJob(jobId) {
  const job = await api(`/v1/jobs/${jobId}/cancel`, { method: "POST" });
  updateHistoryRow(job);
  if (state.job?.id === jobId) renderJobHead(job);
  return job;
}

async function deleteJob(jobId) {
  await api(`/v1/jobs/${jobId}`, { method: "DELETE" });
  if (state.job?.id === jobId) closeJob();
}

// ----------------------------------------------------------------------------- results

function artifactMap(job) {
  return new Map((job.result?.artifacts || []).map((a) => [a.name, a]));
}

async function fetchArtifact(artifact, signal) {
  const response = await api(artifact.url, { raw: true, signal, headers: { Accept: "*/*" } });
  return response.blob();
}

async function artifactJson(artifact, signal) {
  return JSON.parse(await (await fetchArtifact(artifact, signal)).text());
}

/** An <img> that loads an artifact with the key and shows it through a blob: URL. */
function artifactImage(artifact, alt, signal, className) {
  const img = h("img", { alt: alt || artifact.name, class: className, dataset: { artifact: artifact.name }, decoding: "async" });
  fetchArtifact(artifact, signal)
    .then((blob) => {
      if (signal.aborted) return;
      const url = URL.createObjectURL(blob);
      state.blobUrls.push(url);
      img.src = url;
    })
    .catch((error) => {
      if (signal.aborted) return;
      img.replaceWith(h("div", { class: "img-error" }, `${artifact.name}: ${error.message}`));
    });
  return img;
}

function figure(artifact, caption, signal, className = "figure", upscale = 1) {
  const img = artifactImage(artifact, caption || artifact.name, signal);
  if (upscale > 1) {
    // Small figures (64 px cells) are drawn larger, pixel for pixel, as far as the page allows.
    img.addEventListener("load", () => {
      if (img.naturalWidth * upscale <= 1400 && img.naturalHeight * upscale <= window.innerHeight * 0.6) {
        img.style.width = `${img.naturalWidth * upscale}px`;
        img.classList.add("pixelated");
      }
    }, { once: true });
  }
  const shown = h("figure", { class: className, dataset: { artifact: artifact.name } }, img, caption ? h("figcaption", {}, caption) : null);
  // A large figure is shown within the window; a click shows it at full size and back.
  img.addEventListener("click", () => shown.classList.toggle("expanded"));
  return shown;
}

function numbers(pairs) {
  return h("dl", { class: "numbers" },
    pairs.filter(([, v]) => v !== undefined).flatMap(([label, value, field, raw]) => [
      h("dt", {}, label),
      h("dd", { dataset: { field: field || label, value: typeof (raw ?? value) === "number" ? String(raw ?? value) : null } },
        typeof value === "number" ? fmt(value) : value ?? "–"),
    ]));
}

async function renderOutcome(job, signal) {
  const result = $("#result");
  result.replaceChildren();
  if (job.status === "failed") {
    const error = job.error || { title: "Failed" };
    showProblem($("#job-problem"), new ApiError(0, { title: error.title, detail: error.detail, status: undefined }));
    $(".problem-title", $("#job-problem")).prepend(h("code", { class: "problem-type" }, error.type || "error"), " ");
    return;
  }
  if (job.status === "canceled") {
    result.append(h("p", { class: "muted" }, "The job was canceled."));
    return;
  }
  if (job.status !== "succeeded") return;
  const artifacts = artifactMap(job);
  let doc = null;
  if (artifacts.has("result.json")) {
    try {
      doc = await artifactJson(artifacts.get("result.json"), signal);
    } catch (error) {
      if (signal.aborted) return;
      showProblem($("#job-problem"), error, "Could not read result.json");
    }
  }
  if (signal.aborted) return;
  const view = VIEWS[job.kind] || genericView;
  const shown = new Set();
  try {
    view(result, job, doc, artifacts, signal, shown);
  } catch (error) {
    console.error(error);
    result.append(h("p", { class: "problem" }, `This result could not be shown in full: ${error.message}`));
  }
  result.append(commonFooter(job, doc, artifacts, signal));
  if (job.kind === "model_inspection" && state.model && job.model.split("?")[0] === state.model.id) {
    selectModel(state.model.id).catch((error) => reportAppError(error, "Reloading the model failed"));
  }
}

function section(title, ...children) {
  return h("section", { class: "result-section" }, h("h3", {}, title), ...children);
}

function commonFooter(job, doc, artifacts, signal) {
  const wrap = h("div", { class: "result-footer" });
  const summary = job.result?.summary || {};
  if (Object.keys(summary).length) {
    wrap.append(section("Summary", h("dl", { class: "facts summary" },
      Object.entries(summary).flatMap(([k, v]) => [
        h("dt", {}, k),
        h("dd", { dataset: { summary: k } }, v !== null && typeof v === "object" ? JSON.stringify(v) : typeof v === "number" ? fmt(v) : String(v)),
      ]))));
  }
  const list = h("ul", { class: "artifacts" },
    [...artifacts.values()].map((a) =>
      h("li", {},
        h("button", { type: "button", class: "link", onclick: () => download(a, signal) }, a.name),
        h("span", { class: "muted small" }, ` ${a.content_type}, ${fmtBytes(a.bytes)}`))));
  // A long list (a deconvnet job has two PNGs per projection) stays folded away.
  wrap.append(h("details", { class: "result-section artifacts-list", open: artifacts.size <= ARTIFACTS_LISTED_OPEN },
    h("summary", {}, `Artifacts (${artifacts.size})`), list));
  if (doc) wrap.append(h("details", { class: "raw" }, h("summary", {}, "result.json"), h("pre", {}, JSON.stringify(doc, null, 1))));
  wrap.append(h("details", { class: "raw" }, h("summary", {}, "params"), h("pre", {}, JSON.stringify(job.params, null, 1))));
  return wrap;
}

async function download(artifact, signal) {
  try {
    const blob = await fetchArtifact(artifact, signal);
    const url = URL.createObjectURL(blob);
    const a = h("a", { href: url, download: artifact.name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (error) {
    showProblem($("#job-problem"), error, "Download failed");
  }
}

const ARTIFACTS_LISTED_OPEN = 12;

function pngs(artifacts, exclude) {
  return [...artifacts.values()].filter((a) => a.content_type === "image/png" && !exclude.has(a.name));
}

function gallery(artifacts, signal, shown) {
  const images = pngs(artifacts, shown);
  images.forEach((a) => shown.add(a.name));
  return images.length ? section("Images", h("div", { class: "gallery scroll-box" }, images.map((a) => figure(a, a.name, signal, "figure small")))) : null;
}

function genericView(root, job, doc, artifacts, signal, shown) {
  if (artifacts.has("grid.png")) {
    root.append(figure(artifacts.get("grid.png"), null, signal, "figure grid"));
    shown.add("grid.png");
  }
  const rest = gallery(artifacts, signal, shown);
  if (rest) root.append(rest);
}

function deconvnetView(root, job, doc, artifacts, signal, shown) {
  if (artifacts.has("grid.png")) {
    root.append(figure(artifacts.get("grid.png"), doc?.figure || null, signal, "figure grid", 2));
    shown.add("grid.png");
  }
  if (!doc?.items) {
    const rest = gallery(artifacts, signal, shown);
    if (rest) root.append(rest);
    return;
  }
  const facts = [["layer", `${doc.layer} (${shape(doc.layer_shape)})`], ["method", doc.method], ["projections", String(doc.items.length)]];
  root.append(h("dl", { class: "facts inline-facts" }, facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])));
  if (doc.dead_channels?.length) {
    root.append(h("p", { class: "notice" }, `Dead channels ${doc.dead_channels.join(", ")}: ${doc.dead_channels_note || "they never activate"}`));
  }
  const channels = doc.channels?.length ? doc.channels : [...new Set(doc.items.map((i) => i.channel))];
  const rows = [];
  for (const channel of channels) {
    const items = doc.items.filter((i) => i.channel === channel);
    if (!items.length) continue;
    const max = doc.channel_max_activation?.[String(channel)];
    rows.push(h("section", { class: "channel-row", dataset: { channel } },
      h("h4", {}, `Channel ${channel}`, max !== undefined ? h("span", { class: "muted" }, ` · max activation ${fmt(max)}`) : null),
      h("div", { class: "cards strip" }, items.map((item) => projectionCard(item, artifacts, signal, shown)))));
  }
  // One strip per channel, scrolled sideways; all of them in a box scrolled down: the page stays
  // short whatever top_k and the number of channels.
  root.append(section("Projections", h("p", { class: "muted small" }, "Each projection beside the image patch it came from."),
    h("div", { class: "projections scroll-box" }, rows)));
}

/** A projection beside its image patch (`patch-NNN.png`, when the job made one), and its numbers. */
function projectionCard(item, artifacts, signal, shown) {
  const number = String(item.index).padStart(3, "0");
  const projection = artifacts.get(`projection-${number}.png`);
  const patch = artifacts.get(`patch-${number}.png`);
  for (const artifact of [projection, patch]) if (artifact) shown.add(artifact.name);
  const picture = (artifact, what) => artifact
    ? h("div", { class: "picture", title: what }, artifactImage(artifact, `${what} ${item.index}`, signal, "pixelated"))
    : null;
  return h("article", { class: `item-card${patch ? " paired" : ""}`, dataset: { index: item.index, channel: item.channel } },
    h("div", { class: "pictures" },
      picture(projection, "projection") || h("div", { class: "img-missing" }, "no image"),
      picture(patch, "image patch")),
    numbers([
      ["activation", item.activation, "activation"],
      ["position", item.position ? `(${item.position.join(", ")})` : undefined, "position"],
    ]),
    h("div", { class: "card-caption", title: "the dataset image" },
      item.image_name ?? (item.image_index !== undefined && item.image_index !== null ? `image #${item.image_index}` : "inline image")));
}

function sparkline(values) {
  const width = 120;
  const height = 28;
  const finite = values.filter(Number.isFinite);
  if (finite.length < 2) return null;
  const lo = Math.min(...finite);
  const hi = Math.max(...finite);
  const span = hi - lo || 1;
  let last = finite[0];
  values = values.map((v) => (Number.isFinite(v) ? (last = v) : last)); // gaps (non-finite steps) hold the last value
  const points = values.map((v, i) => `${((i / (values.length - 1)) * width).toFixed(1)},${(height - 2 - ((v - lo) / span) * (height - 4)).toFixed(1)}`).join(" ");
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("class", "sparkline");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `activation from ${fmt(finite[0])} to ${fmt(finite.at(-1))}`);
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", points);
  svg.append(line);
  return svg;
}

function activationMaximizationView(root, job, doc, artifacts, signal, shown) {
  if (artifacts.has("grid.png")) {
    root.append(figure(artifacts.get("grid.png"), null, signal, "figure grid", 2));
    shown.add("grid.png");
  }
  const images = Array.isArray(doc?.images) ? doc.images : [];
  if (!images.length) {
    const rest = gallery(artifacts, signal, shown);
    if (rest) root.append(rest);
    return;
  }
  const objective = doc.objective || job.params?.objective;
  if (objective) {
    root.append(h("dl", { class: "facts inline-facts" },
      [["objective", objective.type], ["layer", objective.layer], ["steps", doc.params?.steps ?? job.params?.steps]]
        .filter(([, v]) => v !== undefined && v !== null)
        .flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))])));
  }
  // Per-image PNGs: named by the item when it says so, else the remaining PNGs in order.
  const named = (item) => [item.file, item.png, item.artifact, item.image, item.name].find((v) => typeof v === "string" && artifacts.has(v));
  const spare = pngs(artifacts, new Set(["grid.png", ...images.map(named).filter(Boolean)])).filter((a) => !/snapshot|summary|history/i.test(a.name));
  let next = 0;
  // Shown by name below, or not worth a line on a card.
  const known = new Set(["index", "unit", "label", "activation", "robust_activation", "dataset_max", "dataset_max_image",
    "ratio_to_dataset_max", "is_top_unit", "dead", "copy", "top_label", "file", "png", "artifact", "image", "name"]);
  const copies = new Set(images.map((item) => item.copy ?? 0)).size > 1;
  const cards = images.map((item, i) => {
    const name = named(item) || spare[next++]?.name;
    const artifact = name ? artifacts.get(name) : null;
    if (artifact) shown.add(artifact.name);
    const unit = item.label !== undefined && item.label !== null ? `${item.unit} (${item.label})` : item.unit;
    const pairs = [
      ["unit", unit === undefined || unit === null ? undefined : String(unit), "unit"],
      ["copy", copies ? String(item.copy) : undefined, "copy"],
      ["activation", item.activation, "activation"],
      ["robust activation", item.robust_activation ?? undefined, "robust_activation"],
      ["dataset max", item.dataset_max ?? undefined, "dataset_max"],
      ["ratio to dataset max", item.ratio_to_dataset_max ?? undefined, "ratio_to_dataset_max"],
      ["top unit", typeof item.is_top_unit === "boolean" ? (item.is_top_unit ? "yes" : `no (${item.top_label ?? item.top_unit ?? "?"})`) : undefined, "is_top_unit"],
      ["dead", item.dead ? "yes: the objective never moved" : undefined, "dead"],
    ];
    let history = null;
    for (const [key, value] of Object.entries(item)) {
      if (known.has(key) || value === null) continue;
      if (Array.isArray(value) && value.length > 1 && value.every((v) => v === null || typeof v === "number") && /histor|curve|trace/i.test(key)) history = history || value;
      else if (key !== "top_unit" && (typeof value === "number" || typeof value === "boolean" || (typeof value === "string" && value.length < 40))) {
        pairs.push([key.replaceAll("_", " "), typeof value === "boolean" ? String(value) : value, key]);
      }
    }
    return h("article", { class: "item-card large", dataset: { index: item.index ?? i } },
      artifact ? artifactImage(artifact, `image ${i}`, signal) : h("div", { class: "img-missing" }, "no image"),
      numbers(pairs),
      history ? sparkline(history) : null,
      item.dataset_max_image ? h("div", { class: "card-caption", title: "where the dataset's strongest activation is" }, `dataset max at ${item.dataset_max_image}`) : null);
  });
  root.append(section("Images", h("div", { class: "cards scroll-box" }, cards)));
  const rest = gallery(artifacts, signal, shown);
  if (rest) root.append(rest);
}

function tabularView(root, job, doc, artifacts, signal, shown) {
  for (const name of ["importance.png", "summary.png"]) {
    if (artifacts.has(name)) {
      root.append(figure(artifacts.get(name), null, signal, "figure chart"));
      shown.add(name);
    }
  }
  if (!doc?.rows) {
    const rest = gallery(artifacts, signal, shown);
    if (rest) root.append(rest);
    return;
  }
  const info = [["target", doc.target?.description], ["method", doc.method], ["baseline", doc.baseline?.description ?? doc.baseline?.type], ["units", doc.units]];
  root.append(h("dl", { class: "facts" }, info.filter(([, v]) => v).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))])));
  for (const warning of doc.warnings || []) root.append(h("p", { class: "notice" }, warning));
  const variables = doc.ranking?.length ? doc.ranking : doc.variables || Object.keys(doc.rows[0]?.attributions || {});
  root.append(section("Attributions", attributionTable(doc.rows, variables, doc.global_importance || {})));
  const waterfalls = pngs(artifacts, shown).filter((a) => a.name.startsWith("waterfall"));
  if (waterfalls.length) {
    waterfalls.forEach((a) => shown.add(a.name));
    root.append(h("details", { class: "result-section" }, h("summary", {}, `Per-row charts (${waterfalls.length})`),
      h("div", { class: "gallery" }, waterfalls.map((a) => figure(a, a.name, signal, "figure small")))));
  }
  const rest = gallery(artifacts, signal, shown);
  if (rest) root.append(rest);
}

function attributionTable(rows, variables, importance) {
  const columns = [
    { key: "index", label: "row", get: (r) => r.index },
    { key: "output", label: "output", get: (r) => r.output },
    { key: "baseline_output", label: "baseline", get: (r) => r.baseline_output },
    { key: "residual", label: "residual", get: (r) => r.residual, title: "completeness residual: output − baseline − Σ attributions" },
    ...variables.map((v) => ({ key: `var:${v}`, label: v, variable: v, get: (r) => r.attributions?.[v], title: importance[v] !== undefined ? `mean |attribution| ${fmt(importance[v])}` : null })),
  ];
  const scale = Math.max(1e-12, ...rows.flatMap((r) => variables.map((v) => Math.abs(r.attributions?.[v] ?? 0))));
  const table = h("table", { class: "attributions sortable" });
  const tbody = h("tbody");
  let sortKey = null;
  let descending = true;
  const headers = columns.map((column) =>
    h("th", { class: "num", scope: "col", title: column.title, dataset: { sort: column.key }, "aria-sort": "none" },
      h("button", { type: "button", class: "sort", onclick: () => sortBy(column) }, column.label)));
  table.append(h("thead", {}, h("tr", {}, headers)), tbody);

  function render(ordered) {
    tbody.replaceChildren(...ordered.map((row) =>
      h("tr", { dataset: { row: row.index } },
        columns.map((column) => {
          const value = column.get(row);
          const cell = h("td", { class: "num", dataset: { col: column.key, value: typeof value === "number" ? String(value) : null } },
            column.key === "index" ? String(value) : fmt(value));
          if (column.variable && typeof value === "number") {
            const alpha = Math.min(1, Math.abs(value) / scale) * 0.55;
            cell.style.backgroundColor = value >= 0 ? `rgba(214, 69, 65, ${alpha.toFixed(3)})` : `rgba(47, 111, 237, ${alpha.toFixed(3)})`;
          }
          return cell;
        }))));
  }

  function sortBy(column) {
    descending = sortKey === column.key ? !descending : true;
    sortKey = column.key;
    const ordered = [...rows].sort((a, b) => {
      const x = column.get(a) ?? -Infinity;
      const y = column.get(b) ?? -Infinity;
      return descending ? y - x : x - y;
    });
    for (const th of headers) th.setAttribute("aria-sort", th.dataset.sort === sortKey ? (descending ? "descending" : "ascending") : "none");
    render(ordered);
  }

  render(rows);
  return h("div", { class: "table-wrap attributions-wrap" }, table,
    h("p", { class: "muted small" }, "Red pushes the target up, blue down. Click a column to sort."));
}

function inspectionView(root, job, doc) {
  const layers = doc?.layer_list || [];
  const facts = [["layers", doc?.layers ?? layers.length], ["parameters", doc?.parameters], ["load time", doc?.load_seconds !== undefined ? `${fmt(doc.load_seconds)} s` : undefined], ["device", doc?.device]];
  root.append(h("dl", { class: "facts" }, facts.filter(([, v]) => v !== undefined && v !== null)
    .flatMap(([k, v]) => [h("dt", {}, k), h("dd", { dataset: { fact: k } }, typeof v === "number" ? v.toLocaleString("en-US") : String(v))])));
  if (layers.length) {
    root.append(section(`Layers (${layers.length})`, h("div", { class: "table-wrap layers-wrap tall" },
      h("table", { class: "layers" },
        h("thead", {}, h("tr", {}, h("th", {}, "Layer"), h("th", {}, "Type"), h("th", {}, "Output shape"), h("th", { class: "num" }, "Units"))),
        h("tbody", {}, layers.map((l) => h("tr", { dataset: { layer: l.name } },
          h("td", { class: "mono" }, l.name), h("td", {}, l.type), h("td", { class: "mono" }, shape(l.output_shape)), h("td", { class: "num" }, l.units))))))));
  }
}

const VIEWS = {
  deconvnet: deconvnetView,
  activation_maximization: activationMaximizationView,
  tabular_attribution: tabularView,
  model_inspection: inspectionView,
};

// ----------------------------------------------------------------------------- history

async function refreshHistory({ append = false } = {}) {
  const box = $("#history-problem");
  const query = new URLSearchParams({ page_size: String(HISTORY_PAGE_SIZE) });
  const status = $("#history-status").value;
  if (status) query.set("status", status);
  if (append && state.historyToken) query.set("page_token", state.historyToken);
  try {
    const page = await api(`/v1/jobs?${query}`);
    hideProblem(box);
    const tbody = $("#history-table tbody");
    if (!append) {
      tbody.replaceChildren();
      state.historyJobs.clear();
    }
    for (const job of page.items) {
      state.historyJobs.set(job.id, job);
      tbody.append(historyRow(job));
    }
    state.historyToken = page.next_page_token || null;
    $("#history-more").hidden = !state.historyToken;
    $("#history-empty").hidden = tbody.rows.length > 0;
    $("#history-table").closest(".table-wrap").hidden = tbody.rows.length === 0;
  } catch (error) {
    showProblem(box, error, "Could not list jobs");
  }
}

function historyRow(job) {
  const badge = h("span");
  statusBadge(badge, job);
  const active = ACTIVE.has(job.status);
  const actions = h("td", { class: "actions-col" },
    h("button", { type: "button", class: "link", dataset: { action: "open" }, onclick: (e) => { e.stopPropagation(); openJob(job.id, TERMINAL.has(job.status) ? job : null); } }, "Open"),
    active
      ? h("button", { type: "button", class: "link", dataset: { action: "cancel" }, onclick: (e) => { e.stopPropagation(); rowAction(job.id, "cancel"); } }, "Cancel")
      : deleteButton(job.id));
  const progress = active && job.status === "running" ? h("span", { class: "muted small" }, ` ${Math.round((job.progress?.fraction || 0) * 100)}%`) : null;
  return h("tr", {
    dataset: { jobId: job.id, status: job.status },
    class: state.job?.id === job.id ? "current" : null,
    onclick: () => openJob(job.id, TERMINAL.has(job.status) ? job : null),
  },
  h("td", { class: "nowrap" }, fmtTime(job.created_at)),
  h("td", { class: "mono", title: job.id }, job.id.slice(-8)),
  h("td", {}, job.kind),
  h("td", { class: "mono ellipsis", title: job.model }, job.model),
  h("td", { class: "nowrap" }, badge, progress),
  actions);
}

function updateHistoryRow(job) {
  const row = [...$("#history-table tbody").rows].find((r) => r.dataset.jobId === job.id);
  if (!row) return;
  const previous = row.dataset.status;
  state.historyJobs.set(job.id, job);
  row.replaceWith(historyRow(job));
  if (previous !== job.status && TERMINAL.has(job.status)) refreshHistory();
}

const DELETE_CONFIRM_MS = 4000;

/** Delete asks once more; the question survives the row being drawn again meanwhile. */
function deleteButton(jobId) {
  const pending = state.pendingDelete?.id === jobId && Date.now() < state.pendingDelete.until;
  return h("button", {
    type: "button",
    class: "link danger",
    dataset: { action: "delete", confirm: pending ? "yes" : null },
    onclick: (e) => {
      e.stopPropagation();
      confirmDelete(e.currentTarget, jobId);
    },
  }, pending ? "Confirm delete" : "Delete");
}

function confirmDelete(button, jobId) {
  if (state.pendingDelete?.id === jobId && Date.now() < state.pendingDelete.until) {
    state.pendingDelete = null;
    rowAction(jobId, "delete");
    return;
  }
  state.pendingDelete = { id: jobId, until: Date.now() + DELETE_CONFIRM_MS };
  button.dataset.confirm = "yes";
  button.textContent = "Confirm delete";
  setTimeout(() => {
    if (state.pendingDelete?.id !== jobId || Date.now() < state.pendingDelete.until) return;
    state.pendingDelete = null;
    for (const other of document.querySelectorAll(`#history-table tr[data-job-id="${jobId}"] [data-action="delete"]`)) {
      delete other.dataset.confirm;
      other.textContent = "Delete";
    }
  }, DELETE_CONFIRM_MS + 50);
}

async function rowAction(jobId, action) {
  const box = $("#history-problem");
  hideProblem(box);
  try {
    if (action === "cancel") await cancelJob(jobId);
    else await deleteJob(jobId);
  } catch (error) {
    showProblem(box, error, `Could not ${action} the job`);
  }
  await refreshHistory();
}

function pollHistory() {
  if (document.visibilityState !== "visible" || keyPrompt) return;
  if ([...state.historyJobs.values()].some((j) => ACTIVE.has(j.status))) refreshHistory();
}

// -------------------------------------------------------------------------------- init

function bind() {
  $("#model-select").addEventListener("change", (e) => {
    state.modelChosen = true;
    selectModel(e.target.value).catch((error) => reportAppError(error, "Could not load the model"));
  });
  $("#weights-select").addEventListener("change", () => {
    $("#weights-seed-field").hidden = $("#weights-select").value !== "random";
    updatePreview();
  });
  $("#weights-seed").addEventListener("input", updatePreview);
  $("#layer-filter").addEventListener("input", filterLayers);
  $("#unit-input").addEventListener("input", onUnitInput);
  $("#clear-unit").addEventListener("click", () => {
    state.unit = null;
    renderSelection();
    applySelection();
  });
  $("#kind-select").addEventListener("change", () => {
    state.kindChosen = true;
    renderKindForm();
  });
  $("#service-wait-now").addEventListener("click", () => catalogWaiter.wake());
  $("#extra-params").addEventListener("input", updatePreview);
  $("#job-form").addEventListener("submit", submitJob);
  $("#inspect-model").addEventListener("click", inspectModel);
  $("#job-cancel").addEventListener("click", () => state.job && cancelJob(state.job.id).catch((error) => showProblem($("#job-problem"), error, "Could not cancel")));
  $("#history-refresh").addEventListener("click", () => refreshHistory());
  $("#history-more").addEventListener("click", () => refreshHistory({ append: true }));
  $("#history-status").addEventListener("change", () => refreshHistory());
  $("#forget-key").addEventListener("click", () => {
    apiKey = null;
    sessionStorage.removeItem(KEY_STORAGE);
    location.reload();
  });
  // A link to #job=<id> (or back/forward between them) opens that job.
  window.addEventListener("hashchange", () => {
    const match = /^#job=([0-9a-z]+)$/.exec(location.hash);
    if (match && match[1] !== state.job?.id) openJob(match[1]);
  });
  // The key dialog stays until a key is given: every request waits on it.
  $("#key-dialog").addEventListener("cancel", (e) => e.preventDefault());
}

async function init() {
  bind();
  renderAuthState();
  const waiting = await refreshCatalog();
  if (waiting) waitForCatalog(waiting); // goes on by itself: the page fills in when the models come
  await refreshHistory();
  const match = /^#job=([0-9a-z]+)$/.exec(location.hash);
  if (match) openJob(match[1]);
  setInterval(pollHistory, HISTORY_POLL_MS);
  document.body.dataset.ready = "true";
}

init();
