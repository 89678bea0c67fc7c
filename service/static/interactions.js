// The interaction methods of a tabular attribution job (shapley_interactions,
// integrated_hessians): which variables act together. Shown above the per-variable table: the
// pair matrix, the strongest pairs over the rows, the chosen pair's dataset view and the rows
// where it is strongest, and one row's main effects and pairs.

import { h, fmt } from "./dom.js";

const PAIRS_LISTED = 10;

/** The interaction sections of `doc` (result.json), or null when the job has none. `figure`
 *  draws an artifact (results.js); the PNGs drawn are added to `shown`. */
export function interactionSections(doc, artifacts, signal, shown, figure) {
  if (!Array.isArray(doc?.global_interactions)) return null;
  const how = doc.interactions || {};
  const sections = [];
  const chart = (name, caption) => {
    if (!artifacts.has(name)) return null;
    shown.add(name);
    return figure(artifacts.get(name), caption, signal, "figure chart");
  };
  const computation = how.computation || {};
  const facts = [
    ["index", how.index],
    ["values", how.exact ? `exact (${computation.coalitions ?? "all"} coalitions)` : computation.estimator || (how.method === "integrated_hessians" ? `integrated along the path, ${computation.n_steps} steps` : undefined)],
    ["budget", computation.budget !== undefined ? `${computation.budget} coalitions${computation.permutations ? `, ${computation.permutations} permutations` : ""}` : undefined],
    ["standard errors", how.standard_errors ? "per value (sampled)" : undefined],
    ["smoothing", computation.smoothing?.replaced],
  ].filter(([, v]) => v !== undefined && v !== null);

  const sampled = doc.global_interactions.some((e) => e.mean_std_error !== undefined);
  const top = doc.global_interactions.slice(0, PAIRS_LISTED);
  const pairs = h("table", { class: "pairs" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "pair"), h("th", { class: "num", scope: "col" }, "mean |interaction|"),
      sampled ? h("th", { class: "num", scope: "col", title: "mean standard error over the rows" }, "± std. error") : null)),
    h("tbody", {}, top.map((entry) => h("tr", { dataset: { pair: entry.variables.join("|") } },
      h("td", {}, entry.variables.join(" × ")),
      h("td", { class: "num", dataset: { value: String(entry.mean_abs) } }, fmt(entry.mean_abs)),
      sampled ? h("td", { class: "num" }, fmt(entry.mean_std_error)) : null))));
  sections.push(h("section", { class: "result-section interactions", dataset: { section: "interactions" } },
    h("h3", {}, "Which variables act together"),
    facts.length ? h("dl", { class: "facts inline-facts" }, facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))])) : null,
    chart("interactions.png", "Mean |interaction| per pair, variables in order of importance"),
    h("p", { class: "muted small" }, `The strongest pairs over ${doc.rows?.length ?? "the"} rows (of ${doc.global_interactions.length}; all of them in result.json):`),
    h("div", { class: "table-wrap" }, pairs)));

  const pair = doc.pair;
  if (pair?.variables) {
    const [a, b] = pair.variables;
    const strongest = h("table", { class: "pair-rows" },
      h("thead", {}, h("tr", {}, ["row", a, b, "interaction", "output"].map((label, i) =>
        h("th", { scope: "col", class: i >= 3 ? "num" : null }, label)))),
      h("tbody", {}, (pair.strongest_rows || []).map((row) => h("tr", { dataset: { row: row.index } },
        h("td", {}, String(row.index)), h("td", {}, String(row.values?.[a] ?? "–")), h("td", {}, String(row.values?.[b] ?? "–")),
        h("td", { class: "num", dataset: { value: String(row.interaction) } }, fmt(row.interaction)),
        h("td", { class: "num" }, fmt(row.output))))));
    sections.push(h("section", { class: "result-section", dataset: { section: "pair" } },
      h("h3", {}, `${a} × ${b}`),
      h("p", { class: "muted small" }, `${pair.chosen}; mean |interaction| ${fmt(pair.mean_abs)}.`),
      chart("pair_view.png", "Mean interaction per cell of the two variables (red raises the target, blue lowers it)"),
      h("p", { class: "muted small" }, "The rows where the pair is strongest:"),
      h("div", { class: "table-wrap" }, strongest)));
  }
  const rowChart = [...artifacts.keys()].find((name) => name.startsWith("interactions_row_"));
  if (rowChart) {
    sections.push(h("section", { class: "result-section", dataset: { section: "row-terms" } },
      h("h3", {}, "One row's main effects and pairs"), chart(rowChart, null)));
  }
  return sections;
}
