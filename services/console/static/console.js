// Live updates for the alerts page: one EventSource; each event replaces or inserts one row by event id,
// so a reconnect (the browser resends Last-Event-ID) never draws a row twice.
(function () {
  "use strict";
  var rows = document.getElementById("alert-rows");
  var health = document.getElementById("health-area");
  var status = document.getElementById("live-status");
  // When each row was drawn (ms since the epoch), for `make bench-console`'s alert-to-screen latency.
  window.vigilDrawn = window.vigilDrawn || {};
  // How many times the stream (re)connected: each reconnect resumes from Last-Event-ID.
  window.vigilConnects = 0;

  function setStatus(text, cls) {
    if (status) { status.textContent = text; status.className = "live-status " + cls; }
  }

  function upsertRow(data) {
    var tmp = document.createElement("tbody");
    tmp.innerHTML = data.html.trim();
    var row = tmp.firstElementChild;
    var old = document.getElementById("alert-" + data.id);
    if (old) { old.replaceWith(row); } else { rows.insertBefore(row, rows.firstElementChild); }
    var empty = document.getElementById("no-alerts");
    if (empty) { empty.remove(); }
    if (!(data.id in window.vigilDrawn)) { window.vigilDrawn[data.id] = Date.now(); }
  }

  if (rows && window.EventSource) {
    var source = new EventSource("/events?since=" + encodeURIComponent(rows.dataset.seq || "0"));
    source.addEventListener("open", function () { window.vigilConnects += 1; setStatus("live", "ok"); });
    source.addEventListener("error", function () { setStatus("reconnecting…", "down"); });
    source.addEventListener("alert", function (e) { upsertRow(JSON.parse(e.data)); });
    source.addEventListener("gone", function (e) {
      var old = document.getElementById("alert-" + JSON.parse(e.data).id);
      if (old) { old.remove(); }
    });
    source.addEventListener("cameras", function (e) {
      var cams = document.getElementById("camera-rows");
      if (cams) { cams.innerHTML = JSON.parse(e.data).html; }
    });
    // Further behind than the server's change log reaches: draw the whole page again.
    source.addEventListener("reload", function () { window.location.reload(); });
  } else {
    setStatus("live updates need JavaScript and EventSource: reload for new alerts", "down");
  }

  if (health) {
    setInterval(function () {
      fetch("/fragments/health", {credentials: "same-origin"})
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (html) { health.innerHTML = html; })
        .catch(function () { /* the next tick tries again; the stream's status shows the outage */ });
    }, 5000);
  }
})();
