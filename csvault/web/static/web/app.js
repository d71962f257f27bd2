// The upload page: the same JSON API as every client, with the session and CSRF token.
"use strict";
(function () {
  const FINAL = new Set(["completed", "failed", "rejected", "cancelled"]);
  const csrf = () => (document.cookie.match(/(?:^|; )csrftoken=([^;]*)/) || [])[1] || "";
  const tbody = document.querySelector("#datasets tbody");
  const streams = new Map();

  function api(method, url) {
    return fetch(url, { method, credentials: "same-origin", headers: { "X-CSRFToken": csrf(), Accept: "application/json" } })
      .then(async (r) => (r.status === 204 ? null : { status: r.status, body: await r.json() }));
  }

  function cell(text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }

  function describe(p) {
    let text = p.percent.toFixed(1) + " %";
    if (p.rows_per_second) text += " · " + Math.round(p.rows_per_second).toLocaleString() + " rows/s";
    if (p.eta_seconds) text += " · ETA " + Math.round(p.eta_seconds) + " s";
    return text;
  }

  function render(d) {
    let tr = document.getElementById("d-" + d.id);
    if (!tr) {
      tr = document.createElement("tr");
      tr.id = "d-" + d.id;
      tbody.prepend(tr);
    }
    tr.replaceChildren();
    tr.append(cell(d.name));
    const status = cell(d.status, "status-" + d.status);
    if (d.error) {
      const why = document.createElement("small");
      const where = ["row", "column"].filter((k) => d.error[k]).map((k) => k + " " + d.error[k]).join(", ");
      why.textContent = d.error.message + (where ? " (" + where + ")" : "");
      status.append(why);
    }
    tr.append(status, cell(describe(d.progress)), cell(d.row_count == null ? "" : d.row_count.toLocaleString()));
    tr.append(cell(new Date(d.created_at).toLocaleString()));
    const actions = document.createElement("td");
    if (d.status === "completed") {
      for (const fmt of ["csv", "jsonl"]) {
        const a = document.createElement("a");
        a.href = "/api/datasets/" + d.id + "/export/?format=" + fmt;
        a.textContent = fmt.toUpperCase();
        actions.append(a, " ");
      }
    }
    const del = document.createElement("button");
    del.textContent = "Delete";
    del.onclick = () => api("DELETE", "/api/datasets/" + d.id + "/").then(() => { tr.remove(); stop(d.id); });
    actions.append(del);
    tr.append(actions);
    if (!FINAL.has(d.status)) follow(d.id);
  }

  function stop(id) {
    const timer = streams.get(id);
    if (timer) { clearInterval(timer); streams.delete(id); }
  }

  // Progress is polled (one cached, query-free request a second per unfinished
  // dataset) rather than streamed: an event stream holds a server thread for
  // its whole life, and a page with several uploads would hold several.
  function follow(id) {
    if (streams.has(id)) return;
    const refresh = () => api("GET", "/api/datasets/" + id + "/").then((r) => r && r.status === 200 && render(r.body));
    const timer = setInterval(() => {
      api("GET", "/api/datasets/" + id + "/progress/").then((r) => {
        if (!r || r.status !== 200) { stop(id); return; }
        const p = r.body;
        const row = document.getElementById("d-" + id);
        if (row) { row.children[1].firstChild.textContent = p.status; row.children[2].textContent = describe(p); }
        if (FINAL.has(p.status)) { stop(id); refresh(); }
      });
    }, 1000);
    streams.set(id, timer);
  }

  function load() {
    api("GET", "/api/datasets/").then((r) => r && r.body.results.reverse().forEach(render));
  }

  // --- resumable upload (tus 1.0 at /api/uploads/, with the vendored tus-js-client) ---

  const form = document.getElementById("upload");
  const bar = document.getElementById("upload-progress");
  const stats = document.getElementById("upload-stats");
  const message = document.getElementById("upload-message");
  const unfinished = document.getElementById("upload-unfinished");
  const startButton = document.getElementById("upload-start");
  const pauseButton = document.getElementById("upload-pause");
  const resumeButton = document.getElementById("upload-resume");
  let upload = null;
  let samples = []; // [time ms, bytes sent] of the last few seconds, for the speed

  function bytes(n) {
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return (i ? n.toFixed(1) : String(n)) + " " + units[i];
  }

  function say(text, isError) {
    message.textContent = text;
    message.className = isError ? "error" : "";
  }

  function buttons(state) { // "idle", "running" or "paused"
    startButton.disabled = state !== "idle";
    pauseButton.hidden = state !== "running";
    resumeButton.hidden = state !== "paused";
  }

  function showProgress(sent, total) {
    const now = Date.now();
    samples.push([now, sent]);
    while (samples.length > 2 && now - samples[0][0] > 5000) samples.shift();
    const [t0, b0] = samples[0];
    const speed = now > t0 && sent > b0 ? (1000 * (sent - b0)) / (now - t0) : 0;
    const percent = total ? (100 * sent) / total : 100;
    bar.hidden = false;
    bar.value = percent;
    let text = percent.toFixed(1) + " % · " + bytes(sent) + " of " + bytes(total);
    if (speed) text += " · " + bytes(Math.round(speed)) + "/s · ETA " + Math.ceil((total - sent) / speed) + " s";
    stats.textContent = text;
  }

  function metadata() {
    const file = form.file.files[0];
    return {
      filename: file.name,
      name: form.elements.name.value.trim(),
      delimiter: form.delimiter.value,
      encoding: form.encoding.value,
      has_header: form.has_header.checked ? "true" : "false",
    };
  }

  function datasetId(url) {
    return url.replace(/\/+$/, "").split("/").pop();
  }

  // The upload URL is kept in localStorage under the file's fingerprint (user, name,
  // size, modification time), so a reload resumes it once the same file is chosen again.
  function fingerprint(file) {
    return Promise.resolve(["csvault", form.dataset.user, file.name, file.size, file.lastModified].join("/"));
  }

  function begin(file) {
    samples = [];
    const options = {
      endpoint: "/api/uploads/",
      chunkSize: Number(form.dataset.chunkSize) || 5 * 1024 * 1024,
      retryDelays: [0, 1000, 3000, 5000, 10000, 20000],
      storeFingerprintForResuming: true,
      removeFingerprintOnSuccess: true,
      fingerprint,
      metadata: metadata(),
      headers: { Accept: "application/json" },
      onBeforeRequest: (req) => {
        // The CSRF token is read at every request (logging in again rotates it); set
        // here only, as a second setHeader of the same name appends to the first.
        req.setHeader("X-CSRFToken", csrf());
      },
      onProgress: showProgress,
      onSuccess: () => {
        const id = datasetId(upload.url);
        upload = null;
        buttons("idle");
        bar.value = 100;
        stats.textContent = "100 % · " + bytes(file.size) + " of " + bytes(file.size);
        say("Upload complete; scanning and ingesting.");
        form.dataset.lastDataset = id;
        form.reset();
        api("GET", "/api/datasets/" + id + "/").then((r) => r && r.status === 200 && render(r.body));
        showUnfinished();
      },
      onError: (error) => {
        if (!navigator.onLine) {
          buttons("paused");
          say("Offline: the upload resumes when the connection is back.");
          return;
        }
        buttons("paused");
        let reason = error.message;
        const response = error.originalResponse;
        if (response) {
          try { reason = JSON.parse(response.getBody()).error.message; } catch (_) { /* not JSON */ }
        }
        say("Upload stopped: " + reason + " Press Resume to try again.", true);
      },
    };
    upload = new tus.Upload(file, options);
    upload.findPreviousUploads().then((previous) => {
      if (previous.length) {
        upload.resumeFromPreviousUpload(previous[0]);
        say("Resuming an earlier upload of this file.");
      } else {
        say("");
      }
      buttons("running");
      upload.start();
    });
  }

  function resume() {
    if (!upload) return;
    samples = [];
    say("");
    buttons("running");
    upload.start();
  }

  window.addEventListener("online", () => {
    if (upload && !resumeButton.hidden && message.textContent.startsWith("Offline")) resume();
  });

  pauseButton.addEventListener("click", () => {
    if (!upload) return;
    upload.abort(); // keeps the upload on the server and its URL here
    buttons("paused");
    say("Paused.");
  });
  resumeButton.addEventListener("click", resume);

  function showUnfinished() {
    if (!window.tus || !tus.defaultOptions.urlStorage) return;
    tus.defaultOptions.urlStorage.findAllUploads().then((all) => {
      const mine = all.filter((u) => (u.urlStorageKey || "").startsWith("tus::csvault/" + form.dataset.user + "/"));
      unfinished.hidden = !mine.length;
      unfinished.textContent = mine.length
        ? "Unfinished: " + mine.map((u) => (u.metadata && u.metadata.filename) || "?").join(", ") +
          ". Choose the same file and press Upload to resume."
        : "";
    });
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!window.tus || !tus.isSupported) {
      say("This browser cannot send resumable uploads.", true);
      return;
    }
    if (upload) return;
    bar.hidden = false;
    bar.value = 0;
    stats.textContent = "";
    begin(form.file.files[0]);
  });

  buttons("idle");
  showUnfinished();
  load();
})();
