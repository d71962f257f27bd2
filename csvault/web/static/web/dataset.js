// A dataset's page: status timeline, live progress, the error with its place, warnings,
// the column profile, the rows page by page, export, cancel, delete (after confirming).
import {
  FINAL, api, bytes, count, describeProgress, el, errorPlace, localTime, delimiterName,
  showError, statusBadge, STATUS_TEXT,
} from "./common.js";

const article = document.getElementById("dataset");
const id = article.dataset.id;
const base = "/api/datasets/" + id + "/";
const $ = (selector) => document.getElementById(selector);
const PAGE = 25;

let dataset = null;
let timer = null;
let announced = "";

// ---- the dataset -------------------------------------------------------------------

const STEPS = [
  ["uploaded", "Uploaded"],
  ["scanned", "Scanned for malware"],
  ["ingested", "Ingested"],
  ["final", "Completed"],
];

/** Each step's state ("done", "current", "todo", "failed") for a status. */
function stepStates(d) {
  const s = d.status;
  const at = { uploading: 0, pending: 1, scanning: 1, queued: 2, processing: 2 }[s];
  if (at !== undefined) return STEPS.map((_, i) => (i < at ? "done" : i === at ? "current" : "todo"));
  if (s === "completed") return ["done", "done", "done", "done"];
  if (s === "rejected") return ["done", "failed", "todo", "failed"];
  // failed or cancelled: where it stopped is known from what it has done.
  const scanned = Boolean(d.delimiter || d.encoding || d.progress.rows_processed);
  return scanned ? ["done", "done", "failed", "failed"] : ["done", "failed", "todo", "failed"];
}

function timeline(d) {
  const states = stepStates(d);
  const items = STEPS.map(([key, label], i) => {
    const text = key === "final" && d.status !== "completed" && FINAL.has(d.status) ? STATUS_TEXT[d.status] : label;
    const state = states[i];
    const spoken = { done: "done", current: "in progress", todo: "not yet", failed: "stopped" }[state];
    return el("li", { class: "step " + state, "aria-current": state === "current" ? "step" : null },
      el("span", { class: "dot", "aria-hidden": "true" }), text,
      el("span", { class: "visually-hidden" }, " (" + spoken + ")"));
  });
  $("ds-timeline").replaceChildren(...items);
}

function fact(term, value) {
  return value === "" || value === null || value === undefined ? [] : [el("dt", {}, term), el("dd", {}, value)];
}

function facts(d) {
  const format = [delimiterName(d.delimiter), d.encoding].filter(Boolean).join(", ");
  $("ds-facts").replaceChildren(
    ...fact("File", d.filename),
    ...fact("Size", bytes(d.size)),
    ...fact("Rows", count(d.row_count)),
    ...fact("Columns", d.columns.length ? count(d.columns.length) : ""),
    ...fact("Format", format + (format && (d.delimiter_detected || d.encoding_detected) ? " (detected)" : "")),
    ...fact("Header row", d.has_header ? "yes" : "no"),
    ...fact("Created", localTime(d.created_at)),
    ...fact("Finished", localTime(d.finished_at)),
  );
}

function problem(d) {
  const box = $("ds-error");
  if (!d.error || d.status === "cancelled") { box.hidden = true; return; }
  const place = errorPlace(d.error);
  box.replaceChildren(
    el("h2", {}, d.status === "rejected" ? "Rejected" : "What went wrong"),
    el("p", { class: "error-message" }, d.error.message),
    place ? el("p", { class: "error-place" }, place) : null,
  );
  box.hidden = false;
}

function warnings(d) {
  const box = $("ds-warnings");
  box.hidden = !d.warnings.length;
  box.querySelector("ul").replaceChildren(...d.warnings.map((w) => el("li", {}, w.message)));
}

function actions(d) {
  for (const fmt of ["csv", "jsonl"]) {
    const a = $("ds-export-" + fmt);
    a.href = base + "export/?format=" + fmt;
    a.hidden = d.status !== "completed";
  }
  $("ds-cancel").hidden = FINAL.has(d.status);
  $("ds-delete").hidden = false;
}

function showProgress(p) {
  const running = !FINAL.has(p.status);
  $("ds-progress").hidden = !running;
  if (!running) return;
  $("ds-progress-bar").value = p.percent;
  $("ds-progress-text").textContent = STATUS_TEXT[p.status] + " · " + describeProgress(p);
  // The live region speaks on a change of status or every 25 %, not every second.
  const said = p.status + ":" + Math.floor(p.percent / 25);
  if (said !== announced) {
    announced = said;
    $("ds-announce").textContent = STATUS_TEXT[p.status] + ", " + Math.floor(p.percent) + " percent.";
  }
}

function render(d) {
  const before = dataset && dataset.status;
  dataset = d;
  document.title = d.name + " · csvault";
  $("ds-name").textContent = d.name;
  $("ds-status").replaceChildren(statusBadge(d.status));
  facts(d);
  timeline(d);
  problem(d);
  warnings(d);
  actions(d);
  showProgress(d.progress);
  article.setAttribute("aria-busy", "false");
  if (FINAL.has(d.status)) {
    stop();
    if (before !== d.status) $("ds-announce").textContent = STATUS_TEXT[d.status] + ".";
    if (d.status === "completed" && before !== "completed") {
      loadRows(0);
      loadProfile();
    }
  } else {
    follow();
  }
}

