// The home page: the datasets list (search, status filter, every page reachable, live
// progress) and the uploads (drag and drop or a picker, several files, tus, resumable).
import {
  FINAL, api, bytes, csrf, count, describeProgress, el, errorPlace, formatText, localTime,
  seconds, sentence, showError, statusBadge, STATUS_TEXT,
} from "./common.js";

const tbody = document.querySelector("#datasets tbody");
const more = document.getElementById("list-more");
const empty = document.getElementById("list-empty");
const listError = document.getElementById("list-error");
const filters = document.getElementById("filters");
const notice = document.getElementById("notice");

// ---- the datasets list -------------------------------------------------------------

const following = new Map(); // unfinished datasets whose progress is polled
const finalWatchers = new Map(); // dataset id -> callbacks run with the final dataset
let nextUrl = null;
let generation = 0; // a newer filter drops the answers of older requests

function listUrl() {
  const query = new URLSearchParams();
  const search = filters.elements.search.value.trim();
  if (search) query.set("search", search);
  if (filters.elements.status.value) query.set("status", filters.elements.status.value);
  const text = query.toString();
  return "/api/datasets/" + (text ? "?" + text : "");
}

function matchesFilters(d) {
  const search = filters.elements.search.value.trim().toLowerCase();
  const status = filters.elements.status.value;
  return (!search || d.name.toLowerCase().includes(search)) && (!status || d.status === status);
}

function statusCell(d) {
  // One wrapper per cell: the narrow layout puts the label and the wrapper side by side.
  const inner = el("div", {}, statusBadge(d.status));
  if (!FINAL.has(d.status)) {
    inner.append(el("small", { class: "progress-text" }, describeProgress(d.progress)));
  } else if (d.error) {
    const place = errorPlace(d.error);
    inner.append(el("small", {}, d.error.message + (place ? " (" + place + ")" : "")));
  }
  return el("td", { "data-label": "Status", class: "status" }, inner);
}

function render(d, where) {
  let tr = document.getElementById("d-" + d.id);
  const fresh = !tr;
  if (fresh) tr = el("tr", { id: "d-" + d.id });
  tr.dataset.status = d.status;
  tr.replaceChildren(
    el("td", { "data-label": "Name", class: "name" }, el("div", {},
      el("a", { href: "/datasets/" + d.id + "/" }, d.name),
      d.filename && d.filename !== d.name ? el("small", {}, d.filename) : null)),
    statusCell(d),
    el("td", { "data-label": "Rows", class: "num" }, count(d.row_count)),
    el("td", { "data-label": "Size", class: "num" }, bytes(d.size)),
    el("td", { "data-label": "Format" }, formatText(d)),
    el("td", { "data-label": "Created" }, localTime(d.created_at)),
  );
  if (fresh) {
    if (where === "top") tbody.prepend(tr);
    else tbody.append(tr);
  }
  empty.hidden = true;
  if (!FINAL.has(d.status)) follow(d.id);
  else finished(d);
}

function finished(d) {
  stopFollowing(d.id);
  for (const callback of finalWatchers.get(d.id) || []) callback(d);
  finalWatchers.delete(d.id);
}

function stopFollowing(id) {
  following.delete(id);
}

// Progress is polled (one cached request per unfinished dataset) rather than streamed.
// One timer serves them all, at most POLLS_PER_SECOND requests a second, in turn: a page
// following thirty uploads stays well under the read throttle (1200 a minute).
const POLLS_PER_SECOND = 8;
let pollQueue = [];

async function poll(id) {
  let p;
  try {
    p = await api("GET", "/api/datasets/" + id + "/progress/");
  } catch (error) {
    if (error.status === 404) { stopFollowing(id); document.getElementById("d-" + id)?.remove(); }
    if (error.sessionEnded) { following.clear(); showError(listError, error); }
    return;
  }
  if (!following.has(id)) return;
  const row = document.getElementById("d-" + id);
  if (FINAL.has(p.status)) {
    stopFollowing(id);
    try { const d = await api("GET", "/api/datasets/" + id + "/"); if (row) render(d); else finished(d); } catch (_) { /* next load shows it */ }
    return;
  }
  if (row && row.dataset.status !== p.status) {
    row.dataset.status = p.status;
    row.querySelector("td.status .badge").replaceWith(statusBadge(p.status));
  }
  const text = row && row.querySelector(".progress-text");
  if (text) text.textContent = describeProgress(p);
}

