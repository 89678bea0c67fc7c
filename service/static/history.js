// The job history: a page of jobs, polled while some are active, with open, cancel and delete.

import { $, h, fmtTime } from "./dom.js";
import { api, keyPromptOpen, showProblem, hideProblem } from "./api.js";
import { TERMINAL, ACTIVE, state } from "./state.js";
import { openJob, statusBadge, cancelJob, deleteJob } from "./job.js";

const HISTORY_PAGE_SIZE = 20;
export const HISTORY_POLL_MS = 3000;

export async function refreshHistory({ append = false } = {}) {
  const box = $("#history-problem");
  const query = new URLSearchParams({ page_size: String(HISTORY_PAGE_SIZE) });
  const status = $("#history-status").value;
  if (status) query.set("status", status);
  if (append && state.historyToken) query.set("page_token", state.historyToken);
  try {
    const page = await api(`/v1/jobs?${query}`);
    hideProblem(box);
    const tbody = $("#history-table tbody");
    if (!append) {
      tbody.replaceChildren();
      state.historyJobs.clear();
    }
    for (const job of page.items) {
      state.historyJobs.set(job.id, job);
      tbody.append(historyRow(job));
    }
    state.historyToken = page.next_page_token || null;
    $("#history-more").hidden = !state.historyToken;
    $("#history-empty").hidden = tbody.rows.length > 0;
    $("#history-table").closest(".table-wrap").hidden = tbody.rows.length === 0;
  } catch (error) {
    showProblem(box, error, "Could not list jobs");
  }
}

function historyRow(job) {
  const badge = h("span");
  statusBadge(badge, job);
  const active = ACTIVE.has(job.status);
  const actions = h("td", { class: "actions-col" },
    h("button", { type: "button", class: "link", dataset: { action: "open" }, onclick: (e) => { e.stopPropagation(); openJob(job.id, TERMINAL.has(job.status) ? job : null); } }, "Open"),
    active
      ? h("button", { type: "button", class: "link", dataset: { action: "cancel" }, onclick: (e) => { e.stopPropagation(); rowAction(job.id, "cancel"); } }, "Cancel")
      : deleteButton(job.id));
  const progress = active && job.status === "running" ? h("span", { class: "muted small" }, ` ${Math.round((job.progress?.fraction || 0) * 100)}%`) : null;
  return h("tr", {
    dataset: { jobId: job.id, status: job.status },
    class: state.job?.id === job.id ? "current" : null,
    onclick: () => openJob(job.id, TERMINAL.has(job.status) ? job : null),
  },
  h("td", { class: "nowrap" }, fmtTime(job.created_at)),
  h("td", { class: "mono", title: job.id }, job.id.slice(-8)),
  h("td", {}, job.kind),
  h("td", { class: "mono ellipsis", title: job.model }, job.model),
  h("td", { class: "nowrap" }, badge, progress),
  actions);
}

export function updateHistoryRow(job) {
  const row = [...$("#history-table tbody").rows].find((r) => r.dataset.jobId === job.id);
  if (!row) return;
  const previous = row.dataset.status;
  state.historyJobs.set(job.id, job);
  row.replaceWith(historyRow(job));
  if (previous !== job.status && TERMINAL.has(job.status)) refreshHistory();
}

const DELETE_CONFIRM_MS = 4000;

/** Delete asks once more; the question survives the row being drawn again meanwhile. */
function deleteButton(jobId) {
  const pending = state.pendingDelete?.id === jobId && Date.now() < state.pendingDelete.until;
  return h("button", {
    type: "button",
    class: "link danger",
    dataset: { action: "delete", confirm: pending ? "yes" : null },
    onclick: (e) => {
      e.stopPropagation();
      confirmDelete(e.currentTarget, jobId);
    },
  }, pending ? "Confirm delete" : "Delete");
}

function confirmDelete(button, jobId) {
  if (state.pendingDelete?.id === jobId && Date.now() < state.pendingDelete.until) {
    state.pendingDelete = null;
    rowAction(jobId, "delete");
    return;
  }
  state.pendingDelete = { id: jobId, until: Date.now() + DELETE_CONFIRM_MS };
  button.dataset.confirm = "yes";
  button.textContent = "Confirm delete";
  setTimeout(() => {
    if (state.pendingDelete?.id !== jobId || Date.now() < state.pendingDelete.until) return;
    state.pendingDelete = null;
    for (const other of document.querySelectorAll(`#history-table tr[data-job-id="${jobId}"] [data-action="delete"]`)) {
      delete other.dataset.confirm;
      other.textContent = "Delete";
    }
  }, DELETE_CONFIRM_MS + 50);
}

async function rowAction(jobId, action) {
  const box = $("#history-problem");
  hideProblem(box);
  try {
    if (action === "cancel") await cancelJob(jobId);
    else await deleteJob(jobId);
  } catch (error) {
    showProblem(box, error, `Could not ${action} the job`);
  }
  await refreshHistory();
}

export function pollHistory() {
  if (document.visibilityState !== "visible" || keyPromptOpen()) return;
  if ([...state.historyJobs.values()].some((j) => ACTIVE.has(j.status))) refreshHistory();
}
