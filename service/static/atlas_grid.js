// The atlas's grid: one tile per unit, in the order atlas.json's `orders` give (strongest
// first), filtered by dead/live and by label. Tiles are built once and only moved when the
// order or the filter changes; their pictures are fetched when they come near the window
// (IntersectionObserver), so a 512-unit layer asks for a screenful of thumbnails, not 512.

import { $, h, fmt } from "./dom.js";

export const SORTS = [
  { key: "max_activation", label: "max activation", value: (u) => u.max_activation },
  { key: "mean_activation", label: "mean activation", value: (u) => u.mean_activation },
  { key: "class_selectivity", label: "class selectivity", value: (u) => u.labels?.class_selectivity },
  {
    key: "feature_visualization",
    label: "feature visualization / dataset max",
    value: (u) => u.feature_visualization?.ratio_to_dataset_max,
  },
  { key: "unit", label: "unit number", value: (u) => u.max_activation },
];
const SHOWS = ["all", "live", "dead"];
const NEAR_WINDOW = "200px 0px"; // how far off screen a thumbnail starts loading

/** The grid's settings as the URL's query says, each checked against what this atlas has. */
export function gridSettings(atlas, search) {
  const query = new URLSearchParams(search);
  const sorts = availableSorts(atlas);
  const labels = atlasLabels(atlas);
  const pictures = pictureKinds(atlas);
  const pick = (value, allowed, fallback) => (allowed.includes(value) ? value : fallback);
  return {
    sort: pick(query.get("sort"), sorts.map((s) => s.key), sorts[0].key),
    show: pick(query.get("show"), SHOWS, "all"),
    label: pick(query.get("label"), labels, ""),
    pictures: pick(query.get("pictures"), pictures, pictures[0] || "fv"),
  };
}

/** The query string that gives these settings (defaults left out: short links). */
export function settingsQuery(atlas, settings) {
  const defaults = gridSettings(atlas, "");
  const query = new URLSearchParams();
  for (const key of ["sort", "show", "label", "pictures"]) {
    if (settings[key] !== defaults[key]) query.set(key, settings[key]);
  }
  const text = query.toString();
  return text ? `?${text}` : "";
}

function availableSorts(atlas) {
  return SORTS.filter((s) => s.key === "unit" || Array.isArray(atlas.orders?.[s.key]));
}

function pictureKinds(atlas) {
  return ["fv", "best"].filter((kind) => atlas.units.some((u) => u.images?.[kind]));
}

/** The labels a unit is filed under: its best class, and the commonest label of its top exemplars. */
function unitLabels(unit) {
  return [unit.labels?.best_class, unit.labels?.top_classes?.[0]?.label].filter((l) => l !== null && l !== undefined);
}

export function atlasLabels(atlas) {
  return [...new Set(atlas.units.flatMap(unitLabels))].sort();
}

/** Unit numbers in the order the settings ask for, without the units they filter out. */
export function shownUnits(atlas, settings) {
  const byNumber = new Map(atlas.units.map((u) => [u.unit, u]));
  let order;
  if (settings.sort === "unit") order = [...byNumber.keys()].sort((a, b) => a - b);
  else {
    const given = (atlas.orders[settings.sort] || []).filter((n) => byNumber.has(n));
    const seen = new Set(given);
    order = [...given, ...[...byNumber.keys()].filter((n) => !seen.has(n))];
  }
  return order.filter((n) => {
    const unit = byNumber.get(n);
    if (settings.show === "dead" && !unit.dead) return false;
    if (settings.show === "live" && unit.dead) return false;
    return !settings.label || unitLabels(unit).includes(settings.label);
  });
}

export class UnitGrid {
  /**
   * `images`: an ArtifactImages; `href(unit)`: a unit's link; `open(unit)`: go to it in this page;
   * `changed(settings)`: the person changed a setting.
   */
  constructor(atlas, images, { href, open, changed }) {
    this.atlas = atlas;
    this.images = images;
    this.href = href;
    this.open = open;
    this.changed = changed;
    this.units = new Map(atlas.units.map((u) => [u.unit, u]));
    this.tiles = new Map();
    this.settings = null;
    this.observer = new IntersectionObserver((entries) => this.seen(entries), { rootMargin: NEAR_WINDOW });
    this.buildControls();
    for (const unit of atlas.units) this.tiles.set(unit.unit, this.tile(unit));
  }