setInterval(() => {
  if (!pollQueue.length) pollQueue = Array.from(following.keys());
  pollQueue.splice(0, POLLS_PER_SECOND).filter((id) => following.has(id)).forEach(poll);
}, 1000);

function follow(id) {
  following.set(id, true);
}

async function load(url, reset) {
  const mine = reset ? ++generation : generation;
  more.disabled = true;
  let page;
  try {
    page = await api("GET", url);
  } catch (error) {
    if (mine === generation) showError(listError, error);
    more.disabled = false;
    return;
  }
  if (mine !== generation) return;
  listError.hidden = true;
  if (reset) {
    // The new list follows its own unfinished rows; an upload's dataset stays followed
    // until it is final, listed or not.
    for (const id of Array.from(following.keys())) if (!finalWatchers.has(id)) following.delete(id);
    tbody.replaceChildren();
  }
  page.results.forEach((d) => render(d, "bottom"));
  nextUrl = page.next;
  more.hidden = !nextUrl;
  more.disabled = false;
  empty.hidden = tbody.children.length > 0;
  empty.textContent = filters.elements.search.value || filters.elements.status.value
    ? "No dataset matches." : "No datasets yet: upload a CSV file above.";
}

let searchTimer = null;
filters.addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => load(listUrl(), true), 250);
});
filters.addEventListener("submit", (event) => { event.preventDefault(); load(listUrl(), true); });
more.addEventListener("click", () => nextUrl && load(nextUrl, false));

async function showNew(id, whenFinal) {
  if (whenFinal) finalWatchers.set(id, (finalWatchers.get(id) || []).concat([whenFinal]));
  try {
    const d = await api("GET", "/api/datasets/" + id + "/");
    if (matchesFilters(d)) render(d, "top");
    else if (!FINAL.has(d.status)) follow(d.id);
    else finished(d);
  } catch (_) { /* the list shows it at the next load */ }
}

// ---- uploads (tus 1.0 at /api/uploads/, with the vendored tus-js-client) -------------

const section = document.getElementById("upload");
const picker = document.getElementById("upload-files");
const uploadsList = document.getElementById("uploads");
const unfinished = document.getElementById("upload-unfinished");
const overlay = document.getElementById("drop-overlay");
const PARALLEL = 2;
const queue = [];
const items = new WeakMap(); // list node -> its UploadItem
let running = 0;

function options() {
  const form = section;
  return {
    name: form.querySelector("#upload-name").value.trim(),
    delimiter: form.querySelector("#upload-delimiter").value,
    encoding: form.querySelector("#upload-encoding").value,
    has_header: form.querySelector("#upload-header").checked ? "true" : "false",
  };
}

// The upload URL is kept in localStorage under the file's fingerprint (user, name, size,
// modification time), so a reload resumes it once the same file is chosen again.
function fingerprint(file) {
  return Promise.resolve(["csvault", section.dataset.user, file.name, file.size, file.lastModified].join("/"));
}

class UploadItem {
  constructor(file, opts) {
    this.file = file;
    this.opts = opts;
    this.samples = []; // [time ms, bytes sent] of the last few seconds, for the speed
    this.upload = null;
    this.state = "waiting";
    this.bar = el("progress", { max: "100", value: "0", "aria-label": "Upload of " + file.name });
    this.stats = el("span", { class: "upload-stats" });
    this.message = el("span", { class: "upload-message", role: "status" }, "Waiting…");
    this.pauseButton = el("button", { type: "button", class: "upload-pause", hidden: true }, "Pause");
    this.resumeButton = el("button", { type: "button", class: "upload-resume", hidden: true }, "Resume");
    this.cancelButton = el("button", { type: "button", class: "upload-cancel" }, "Cancel");
    this.node = el("li", { class: "upload-item", "data-file": file.name },
      el("strong", { class: "upload-name" }, file.name),
      this.bar, this.stats, this.message,
      el("span", { class: "upload-actions" }, this.pauseButton, this.resumeButton, this.cancelButton));
    this.pauseButton.addEventListener("click", () => this.pause());
    this.resumeButton.addEventListener("click", () => this.resume());
    this.cancelButton.addEventListener("click", () => this.cancel());
    items.set(this.node, this);
    uploadsList.prepend(this.node);
  }

