// wharf dashboard: live updates without a reload. Server-sent events
// (/api/admin/events) say a deployment changed; the page then fetches its
// own URL again and swaps in the new <main>. EventSource reconnects by
// itself. No token is ever read or stored here: the session cookie is
// HttpOnly and the browser sends it.
(function () {
  "use strict";
  var main = document.getElementById("main");
  var live = document.getElementById("live");
  if (!main || !live || main.hasAttribute("data-static")) { return; }
  var timer = null;
  var busy = false;

  function typing() {
    var a = document.activeElement;
    return a && main.contains(a) && (a.tagName === "INPUT" || a.tagName === "SELECT") && a.value !== "";
  }

  function refresh() {
    timer = null;
    if (busy) { schedule(500); return; }
    if (typing()) { schedule(2000); return; }
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.redirected || r.status === 401) { window.location.assign("/"); return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (!html) { return; }
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("main");
        if (!fresh) { return; }
        var focused = document.activeElement && document.activeElement.id;
        main.replaceWith(fresh);
        main = fresh;
        if (focused && document.getElementById(focused)) { document.getElementById(focused).focus(); }
        if (main.hasAttribute("data-running")) { schedule(1000); }
      })
      .catch(function () {})
      .then(function () { busy = false; });
  }

  function schedule(ms) {
    if (timer === null) { timer = window.setTimeout(refresh, ms); }
  }

  if (window.EventSource) {
    var source = new EventSource("/api/admin/events");
    source.addEventListener("hello", function () {
      live.textContent = "live";
      document.body.setAttribute("data-live", "1");
    });
    source.addEventListener("deployment", function () { schedule(200); });
    source.addEventListener("lagged", function () { schedule(200); });
    source.addEventListener("signed_out", function () { source.close(); window.location.assign("/"); });
    source.onerror = function () {
      live.textContent = "reconnecting…";
      document.body.removeAttribute("data-live");
    };
  }
  // A running deployment's log grows without a change event per line.
  if (main.hasAttribute("data-running")) { schedule(1000); }
})();
