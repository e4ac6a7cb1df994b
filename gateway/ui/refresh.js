// Refreshes the page body every few seconds without reloading, keeping the
// lookup query (it is in the URL) and what the operator is typing.
(function () {
  "use strict";
  var every = 2000;
  function refresh() {
    var typing = document.activeElement && document.activeElement.id === "blob";
    if (typing) { return setTimeout(refresh, every); }
    fetch("/ui/body" + location.search, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.status === 401 || r.status === 403) { location.reload(); return null; }
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.text();
      })
      .then(function (html) {
        if (html !== null) { document.getElementById("main").innerHTML = html; }
      })
      .catch(function (e) {
        var s = document.getElementById("refresh-state");
        if (s) { s.textContent = "refresh failed: " + e.message; s.className = "bad"; }
      })
      .finally(function () { setTimeout(refresh, every); });
  }
  setTimeout(refresh, every);
})();
