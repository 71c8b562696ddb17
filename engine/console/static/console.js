// ketqua lab console: the only script. Refreshes the overview's live part, and prints the retest list.
// Every page works without it; it never builds markup from data (the server's escaped HTML is swapped in whole).
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (live && window.fetch) {
    var every = Math.max(2, parseFloat(live.getAttribute("data-every")) || 10) * 1000;
    var refresh = function () {
      fetch(live.getAttribute("data-live"), { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) { if (r.ok && r.url.indexOf("/console/login") < 0) { return r.text(); } throw new Error(String(r.status)); })
        .then(function (html) {
          var page = new DOMParser().parseFromString(html, "text/html");
          var fresh = page.getElementById("live-part");
          if (fresh) { live.replaceChildren.apply(live, Array.prototype.slice.call(fresh.childNodes)); }
        })
        .catch(function () { /* offline for a moment: try again next time */ })
        .then(function () { window.setTimeout(refresh, every); });
    };
    window.setTimeout(refresh, every);
  }
  Array.prototype.forEach.call(document.querySelectorAll("[data-print]"), function (button) {
    button.addEventListener("click", function () { window.print(); });
  });
})();
