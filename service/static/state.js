// What the page shows and what is selected, shared by its modules.

import { $ } from "./dom.js";

export const TERMINAL = new Set(["succeeded", "failed", "canceled"]);
export const ACTIVE = new Set(["queued", "running"]);
const DATASET_KIND = { image: "images", tabular: "table" };

export const state = {
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

export function currentKind() {
  return state.kinds.find((k) => k.name === $("#kind-select").value) || null;
}

/** The dataset a model is meant for: the one its description names, else the first of its kind. */
export function suggestedDataset() {
  const info = state.model;
  if (!info) return null;
  const fitting = state.datasets.filter((d) => !DATASET_KIND[info.kind] || d.kind === DATASET_KIND[info.kind]);
  const named = fitting.find((d) => (info.description || "").includes(d.id));
  return (named || fitting[0])?.id ?? null;
}

/** The model as a job names it: torchvision models carry their weights choice. */
export function modelRef() {
  const info = state.model;
  if (!info) return "";
  if (info.source !== "torchvision") return info.id;
  if ($("#weights-select").value === "random") return `${info.id}?weights=random&seed=${Number($("#weights-seed").value) || 0}`;
  return info.id;
}
