// Submitting a job, following it (event stream, progress bar) and showing its outcome.

import { $, h, fmtTime, fmtDuration } from "./dom.js";
import { ApiError, api, followJob, showProblem, hideProblem } from "./api.js";
import { TERMINAL, ACTIVE, state, modelRef } from "./state.js";
import { buildRequest, markFieldErrors } from "./form.js";
import { revokeBlobs, renderOutcome } from "./results.js";
import { refreshHistory, updateHistoryRow } from "./history.js";

export async function submitJob(event) {
  event.preventDefault();
  const box = $("#submit-problem");
  const button = $("#submit-job");
  hideProblem(box);
  markFieldErrors(null);
  let body;
  try {
    body = buildRequest();
  } catch (error) {
    showProblem(box, error, "Not sent");
    return;
  }
  button.disabled = true;
  try {
    const job = await api("/v1/jobs", { method: "POST", json: body });
    openJob(job.id, job);
    revealJobView();
    refreshHistory();
  } catch (error) {
    showProblem(box, error, "The request failed");
    if (error instanceof ApiError) markFieldErrors(error.problem);
  } finally {
    button.disabled = false;
  }
}

export async function inspectModel() {
  const info = state.model;
  if (info.status === "pending" && info.inspection_job) {
    openJob(info.inspection_job);
    return;
  }
  try {
    const job = await api("/v1/jobs", { method: "POST", json: { kind: "model_inspection", model: modelRef(), params: {} } });
    openJob(job.id, job);
    revealJobView();
    refreshHistory();
  } catch (error) {
    showProblem($("#submit-problem"), error, "The request failed");
  }
}

export function openJob(jobId, known) {
  state.follow?.abort();
  const controller = new AbortController();
  state.follow = controller;
  revokeBlobs();
  state.job = known || { id: jobId };
  history.replaceState(null, "", `#job=${jobId}`);
  $("#job-empty").hidden = true;
  $("#job-id").textContent = jobId;
  $("#result").replaceChildren();
  hideProblem($("#job-problem"));
  const progress = $("#job-progress");
  progress.hidden = false;
  progress.dataset.events = "0";
  setProgress({ fraction: 0, message: "" });
  if (known) renderJobHead(known);
  for (const row of $("#history-table tbody").rows) row.classList.toggle("current", row.dataset.jobId === jobId);
  run(controller.signal).catch((error) => {
    if (controller.signal.aborted) return;
    showProblem($("#job-problem"), error, "Could not follow the job");
  });

  async function run(signal) {
    let job = known && TERMINAL.has(known.status) ? known : null;
    if (!job) {
      job = await followJob(jobId, {
        onStatus: (j) => {
          if (signal.aborted) return;
          // An answer sent before the job ended (a cancel shown meanwhile) never undoes the end.
          if (state.job?.id === j.id && TERMINAL.has(state.job.status) && !TERMINAL.has(j.status)) return;
          state.job = j;
          renderJobHead(j);
          setProgress(j.progress);
          updateHistoryRow(j);
        },
        onProgress: (p) => {
          if (signal.aborted) return;
          progress.dataset.events = String(Number(progress.dataset.events) + 1);
          setProgress(p);
        },
      }, signal);
    }
    if (signal.aborted) return;
    state.job = job;
    renderJobHead(job);
    setProgress(job.progress);
    updateHistoryRow(job);
    await renderOutcome(job, signal);
  }
}

function revealJobView() {
  const view = $("#job-view");
  const top = view.getBoundingClientRect().top;
  if (top < 0 || top > window.innerHeight * 0.6) view.scrollIntoView({ block: "start", behavior: "smooth" });
}

function closeJob() {
  state.follow?.abort();
  state.follow = null;
  state.job = null;
  revokeBlobs();
  history.replaceState(null, "", location.pathname);
  $("#job-id").textContent = "";
  $("#job-status").hidden = true;
  $("#job-cancel").hidden = true;
  $("#job-meta").replaceChildren();
  $("#job-progress").hidden = true;
  $("#progress-message").textContent = "";
  $("#result").replaceChildren();
  hideProblem($("#job-problem"));
  $("#job-empty").hidden = false;
}

export function statusBadge(el, job) {
  const label = job.cancel_requested && !TERMINAL.has(job.status) ? "canceling" : job.status;
  el.textContent = label;
  el.className = `badge status-${job.status}`;
  el.dataset.status = job.status;
  el.hidden = false;
}

function renderJobHead(job) {
  statusBadge($("#job-status"), job);
  $("#job-cancel").hidden = !ACTIVE.has(job.status);
  const parts = [
    h("span", {}, h("strong", {}, job.kind), " on ", h("code", {}, job.model)),
    h("span", {}, `created ${fmtTime(job.created_at)}`),
  ];
  const took = fmtDuration(job.started_at, job.finished_at);
  if (took) parts.push(h("span", {}, `ran ${took}`));
  if (job.attempts > 1) parts.push(h("span", {}, `attempt ${job.attempts}`));
  if (job.expires_at) parts.push(h("span", {}, `kept until ${fmtTime(job.expires_at)}`));
  $("#job-meta").replaceChildren(...parts);
}

function setProgress(progress) {
  const fraction = Math.max(0, Math.min(1, Number(progress?.fraction) || 0));
  const bar = $("#job-progress");
  bar.dataset.fraction = String(fraction);
  bar.setAttribute("aria-valuenow", String(Math.round(fraction * 100)));
  $("#progress-bar").style.width = `${(fraction * 100).toFixed(1)}%`;
  $("#progress-message").textContent = `${Math.round(fraction * 100)}%${progress?.message ? ` · ${progress.message}` : ""}`;
}

export async function cancelJob(jobId) {
  const job = await api(`/v1/jobs/${jobId}/cancel`, { method: "POST" });
  updateHistoryRow(job);
  if (state.job?.id === jobId) renderJobHead(job);
  return job;
}

export async function deleteJob(jobId) {
  await api(`/v1/jobs/${jobId}`, { method: "DELETE" });
  if (state.job?.id === jobId) closeJob();
}
