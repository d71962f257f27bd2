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

  document.getElementById("upload").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target;
    const data = new FormData();
    data.append("file", form.file.files[0]);
    data.append("has_header", form.has_header.checked ? "true" : "false");
    data.append("delimiter", form.delimiter.value || ",");
    const bar = document.getElementById("upload-progress");
    const message = document.getElementById("upload-message");
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/datasets/");
    xhr.setRequestHeader("X-CSRFToken", csrf());
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = (100 * e.loaded) / e.total; };
    xhr.onload = () => {
      bar.hidden = true;
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
      if (xhr.status === 201) { message.textContent = "Uploaded; scanning and ingesting."; render(body); form.reset(); }
      else { message.textContent = (body.error && body.error.message) || "Upload failed (" + xhr.status + ")."; message.className = "error"; }
    };
    xhr.onerror = () => { bar.hidden = true; message.textContent = "Upload failed: network error."; message.className = "error"; };
    bar.hidden = false; bar.value = 0; message.textContent = ""; message.className = "";
    xhr.send(data);
  });

  load();
})();