function stop() {
  clearInterval(timer);
  timer = null;
}

// Polled like the list (one cached request a second): see home.js.
function follow() {
  if (timer) return;
  timer = setInterval(async () => {
    try {
      const p = await api("GET", base + "progress/");
      if (FINAL.has(p.status) || p.status !== dataset.status) {
        stop();
        render(await api("GET", base));
      } else {
        showProgress(p);
      }
    } catch (error) {
      if (error.status === 404 || error.sessionEnded) { stop(); showError($("ds-load-error"), error); }
    }
  }, 1000);
}

async function load() {
  try {
    render(await api("GET", base));
  } catch (error) {
    $("ds-name").textContent = error.status === 404 ? "Dataset not found" : "Dataset";
    showError($("ds-load-error"), error);
    article.setAttribute("aria-busy", "false");
  }
}

// ---- rows, page by page ------------------------------------------------------------

let after = 0; // the rows shown are numbered after this one
let hasNext = false;

async function loadRows(from) {
  const section = $("ds-preview");
  let page;
  try {
    page = await api("GET", base + "rows/?after=" + from + "&limit=" + PAGE);
  } catch (error) {
    section.hidden = false;
    showError($("rows-range"), error);
    return;
  }
  after = from;
  hasNext = Boolean(page.next);
  const table = $("preview");
  table.tHead.replaceChildren(el("tr", {}, el("th", { scope: "col" }, "Row"),
    ...page.columns.map((name) => el("th", { scope: "col" }, name))));
  table.tBodies[0].replaceChildren(...page.results.map((r) => el("tr", {},
    el("th", { scope: "row", class: "num" }, count(r.row)),
    ...r.values.map((v) => el("td", {}, v)))));
  const first = page.results.length ? page.results[0].row : 0;
  const last = page.results.length ? page.results[page.results.length - 1].row : 0;
  $("rows-range").textContent = page.results.length
    ? "Rows " + count(first) + "–" + count(last) + (dataset.row_count ? " of " + count(dataset.row_count) : "")
    : "No rows here.";
  $("rows-prev").disabled = from <= 0;
  $("rows-next").disabled = !hasNext;
  section.hidden = false;
}

$("rows-prev").addEventListener("click", () => loadRows(Math.max(0, after - PAGE)));
$("rows-next").addEventListener("click", () => hasNext && loadRows(after + PAGE));
$("rows-goto").addEventListener("submit", (event) => {
  event.preventDefault();
  const row = Math.floor(Number($("rows-goto-row").value));
  if (row >= 1) loadRows(row - 1);
});

// ---- the column profile ------------------------------------------------------------

function shown(value) {
  return value === null || value === undefined ? "" : typeof value === "number" ? value.toLocaleString("en-US") : String(value);
}

async function loadProfile() {
  let profile;
  try {
    profile = await api("GET", base + "profile/");
  } catch (error) {
    if (error.status === 409 || error.status === 404) return; // a dataset from before profiles
    $("ds-profile").hidden = false;
    showError($("profile-title"), error);
    return;
  }
  $("profile").tBodies[0].replaceChildren(...profile.columns.map((c, i) => el("tr", {},
    el("td", { class: "num", "data-label": "#" }, String(i + 1)),
    el("th", { scope: "row", "data-label": "Name" }, c.name),
    el("td", { "data-label": "Type" }, c.type),
    el("td", { class: "num", "data-label": "Empty or null" }, count(c.nulls)),
    el("td", { "data-label": "Min" }, shown(c.min)),
    el("td", { "data-label": "Max" }, shown(c.max)),
    el("td", { class: "num", "data-label": "Distinct" }, (c.distinct_exact ? "" : "≈ ") + count(c.distinct)))));
  $("ds-profile").hidden = false;
}

// ---- cancel and delete -------------------------------------------------------------

$("ds-cancel").addEventListener("click", async () => {
  $("ds-cancel").disabled = true;
  try {
    render(await api("POST", base + "cancel/"));
    $("ds-action-error").hidden = true;
  } catch (error) {
    showError($("ds-action-error"), error);
  } finally {
    $("ds-cancel").disabled = false;
  }
});

const dialog = $("delete-dialog");
$("ds-delete").addEventListener("click", () => {
  $("delete-title").textContent = "Delete “" + dataset.name + "”?";
  $("delete-confirm").textContent = "Delete “" + dataset.name + "”";
  dialog.returnValue = "";
  dialog.showModal();
});
dialog.addEventListener("close", async () => {
  if (dialog.returnValue !== "delete") { $("ds-delete").focus(); return; }
  try {
    await api("DELETE", base);
  } catch (error) {
    if (error.status !== 404) { showError($("ds-action-error"), error); return; }
  }
  stop();
  location.assign("/?deleted=" + encodeURIComponent(dataset.name));
});

load();
