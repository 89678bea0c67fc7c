// A finished atlas job on the main page: a link to its atlas view (/atlas/<job id>, where every
// unit is browsable), what result.json says, and the overview sheet. Not each unit's pictures:
// a layer of 512 units has over 1,500, which the atlas view loads as they come into sight.

import { h, fmt } from "./dom.js";

const SHEET = "sheet-feature-visualizations.png";

/** As results.js's views are called, and its `figure` (an artifact shown with the key). */
export function atlasResultView(root, job, doc, artifacts, signal, shown, figure) {
  for (const name of artifacts.keys()) if (name.startsWith("units/") || name.startsWith("sheet-")) shown.add(name);
  const units = doc?.units;
  root.append(h("p", { class: "notice atlas-open" },
    h("a", { href: `/atlas/${job.id}`, class: "atlas-link", dataset: { atlas: job.id } },
      `Open the atlas${typeof units === "number" ? ` of ${units} units` : ""}`),
    " to browse every unit: its feature visualization, exemplars and numbers, each at a link of its own."));
  if (doc) {
    const facts = [
      ["layer", doc.layer],
      ["dataset", doc.dataset],
      ["units", units],
      ["dead units", Array.isArray(doc.dead_units) ? (doc.dead_units.length ? doc.dead_units.join(", ") : "none") : undefined],
      ["chunks", doc.chunks !== undefined ? `${doc.chunks}${doc.chunks_reused ? ` (${doc.chunks_reused} reused)` : ""}` : undefined],
    ];
    root.append(h("dl", { class: "facts inline-facts" },
      facts.filter(([, v]) => v !== undefined && v !== null).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, typeof v === "number" ? fmt(v) : String(v))])));
    if (doc.note) root.append(h("div", { class: "muted small" }, doc.note));
  }
  if (artifacts.has(SHEET)) {
    root.append(figure(artifacts.get(SHEET), "Every unit's feature visualization, in the atlas's unit order", signal, "figure grid"));
  }
}
