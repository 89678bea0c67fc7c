// The trust panel of an image result: how far to trust what the picture shows. Each check with
// its number and its definition (result.json's own words), flagged checks first in red.

import { h, fmt } from "./dom.js";

function check(name, value, flagged, definition, detail) {
  return h("div", { class: `trust-check${flagged ? " flagged" : ""}`, dataset: { check: name, flagged: flagged ? "true" : "false" } },
    h("div", { class: "trust-head" },
      h("strong", {}, name.replaceAll("_", " ")),
      h("span", { class: "trust-value" }, value),
      flagged ? h("span", { class: "trust-flag" }, "flagged") : null),
    detail ? h("p", { class: "small" }, detail) : null,
    definition ? h("details", {}, h("summary", { class: "muted small" }, "definition"), h("p", { class: "small" }, definition)) : null);
}

/** Activation maximization: ratio to the dataset, robustness, path similarity (per image). */
export function actmaxTrust(doc) {
  const trust = doc?.trust;
  if (!trust) return null;
  const images = doc.images || [];
  const checks = trust.checks || {};
  const parts = [];
  const ratios = images.map((i) => i.ratio_to_dataset_max).filter((v) => typeof v === "number");
  parts.push(check("ratio_to_dataset_max", ratios.length ? ratios.map(fmt).join(" · ") : "no reference dataset", false, checks.ratio_to_dataset_max));
  const robust = images.map((i) => (typeof i.robust_activation === "number" && i.activation ? i.robust_activation / i.activation : null));
  parts.push(check("robust_activation", robust.map((r) => (r === null ? "–" : `${fmt(r)}× of activation`)).join(" · "), false, checks.robust_activation));
  const path = trust.path_similarity || {};
  if (path.computed) {
    const flagged = images.some((i) => i.path_flagged);
    const values = images.map((i) => (typeof i.path_similarity === "number" ? `${fmt(i.path_similarity)}${i.path_flagged ? " ⚑" : ""}` : "–"));
    const baselines = (path.units || []).filter((u) => typeof u.random_baseline === "number").map((u) => fmt(u.random_baseline));
    parts.push(check("path_similarity", values.join(" · "), flagged, path.definition || checks.path_similarity,
      `Random images' baseline: ${baselines.join(" · ") || "–"} over ${path.layers?.length ?? 0} layers; ` +
      `exemplars: ${(path.units?.[0]?.exemplar_images || []).slice(0, 4).join(", ")}${flagged ? ". Flagged: the network processes this image less like the unit's exemplars than random photos." : ""}`));
  } else {
    parts.push(check("path_similarity", "not computed", false, checks.path_similarity, path.reason));
  }
  if (doc.accentuation) {
    const a = doc.accentuation;
    parts.push(check("distance_to_seed", (a.distance || []).map(fmt).join(" · "), false, a.definition,
      `Seed ${a.seed?.image ?? "inline"}; activation on the seed ${(a.seed_activation || []).map(fmt).join(" · ")}; weight ${Array.isArray(a.weight) ? a.weight.map(fmt).join(" · ") : fmt(a.weight)}${a.weight_automatic ? " (automatic)" : ""}.`));
  }
  return h("section", { class: "result-section trust-panel" }, h("h3", {}, "Trust"), ...parts);
}

/** Deconvnet / guided backprop / saliency: the randomization sanity check, when asked for. */
export function projectionTrust(doc) {
  const check_ = doc?.trust?.randomization_check;
  if (!check_) return null;
  if (!check_.computed) {
    return h("section", { class: "result-section trust-panel" }, h("h3", {}, "Trust"),
      check("randomization_check", "not computed", false, check_.definition, check_.reason));
  }
  return h("section", { class: "result-section trust-panel" }, h("h3", {}, "Trust"),
    check("randomization_check", `rank correlation ${fmt(check_.mean_rank_correlation)} · SSIM ${fmt(check_.mean_ssim)}`, check_.flagged,
      check_.definition, check_.flagged
        ? "Flagged: this projection barely depends on the learned weights (it looks the same with the weights randomized)."
        : "The projections change when the weights are randomized: they depend on what the model learned."));
}
