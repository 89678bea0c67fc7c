// A finished job's result: one view per job kind (the figure first, then each item with its
// numbers, then the artifacts), a plain gallery for kinds it does not know.

import { $, h, fmt, fmtBytes, shape } from "./dom.js";
import { ApiError, api, showProblem } from "./api.js";
import { state } from "./state.js";
import { interactionSections } from "./interactions.js";
import { atlasResultView } from "./atlas_result.js";
import { actmaxTrust, projectionTrust } from "./trust.js";

export function revokeBlobs() {
  for (const url of state.blobUrls) URL.revokeObjectURL(url);
  state.blobUrls = [];
}

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

export async function renderOutcome(job, signal) {
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
  if (job.kind === "model_inspection") document.dispatchEvent(new CustomEvent("glassbox:inspected", { detail: job }));
}

function section(title, ...children) {
  return h("section", { class: "result-section" }, h("h3", {}, title), ...children);
}

// Where a job's time went (result.summary.timings), in the order it was spent.
const TIMING_LABELS = [["queue_wait_seconds", "queue wait"], ["load_seconds", "load"], ["compute_seconds", "compute"],
  ["artifacts_seconds", "artifacts"], ["worker_seconds", "on the worker"]];

function summaryValue(key, value) {
  if (key === "timings" && value && typeof value === "object") {
    return TIMING_LABELS.filter(([name]) => typeof value[name] === "number")
      .map(([name, label]) => `${label} ${milliseconds(value[name])}`).join(" · ");
  }
  if (value !== null && typeof value === "object") return JSON.stringify(value);
  return typeof value === "number" ? fmt(value) : String(value);
}

function milliseconds(seconds) {
  return seconds < 1 ? `${Math.round(seconds * 1000)} ms` : `${Number(seconds.toFixed(2))} s`;
}

function commonFooter(job, doc, artifacts, signal) {
  const wrap = h("div", { class: "result-footer" });
  const summary = job.result?.summary || {};
  if (Object.keys(summary).length) {
    wrap.append(section("Summary", h("dl", { class: "facts summary" },
      Object.entries(summary).flatMap(([k, v]) => [
        h("dt", {}, k),
        h("dd", { dataset: { summary: k } }, summaryValue(k, v)),
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
  const trust = projectionTrust(doc);
  if (trust) root.append(trust);
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
    "ratio_to_dataset_max", "is_top_unit", "dead", "copy", "top_label", "file", "png", "artifact", "image", "name",
    "path_similarity", "path_flagged"]);
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
      ["path similarity", typeof item.path_similarity === "number" ? `${fmt(item.path_similarity)}${item.path_flagged ? " (flagged)" : ""}` : undefined, "path_similarity", item.path_similarity],
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
  const trust = actmaxTrust(doc);
  if (trust) root.append(trust);
  if (artifacts.has("accentuation.png")) {
    root.append(section("Feature accentuation", figure(artifacts.get("accentuation.png"), null, signal, "figure grid")));
    shown.add("accentuation.png");
  }
  const alphas = pngs(artifacts, shown).filter((a) => a.name.endsWith("-alpha.png"));
  if (alphas.length) {
    alphas.forEach((a) => shown.add(a.name));
    root.append(section("Transparency (MACO)", h("p", { class: "muted small" }, "Each image with its transparency map as alpha: what did not matter to the unit fades out."),
      h("div", { class: "gallery checkered" }, alphas.map((a) => figure(a, a.name, signal, "figure small")))));
  }
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
  for (const part of interactionSections(doc, artifacts, signal, shown, figure) || []) root.append(part);
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
  atlas: (...view) => atlasResultView(...view, figure),
};
