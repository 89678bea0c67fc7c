// From a unit's page, a deconvnet or activation-maximization job on that unit with other
// settings than the atlas used: a small form each, prefilled from the atlas job, that submits
// the job (POST /v1/jobs) and links to it on the main page, where it runs and shows.

import { h } from "./dom.js";
import { api, showProblem, hideProblem } from "./api.js";

const METHODS = ["deconvnet", "guided_backprop", "saliency"];
// The activation-maximization fields this form shows; the atlas's other rendering params go in
// the JSON box, so that the job starts from the atlas's own settings.
const RENDERING_FIELDS = new Set(["steps", "size", "images_per_unit", "diversity", "objective", "seed"]);

export function jobForms(unit, { atlas, job, kinds }) {
  const params = job.params || {};
  const layer = atlas.layer.name;
  const dataset = atlas.dataset || params.dataset || "";
  const rendering = params.feature_visualization || {};
  const rest = Object.fromEntries(Object.entries(rendering).filter(([key]) => !RENDERING_FIELDS.has(key)));
  const deconvnet = jobForm({
    kind: "deconvnet",
    title: "Deconvnet",
    description: `The images of ${dataset} that excite unit ${unit.unit} most, projected back to pixels.`,
    kinds,
    model: job.model,
    fields: [
      field("dataset", "dataset", "text", dataset),
      field("top_k", "top k", "number", params.top_k ?? 9, { min: 1 }),
      field("method", "method", "select", params.method || "deconvnet", { options: METHODS }),
    ],
    extra: {},
    build: (values) => ({ layer, channels: [unit.unit], ...values }),
  });
  const maximization = jobForm({
    kind: "activation_maximization",
    title: "Activation maximization",
    description: `Images optimized from noise to excite unit ${unit.unit} (a channel objective).`,
    kinds,
    model: job.model,
    fields: [
      field("steps", "steps", "number", rendering.steps ?? 256, { min: 1 }),
      field("size", "size (px)", "number", rendering.size ?? 128, { min: 8 }),
      field("images_per_unit", "images", "number", rendering.images_per_unit ?? 1, { min: 1 }),
      field("diversity", "diversity", "number", rendering.diversity ?? 0, { min: 0, step: "any" }),
      field("seed", "seed", "number", params.seed ?? 0, { min: 0 }),
    ],
    extra: rest,
    build: (values) => ({
      objective: { type: "channel", layer, units: [unit.unit] },
      ...(dataset ? { reference_dataset: dataset } : {}),
      ...values,
    }),
  });
  return h("section", { class: "result-section run-jobs" },
    h("h3", {}, "Run a job on this unit"),
    h("p", { class: "muted small" }, "With other settings than the atlas used. The job opens on the main page."),
    h("div", { class: "job-forms" }, deconvnet, maximization));
}

function field(name, label, type, value, options = {}) {
  return { name, label, type, value, ...options };
}

function input(spec) {
  if (spec.type === "select") {
    const select = h("select", { name: spec.name }, spec.options.map((o) => h("option", { value: o }, o)));
    select.value = spec.value;
    return select;
  }
  return h("input", { name: spec.name, type: spec.type, value: spec.value, min: spec.min, step: spec.step });
}

function jobForm({ kind, title, description, kinds, model, fields, extra, build }) {
  const available = !kinds || kinds.includes(kind);
  const inputs = fields.map((spec) => [spec, input(spec)]);
  const extraBox = h("textarea", { name: "extra", rows: 2, spellcheck: "false" });
  extraBox.value = Object.keys(extra).length ? JSON.stringify(extra) : "";
  const problem = h("div", { class: "problem", role: "alert", hidden: true });
  const outcome = h("p", { class: "small job-outcome", "aria-live": "polite" });
  const button = h("button", { type: "submit", class: "secondary", disabled: !available }, `Run ${kind}`);
  const form = h("form", { class: "job-form", dataset: { kind }, novalidate: true },
    h("h4", {}, title),
    h("p", { class: "muted small" }, available ? description : `This deployment does not run ${kind} jobs.`),
    h("div", { class: "param-fields" }, inputs.map(([spec, control]) => h("label", { class: "field", dataset: { param: spec.name } },
      h("span", { class: "field-label" }, spec.label), control))),
    h("label", { class: "field" }, h("span", { class: "field-label" }, "Other params (JSON, merged over the fields)"), extraBox),
    problem,
    h("div", { class: "actions" }, outcome, h("span", { class: "spacer" }), button));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    hideProblem(problem);
    outcome.replaceChildren();
    let params;
    try {
      const values = {};
      for (const [spec, control] of inputs) {
        const raw = control.value.trim();
        if (raw === "") continue;
        values[spec.name] = spec.type === "number" ? Number(raw) : raw;
      }
      const more = extraBox.value.trim() ? JSON.parse(extraBox.value) : {};
      if (more === null || typeof more !== "object" || Array.isArray(more)) throw new Error("Other params must be a JSON object");
      params = { ...build(values), ...more };
    } catch (error) {
      showProblem(problem, error, "Not sent");
      return;
    }
    button.disabled = true;
    try {
      const created = await api("/v1/jobs", { method: "POST", json: { kind, model, params } });
      form.dataset.jobId = created.id;
      outcome.append(`Job `, h("code", {}, created.id), ` ${created.status}: `,
        h("a", { href: `/#job=${created.id}`, class: "job-open" }, "open it"));
    } catch (error) {
      showProblem(problem, error, "The request failed");
    } finally {
      button.disabled = false;
    }
  });
  return form;
}