  say(text, kind) {
    this.message.replaceChildren(text);
    this.message.className = "upload-message" + (kind ? " " + kind : "");
  }

  buttons() {
    this.pauseButton.hidden = this.state !== "running";
    this.resumeButton.hidden = this.state !== "paused";
    this.cancelButton.hidden = !["waiting", "running", "paused"].includes(this.state);
  }

  progress(sent, total) {
    const now = Date.now();
    this.samples.push([now, sent]);
    while (this.samples.length > 2 && now - this.samples[0][0] > 5000) this.samples.shift();
    const [t0, b0] = this.samples[0];
    const speed = now > t0 && sent > b0 ? (1000 * (sent - b0)) / (now - t0) : 0;
    const percent = total ? (100 * sent) / total : 100;
    this.bar.value = percent;
    let text = percent.toFixed(1) + " % · " + bytes(sent) + " of " + bytes(total);
    if (speed) text += " · " + bytes(Math.round(speed)) + "/s · ETA " + seconds((total - sent) / speed);
    this.stats.textContent = text;
  }

  start() {
    this.state = "running";
    this.buttons();
    const metadata = { filename: this.file.name, ...this.opts };
    this.upload = new tus.Upload(this.file, {
      endpoint: "/api/uploads/",
      chunkSize: Number(section.dataset.chunkSize) || 5 * 1024 * 1024,
      retryDelays: [0, 1000, 3000, 5000, 10000, 20000],
      storeFingerprintForResuming: true,
      removeFingerprintOnSuccess: true,
      fingerprint,
      metadata,
      headers: { Accept: "application/json" },
      // The CSRF token is read at every request (logging in again rotates it); set here
      // only, as a second setHeader of the same name appends to the first.
      onBeforeRequest: (req) => req.setHeader("X-CSRFToken", csrf()),
      onProgress: (sent, total) => this.progress(sent, total),
      onSuccess: () => this.uploaded(),
      onError: (error) => this.failed(error),
    });
    this.upload.findPreviousUploads().then((previous) => {
      if (this.state !== "running") return;
      if (previous.length) {
        this.upload.resumeFromPreviousUpload(previous[0]);
        this.say("Resuming an earlier upload of this file.");
      } else {
        this.say("Uploading…");
      }
      this.upload.start();
    });
  }

  uploaded() {
    const id = this.upload.url.replace(/\/+$/, "").split("/").pop();
    this.id = id;
    this.state = "done";
    this.buttons();
    this.bar.value = 100;
    this.stats.textContent = "100 % · " + bytes(this.file.size) + " of " + bytes(this.file.size);
    this.say("Uploaded. Scanning and ingesting…");
    this.node.dataset.dataset = id;
    done(this);
    showNew(id, (d) => this.final(d));
    showUnfinished();
  }

  final(d) {
    const link = el("a", { href: "/datasets/" + d.id + "/" }, "Open");
    if (d.status === "completed") {
      this.say(el("span", {}, "Completed: " + count(d.row_count) + " rows. ", link), "ok");
    } else {
      const place = d.error ? errorPlace(d.error) : "";
      const why = d.error ? d.error.message + (place ? " (" + place + ")" : "") : "";
      this.say(el("span", {}, STATUS_TEXT[d.status] + ". " + why + " ", link), "error");
    }
    this.node.dataset.final = d.status;
  }

  failed(error) {
    if (this.state === "cancelled") return;
    this.state = "paused";
    this.buttons();
    if (!navigator.onLine) {
      this.say("Offline: the upload resumes when the connection is back.");
      return;
    }
    let reason = error.message;
    const response = error.originalResponse;
    if (response) {
      let body = null;
      try { body = JSON.parse(response.getBody()); } catch (_) { /* not JSON */ }
      reason = sentence(response.getStatus(), body, response.getHeader("Retry-After"));
    }
    this.say("Upload stopped: " + reason + " Press Resume to try again.", "error");
  }

