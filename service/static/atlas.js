// The atlas view (/atlas/<job id>, /atlas/<job id>/units/<n>): every unit of a layer as a
// grid, each unit on a page of its own. One HTML page for every such URL (service/api/web.py);
// this script reads the path, and moves between the grid and the units with history.pushState,
// so that every unit has a link and the back button goes back. The grid's sort and filters are
// in the query string (?sort=mean_activation&label=circle), so a sorted view is a link too.

import { $, h, shape } from "./dom.js";
import { ApiError, api, followJob, forgetKey, renderAuthState, showProblem } from "./api.js";
import { TERMINAL } from "./state.js";
import { ArtifactImages } from "./atlas_images.js";
import { SORTS, UnitGrid, gridSettings, settingsQuery, shownUnits } from "./atlas_grid.js";
import { renderUnit } from "./atlas_unit.js";

const PATH = /^\/atlas\/([0-9a-z]+)(?:\/units\/(\d+))?\/?$/;

const page = {
  jobId: null,
  job: null,
  atlas: null,
  units: new Map(), // unit number -> its entry of atlas.json
  images: null, // ArtifactImages
  grid: null, // UnitGrid
  kinds: null, // the job kinds this deployment runs (null: unknown)
  settings: null, // the grid's sort and filters
};

function where() {
  const match = PATH.exec(location.pathname);
  return match ? { jobId: match[1], unit: match[2] === undefined ? null : Number(match[2]) } : null;
}

function query() {
  return settingsQuery(page.atlas, page.settings);
}

const gridUrl = () => `/atlas/${page.jobId}${query()}`;
const unitUrl = (n) => `/atlas/${page.jobId}/units/${n}${query()}`;

/** Go to a URL of this page without loading it again; the current view's scroll is kept for back. */
function navigate(url, from) {
  history.replaceState({ ...(history.state || {}), scroll: window.scrollY }, "");
  history.pushState({ from }, "", url);
  show();
}

function view(name) {
  document.body.dataset.view = name;
  $("#atlas-loading").hidden = name !== "loading";
  $("#grid-view").hidden = name !== "grid";
  $("#unit-view").hidden = name !== "unit";
}

/** Show what the URL names: the grid, or a unit. */
function show() {
  const here = where();
  page.settings = gridSettings(page.atlas, location.search);
  const shown = page.grid.apply(page.settings);
  if (here.unit === null) {
    delete document.body.dataset.unit;
    view("grid");
    document.title = `Atlas of ${page.atlas.layer.name} · Glassbox`;
    window.scrollTo(0, history.state?.scroll ?? 0);
    return;
  }
  showUnit(here.unit, shown);
  window.scrollTo(0, history.state?.scroll ?? 0);
}

function showUnit(number, shown) {
  const unit = page.units.get(number);
  document.body.dataset.unit = String(number);
  document.title = `Unit ${number} of ${page.atlas.layer.name} · Atlas · Glassbox`;
  view("unit");
  const back = $("#back-to-grid");
  back.href = gridUrl();
  if (!unit) {
    const box = h("div", { class: "problem", role: "alert" });
    showProblem(box, new ApiError(404, {
      title: "No such unit in this atlas",
      detail: `Unit ${number} is not one of the ${page.units.size} units of this atlas of ${page.atlas.layer.name}.`,
    }));
    $("#unit-body").replaceChildren(box);
    for (const id of ["#prev-unit", "#next-unit"]) $(id).hidden = true;
    $("#unit-position").textContent = "";
    return;
  }
  // Previous and next in the grid's order; through every unit when the filter leaves this one out.
  let order = shown;
  if (!order.includes(number)) order = shownUnits(page.atlas, { ...page.settings, show: "all", label: "" });
  const at = order.indexOf(number);
  neighbour($("#prev-unit"), order[at - 1]);
  neighbour($("#next-unit"), order[at + 1]);
  const sort = SORTS.find((s) => s.key === page.settings.sort);
  $("#unit-position").textContent = `${at + 1} of ${order.length} by ${sort.label}`;
  renderUnit($("#unit-body"), unit, page);
}

function neighbour(link, number) {
  link.hidden = number === undefined;
  if (number === undefined) return;
  link.href = unitUrl(number);
  link.dataset.unit = String(number);
}

function bind() {
  window.addEventListener("popstate", () => page.atlas && show());
  const follow = (event, go) => {
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    go();
  };
  for (const id of ["#prev-unit", "#next-unit"]) {
    $(id).addEventListener("click", (event) => follow(event, () => navigate(unitUrl(Number($(id).dataset.unit)), "unit")));
  }
  // Back to the grid this unit was opened from: the history's own back (its scroll kept).
  $("#back-to-grid").addEventListener("click", (event) => follow(event, () => {
    if (history.state?.from === "grid") history.back();
    else navigate(gridUrl(), "unit");
  }));
  document.addEventListener("keydown", (event) => {
    if (document.body.dataset.view !== "unit" || event.altKey || event.ctrlKey || event.metaKey) return;
    if (event.target.closest?.("input, textarea, select, dialog")) return;
    const target = { ArrowLeft: "#prev-unit", ArrowRight: "#next-unit", Escape: "#back-to-grid" }[event.key];
    if (target && !$(target).hidden) {
      event.preventDefault();
      $(target).click();
    }
  });
  $("#forget-key").addEventListener("click", () => {
    forgetKey();
    location.reload();
  });
}

