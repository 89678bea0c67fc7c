// One unit of an atlas: its feature visualization beside its strongest dataset patch, its
// exemplar strip (projections above the patches they came from), its numbers, the classes it
// prefers, and forms to run a deconvnet or activation-maximization job on it with other settings.

import { h, fmt } from "./dom.js";
import { jobForms } from "./atlas_jobs.js";

const TILE = 64; // the atlas's picture cells (worker/kinds/atlas/pictures.py), px
const GAP = 2;

export function renderUnit(root, unit, { atlas, job, images, kinds }) {
  const parts = [
    h("div", { class: "unit-head" },
      h("h2", { id: "unit-title" }, `Unit ${unit.unit}`, h("span", { class: "muted" }, ` of ${atlas.layer.name}`)),
      unit.dead ? h("span", { class: "badge dead-badge", dataset: { dead: "true" } }, "dead") : null),
    unit.dead ? h("p", { class: "notice" }, "This unit never activates on the dataset (its maximum is zero or less): its exemplars are arbitrary.") : null,
    h("div", { class: "unit-top" },
      pictures(unit, images),
      h("div", { class: "unit-facts" },
        h("h3", {}, "Numbers"), numbers(unit),
        unit.labels ? h("h3", {}, "Class selectivity") : null,
        unit.labels ? selectivity(unit.labels, unit.top.length) : null)),
    exemplars(unit, atlas, images),
    jobForms(unit, { atlas, job, kinds }),
  ];
  root.replaceChildren(...parts.filter(Boolean)); // (replaceChildren would write a null as "null")
}

function picture(images, name, caption, className) {
  if (!name || !images.has(name)) return null;
  const img = h("img", { alt: caption, class: "pixelated", decoding: "async" });
  images.show(img, name, { first: true });
  return h("figure", { class: `unit-picture ${className}`, dataset: { artifact: name } }, img, h("figcaption", {}, caption));
}

function pictures(unit, images) {
  const fv = unit.feature_visualization;
  const best = unit.top[0];
  const fvCaption = fv
    ? `Feature visualization: activation ${fmt(fv.activation)}${fv.ratio_to_dataset_max !== null && fv.ratio_to_dataset_max !== undefined ? `, ${fmt(fv.ratio_to_dataset_max)}× the dataset's max` : ""}`
    : "";
  return h("div", { class: "unit-pictures" },
    fv ? picture(images, unit.images?.fv || fv.image, fvCaption, "fv") : h("p", { class: "muted small" }, "No feature visualization (the atlas skipped them)."),
    best ? picture(images, unit.images?.best, `Strongest exemplar: ${best.image_name}${best.label ? ` (${best.label})` : ""}, activation ${fmt(best.activation)}`, "best") : null);
}

function numbers(unit) {
  const fv = unit.feature_visualization;
  const rows = [
    ["max activation", unit.max_activation, "max_activation"],
    ["mean activation", unit.mean_activation, "mean_activation"],
    ["std of activation", unit.std_activation, "std_activation"],
    ["fraction positive", unit.fraction_positive, "fraction_positive"],
    ["dead", unit.dead ? "yes" : "no", "dead"],
  ];
  if (fv) {
    rows.push(
      ["feature visualization's activation", fv.activation, "fv_activation"],
      ["… / dataset max", fv.ratio_to_dataset_max, "ratio_to_dataset_max"],
      ["strongest unit of the layer on it", fv.is_top_unit ? "yes" : "no", "is_top_unit"],
    );
    if (fv.dead) rows.push(["rendering", "stalled: the objective never moved", "fv_dead"]);
  }
  return h("dl", { class: "facts unit-numbers" }, rows.flatMap(([label, value, field]) => [
    h("dt", {}, label),
    h("dd", { class: "num", dataset: fieldData(field, value) }, typeof value === "number" ? fmt(value) : value ?? "–"),
  ]));
}

/** data-field, and data-value with the exact number where there is one (what tests read). */
function fieldData(field, value) {
  return typeof value === "number" ? { field, value: String(value) } : { field };
}

