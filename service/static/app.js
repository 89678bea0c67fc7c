// Glassbox web page: a client of the /v1 API, no build step, no framework; ES modules in
// service/static/ (this one starts the page: models, layers, kinds, and waiting for them).

import { $, h, shape, deepEqual, modelPath } from "./dom.js";
import { ApiError, readProblem, api, forgetKey, renderAuthState, showProblem, reportAppError } from "./api.js";
import { state } from "./state.js";
import { renderKindForm, applySelection, updatePreview } from "./form.js";
import { submitJob, inspectModel, openJob, cancelJob } from "./job.js";
import { HISTORY_POLL_MS, refreshHistory, pollHistory } from "./history.js";

// Kinds tried first for a model of each kind (the first one this deployment runs wins).
const PREFERRED_KINDS = {
  image: ["deconvnet", "activation_maximization"],
  tabular: ["tabular_attribution"],
};

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
  $("#submit-job").disabled = !state.model; // a job needs a model: none is listed yet
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
    forgetKey();
    location.reload();
  });
  // A model_inspection job of the model shown has listed its layers: show them.
  document.addEventListener("glassbox:inspected", (event) => {
    if (state.model && event.detail.model.split("?")[0] === state.model.id) {
      selectModel(state.model.id).catch((error) => reportAppError(error, "Reloading the model failed"));
    }
  });
  // A link to #job=<id> (or back/forward between them) opens that job.
  window.addEventListener("hashchange", () => {
    const match = /^#job=([0-9a-z]+)$/.exec(location.hash);
    if (match && match[1] !== state.job?.id) openJob(match[1]);
  });
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