function loadingState(job) {
  const badge = $("#atlas-status");
  badge.hidden = false;
  badge.textContent = job.status;
  badge.className = `badge status-${job.status}`;
  const fraction = Math.max(0, Math.min(1, Number(job.progress?.fraction) || 0));
  $("#atlas-progress").hidden = TERMINAL.has(job.status);
  $("#atlas-progress-bar").style.width = `${(fraction * 100).toFixed(1)}%`;
  $("#atlas-loading-text").textContent = job.status === "succeeded"
    ? "Loading the atlas…"
    : `Atlas job ${job.id}: ${Math.round(fraction * 100)}%${job.progress?.message ? ` · ${job.progress.message}` : ""}`;
}

/** The job, followed until it ends when it is still running. */
async function finishedJob(jobId) {
  let job = await api(`/v1/jobs/${jobId}`);
  if (job.kind !== "atlas") {
    throw new ApiError(0, { title: "Not an atlas", detail: `Job ${jobId} is a ${job.kind} job: its result is on the main page.` });
  }
  loadingState(job);
  if (!TERMINAL.has(job.status)) {
    const controller = new AbortController();
    job = await followJob(jobId, {
      onStatus: (j) => loadingState({ ...j, id: jobId }),
      onProgress: (p) => loadingState({ id: jobId, status: "running", progress: p }),
    }, controller.signal);
    loadingState(job);
  }
  if (job.status !== "succeeded") {
    const error = job.error || {};
    throw new ApiError(0, { title: `The atlas job ${job.status}`, detail: [error.title, error.detail].filter(Boolean).join(": ") || null });
  }
  return job;
}

function renderHead(atlas, job) {
  $("#atlas-title").textContent = `Atlas of ${atlas.layer.name}`;
  $("#atlas-tagline").textContent = `${atlas.model} · ${atlas.layer.name}`;
  const dead = atlas.units.filter((u) => u.dead).length;
  const facts = [
    ["model", atlas.model],
    ["dataset", atlas.dataset],
    ["layer", `${atlas.layer.name} (${[atlas.layer.type, shape(atlas.layer.output_shape)].filter(Boolean).join(", ")})`],
    ["units", String(atlas.units.length)],
    ["dead", String(dead)],
    ["exemplars", `top ${atlas.top_k}${atlas.bottom_k ? `, bottom ${atlas.bottom_k}` : ""}, ${atlas.method}`],
  ];
  $("#atlas-facts").replaceChildren(...facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", { dataset: { fact: k } }, v)]));
  $("#job-link").href = `/#job=${job.id}`;
  $("#job-link").textContent = `Job ${job.id.slice(-8)}`;
}

async function init() {
  bind();
  renderAuthState();
  history.scrollRestoration = "manual";
  const here = where();
  if (!here) {
    showProblem($("#atlas-problem"), new ApiError(404, { title: "Not an atlas URL", detail: "Atlas URLs are /atlas/<job id> and /atlas/<job id>/units/<n>." }));
    view("loading");
    return;
  }
  page.jobId = here.jobId;
  $("#job-link").href = `/#job=${here.jobId}`;
  try {
    const job = await finishedJob(here.jobId);
    const artifacts = new Map((job.result?.artifacts || []).map((a) => [a.name, a]));
    const ref = artifacts.get("atlas.json");
    if (!ref) throw new ApiError(0, { title: "No atlas.json", detail: `Job ${job.id} has no atlas.json artifact.` });
    const [atlas, kinds] = await Promise.all([
      api(ref.url, { raw: true, headers: { Accept: "*/*" } }).then((r) => r.json()),
      api("/v1/kinds").then((list) => list.map((k) => k.name), () => null),
    ]);
    Object.assign(page, { job, atlas, kinds, units: new Map(atlas.units.map((u) => [u.unit, u])), images: new ArtifactImages(artifacts) });
    renderHead(atlas, job);
    page.grid = new UnitGrid(atlas, page.images, {
      href: (n) => `/atlas/${page.jobId}/units/${n}`,
      open: (n) => navigate(unitUrl(n), "grid"),
      changed: (settings) => {
        page.settings = settings;
        history.replaceState(history.state, "", gridUrl());
      },
    });
    show();
    document.body.dataset.ready = "true";
  } catch (error) {
    console.warn("the atlas could not be shown", error);
    view("loading");
    $("#atlas-loading-text").textContent = "";
    showProblem($("#atlas-problem"), error, "The atlas could not be shown");
    document.body.dataset.view = "error";
  }
}

init();