  pause() {
    if (this.state !== "running") return;
    this.upload.abort(); // keeps the upload on the server and its URL here
    this.state = "paused";
    this.buttons();
    this.say("Paused.");
  }

  resume() {
    if (this.state !== "paused") return;
    this.samples = [];
    this.state = "running";
    this.buttons();
    this.say("Uploading…");
    this.upload.start();
  }

  cancel() {
    const was = this.state;
    this.state = "cancelled";
    this.buttons();
    this.say("Cancelled.");
    if (was === "waiting") {
      queue.splice(queue.indexOf(this), 1);
      return;
    }
    // Terminates the upload on the server (tus DELETE) and forgets its URL here.
    this.upload.abort(true).catch(() => {}).finally(showUnfinished);
    done(this);
  }
}

function done(item) {
  if (item.counted) return;
  item.counted = true;
  running--;
  pump();
}

function pump() {
  while (running < PARALLEL && queue.length) {
    const item = queue.shift();
    item.counted = false;
    running++;
    item.start();
  }
}

function add(files) {
  if (!window.tus || !tus.isSupported) {
    showError(notice, new Error("This browser cannot send resumable uploads."));
    return;
  }
  // Every file goes: the server refuses what is not CSV text, with a sentence saying so.
  const list = Array.from(files);
  if (!list.length) return;
  const opts = options();
  if (list.length > 1) opts.name = ""; // each dataset is named after its file
  for (const file of list) queue.push(new UploadItem(file, opts));
  section.querySelector("#upload-name").value = "";
  pump();
}

picker.addEventListener("change", () => {
  add(picker.files);
  picker.value = "";
});

// Drag and drop anywhere on the page.
let depth = 0;
const hasFiles = (event) => Array.from(event.dataTransfer?.types || []).includes("Files");
document.addEventListener("dragenter", (event) => {
  if (!hasFiles(event)) return;
  event.preventDefault();
  depth++;
  overlay.hidden = false;
});
document.addEventListener("dragover", (event) => {
  if (!hasFiles(event)) return;
  event.preventDefault();
  event.dataTransfer.dropEffect = "copy";
});
document.addEventListener("dragleave", () => {
  depth = Math.max(0, depth - 1);
  if (!depth) overlay.hidden = true;
});
document.addEventListener("drop", (event) => {
  if (!hasFiles(event)) return;
  event.preventDefault();
  depth = 0;
  overlay.hidden = true;
  add(event.dataTransfer.files);
});

window.addEventListener("online", () => {
  for (const node of uploadsList.children) {
    const item = items.get(node);
    if (item && item.state === "paused" && item.message.textContent.startsWith("Offline")) item.resume();
  }
});

function showUnfinished() {
  if (!window.tus || !tus.defaultOptions.urlStorage) return;
  tus.defaultOptions.urlStorage.findAllUploads().then((all) => {
    const prefix = "tus::csvault/" + section.dataset.user + "/";
    const active = new Set(Array.from(uploadsList.querySelectorAll(".upload-item")).map((n) => n.dataset.file));
    const mine = all.filter((u) => (u.urlStorageKey || "").startsWith(prefix))
      .map((u) => (u.metadata && u.metadata.filename) || "?")
      .filter((name) => !active.has(name));
    unfinished.hidden = !mine.length;
    unfinished.textContent = mine.length
      ? "Unfinished: " + mine.join(", ") + ". Choose the same file again to resume." : "";
  });
}

// A notice handed over by another page (?deleted=NAME after a delete).
const handed = new URLSearchParams(location.search).get("deleted");
if (handed) {
  notice.hidden = false;
  notice.textContent = "Deleted “" + handed + "”.";
  history.replaceState(null, "", "/");
}

showUnfinished();
load(listUrl(), true);
// Files chosen while this script was still loading.
if (picker.files.length) {
  add(picker.files);
  picker.value = "";
}
document.body.dataset.ready = "true"; // the page's handlers are in place