  buildControls() {
    const sorts = availableSorts(this.atlas);
    $("#sort-select").replaceChildren(...sorts.map((s) => h("option", { value: s.key }, s.label)));
    const labels = atlasLabels(this.atlas);
    $("#label-filter-field").hidden = labels.length === 0;
    $("#label-select").replaceChildren(h("option", { value: "" }, "any label"), ...labels.map((l) => h("option", { value: l }, l)));
    const pictures = pictureKinds(this.atlas);
    $("#thumb-field").hidden = pictures.length < 2;
    const read = () => ({
      sort: $("#sort-select").value,
      show: $("#dead-select").value,
      label: $("#label-select").value,
      pictures: $("#thumb-select").value,
    });
    for (const id of ["#sort-select", "#dead-select", "#label-select", "#thumb-select"]) {
      $(id).addEventListener("change", () => {
        const settings = read();
        this.apply(settings);
        this.changed(settings);
      });
    }
  }

  tile(unit) {
    const img = h("img", { alt: `unit ${unit.unit}`, decoding: "async", width: 96, height: 96 });
    const link = h("a", {
      class: `unit-tile${unit.dead ? " dead" : ""}`,
      href: this.href(unit.unit),
      dataset: { unit: unit.unit, dead: unit.dead ? "true" : "false" },
      title: tileTitle(unit),
      onclick: (event) => {
        if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
        event.preventDefault();
        this.open(unit.unit);
      },
    },
    h("span", { class: "thumb" }, img, unit.dead ? h("span", { class: "badge dead-badge" }, "dead") : null),
    h("span", { class: "tile-caption" }, h("span", { class: "unit-no" }, unit.unit), " ", h("span", { class: "tile-value" })));
    this.observer.observe(link);
    return link;
  }

  /** Show the tiles the settings ask for, in their order; returns the unit numbers shown. */
  apply(settings) {
    const previous = this.settings;
    this.settings = settings;
    $("#sort-select").value = settings.sort;
    $("#dead-select").value = settings.show;
    $("#label-select").value = settings.label;
    $("#thumb-select").value = settings.pictures;
    const shown = shownUnits(this.atlas, settings);
    const sort = SORTS.find((s) => s.key === settings.sort);
    if (previous?.sort !== settings.sort) {
      for (const [number, tile] of this.tiles) $(".tile-value", tile).textContent = fmt(sort.value(this.units.get(number)));
    }
    if (previous && previous.pictures !== settings.pictures) {
      for (const tile of this.tiles.values()) this.clearPicture(tile);
    }
    const grid = $("#unit-grid");
    const order = shown.map((n) => this.tiles.get(n));
    const current = [...grid.children];
    if (current.length !== order.length || current.some((tile, i) => tile !== order[i])) grid.replaceChildren(...order);
    $("#grid-empty").hidden = shown.length > 0;
    $("#grid-count").textContent = shown.length === this.tiles.size
      ? `${shown.length} units`
      : `${shown.length} of ${this.tiles.size} units`;
    document.body.dataset.sort = settings.sort;
    return shown;
  }

  clearPicture(tile) {
    const img = $("img", tile);
    if (img.dataset.artifact) this.images.drop(img.dataset.artifact);
    delete img.dataset.artifact;
    img.removeAttribute("src");
    // Observed again: a tile on screen gets its new picture at once.
    this.observer.unobserve(tile);
    this.observer.observe(tile);
  }

  seen(entries) {
    for (const entry of entries) {
      const tile = entry.target;
      const img = $("img", tile);
      const unit = this.units.get(Number(tile.dataset.unit));
      const name = unit.images?.[this.settings?.pictures || "fv"];
      if (!entry.isIntersecting) {
        if (img.dataset.artifact && !img.getAttribute("src")) this.images.drop(img.dataset.artifact);
        continue;
      }
      if (!name || !this.images.has(name)) {
        tile.classList.add("no-picture");
        continue;
      }
      tile.classList.remove("no-picture");
      if (img.dataset.artifact === name && img.getAttribute("src")) continue;
      this.images.show(img, name);
    }
  }
}

function tileTitle(unit) {
  const parts = [`unit ${unit.unit}`, `max activation ${fmt(unit.max_activation)}`];
  if (unit.dead) parts.push("dead: it never activates on the dataset");
  if (unit.labels?.best_class) parts.push(`best class ${unit.labels.best_class}`);
  return parts.join(" · ");
}
