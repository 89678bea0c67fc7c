// The job form, drawn from the kind's params JSON Schema (GET /v1/kinds): one field per
// parameter it can edit, the rest in a JSON box, the layer and unit selection put into the
// parameters that name them, and the request body it makes.

import { $, h, deepEqual } from "./dom.js";
import { hideProblem } from "./api.js";
import { state, modelRef, currentKind, suggestedDataset } from "./state.js";
import { scheduleEstimate } from "./estimate.js";

// Parameters filled from the layer/unit selection and the model's datasets.
const LAYER_PARAMS = new Set(["layer"]);
const UNITS_PARAMS = new Set(["channels", "units"]);
const UNIT_PARAMS = new Set(["unit"]);
const DATASET_PARAMS = new Set(["dataset", "reference_dataset"]);
// What a person at the page looks at although the API makes it for large jobs only by default:
// a tabular attribution's charts (`charts`, drawn unasked from 50 rows on).
const PAGE_DEFAULTS = { charts: true };
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

export function renderKindForm() {
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
    if (!field.group && field.path.length === 1 && field.name in PAGE_DEFAULTS && field.read() === undefined) field.write(PAGE_DEFAULTS[field.name]);
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
export function applySelection() {
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
export function buildRequest() {
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

export function updatePreview() {
  try {
    $("#request-preview").textContent = JSON.stringify(buildRequest(), null, 1);
  } catch (error) {
    $("#request-preview").textContent = error.message;
  }
  scheduleEstimate();
}

export function markFieldErrors(problem) {
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
