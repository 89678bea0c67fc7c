// What a job would cost, shown before it is submitted.

import { $, fmtSeconds } from "./dom.js";
import { ApiError, api } from "./api.js";
import { buildRequest } from "./form.js";

// POST /v1/jobs/estimate takes the body of POST /v1/jobs and answers what the job would cost:
// {kind, seconds: {cpu, gpu | null}, basis}. A service without it (404, 405) is not asked again;
// a kind without a cost model (404 no-estimate) or a body it refuses (422) shows no estimate:
// submitting shows the problem.
const ESTIMATE_DEBOUNCE_MS = 400;

const estimate = { timer: null, controller: null, supported: true };

export function scheduleEstimate() {
  if (!estimate.supported) return;
  clearTimeout(estimate.timer);
  estimate.timer = setTimeout(requestEstimate, ESTIMATE_DEBOUNCE_MS);
}

async function requestEstimate() {
  estimate.controller?.abort();
  const box = $("#estimate");
  let body;
  try {
    body = buildRequest();
  } catch {
    box.hidden = true;
    return;
  }
  if (!body.kind || !body.model) {
    box.hidden = true;
    return;
  }
  const controller = new AbortController();
  estimate.controller = controller;
  try {
    const answer = await api("/v1/jobs/estimate", { method: "POST", json: body, signal: controller.signal });
    if (controller.signal.aborted) return;
    const { cpu, gpu } = answer.seconds || {};
    if (typeof cpu !== "number") throw new Error("no CPU estimate");
    box.textContent = `about ${fmtSeconds(cpu)} on a CPU worker${typeof gpu === "number" ? ` (${fmtSeconds(gpu)} on a GPU)` : ""}`;
    box.title = answer.basis || "";
    box.dataset.cpu = String(cpu);
    box.hidden = false;
    document.body.dataset.estimate = "shown";
  } catch (error) {
    if (controller.signal.aborted) return;
    // A 404 `no-estimate` is this kind's (it has no cost model); any other 404 or a 405 says
    // the service has no estimate endpoint at all.
    const missing = error instanceof ApiError && (error.status === 405
      || (error.status === 404 && !String(error.problem.type || "").endsWith("/no-estimate")));
    if (missing) {
      estimate.supported = false;
    }
    document.body.dataset.estimate = missing ? "unsupported" : "none";
    box.hidden = true;
  }
}