function selectivity(labels, topCount) {
  const index = labels.class_selectivity;
  const meter = typeof index === "number"
    ? h("meter", { min: 0, max: 1, value: index, title: `class selectivity index ${fmt(index)}` })
    : null;
  return h("div", { class: "selectivity" },
    h("p", { class: "small" },
      h("strong", { dataset: fieldData("class_selectivity", index) }, typeof index === "number" ? fmt(index) : "–"),
      " ", meter, " ",
      h("span", { class: "muted" }, "0: responds alike to every class, 1: to one class only (Morcos et al. 2018)")),
    labels.best_class !== null && labels.best_class !== undefined
      ? h("p", { class: "small" }, "Highest mean activation on class ", h("strong", { dataset: { field: "best_class" } }, labels.best_class),
        ` (${fmt(labels.best_class_mean)})`)
      : null,
    labels.top_classes?.length
      ? h("div", { class: "top-classes" },
        h("p", { class: "small muted" }, `Classes of the top ${topCount} exemplars:`),
        h("ul", {}, labels.top_classes.map((c) => h("li", { dataset: { label: c.label } },
          h("span", { class: "class-name" }, c.label),
          bar(c.count / Math.max(1, topCount)),
          h("span", { class: "num small" }, `${c.count} of ${topCount}`)))))
      : null);
}

function bar(share) {
  const fill = h("span", { class: "class-fill" });
  fill.style.width = `${(Math.min(1, share) * 100).toFixed(1)}%`;
  return h("span", { class: "class-bar" }, fill);
}

/** The exemplar strip with its rows named, and the exemplars in a table beside it. */
function exemplars(unit, atlas, images) {
  const name = unit.images?.exemplars;
  const bottom = unit.bottom || [];
  const rows = unit.top.length ? ["projections", "image patches"] : [];
  if (bottom.length) rows.push("bottom exemplars");
  const columns = Math.max(unit.top.length, bottom.length, 1);
  const width = columns * (TILE + GAP) - GAP;
  const scale = width * 2 <= 1100 ? 2 : width <= 1100 ? 1 : 1100 / width;
  const strip = h("div", { class: "strip" });
  strip.style.setProperty("--cell", `${TILE * scale}px`);
  strip.style.setProperty("--gap", `${GAP * scale}px`);
  const img = name && images.has(name) ? h("img", { alt: `unit ${unit.unit}: projections and image patches`, class: "pixelated", decoding: "async" }) : null;
  if (img) {
    img.style.width = `${width * scale}px`;
    images.show(img, name, { first: true });
  }
  const highlight = h("div", { class: "column-highlight", hidden: true });
  strip.append(
    h("div", { class: "strip-rows" }, rows.map((row) => h("span", {}, row))),
    h("div", { class: "strip-picture" },
      h("div", { class: "strip-ranks" }, Array.from({ length: columns }, (_, i) => h("span", {}, i + 1))),
      img ? h("div", { class: "strip-image" }, img, highlight) : h("div", { class: "img-missing" }, "no picture")));
  const mark = (i) => {
    highlight.hidden = i === null;
    if (i !== null) highlight.style.left = `${i * (TILE + GAP) * scale}px`;
  };
  const table = exemplarTable("top-exemplars", unit.top, mark);
  const parts = [h("p", { class: "muted small" }, `The top ${unit.top.length} exemplars (${atlas.method} projections above the image patches they came from), strongest first.`), strip, table];
  if (bottom.length) parts.push(h("h4", {}, "Bottom exemplars"), exemplarTable("bottom-exemplars", bottom, () => {}));
  return h("section", { class: "result-section exemplars" }, h("h3", {}, "Exemplars"), ...parts);
}

function exemplarTable(id, entries, mark) {
  if (!entries.length) return h("p", { class: "muted" }, "No exemplars.");
  return h("div", { class: "table-wrap" }, h("table", { id, class: "exemplar-table" },
    h("thead", {}, h("tr", {}, ["#", "image", "label", "activation", "position", "receptive field"].map((c) => h("th", { class: c === "activation" || c === "#" ? "num" : null }, c)))),
    h("tbody", {}, entries.map((e, i) => h("tr", {
      dataset: { rank: i + 1, image: e.image_index },
      onmouseenter: () => mark(i),
      onmouseleave: () => mark(null),
    },
    h("td", { class: "num" }, i + 1),
    h("td", { class: "mono" }, e.image_name ?? `image #${e.image_index}`),
    h("td", { dataset: { field: "label" } }, e.label ?? "–"),
    h("td", { class: "num", dataset: { field: "activation", value: String(e.activation) } }, fmt(e.activation)),
    h("td", { class: "mono" }, e.position ? `(${e.position.join(", ")})` : "–"),
    h("td", { class: "mono" }, e.receptive_field ? `y ${e.receptive_field[0]}–${e.receptive_field[2]}, x ${e.receptive_field[1]}–${e.receptive_field[3]}` : "–"))))));
}
