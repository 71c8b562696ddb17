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
  // Sampling station: the camera as a scanner, through the browser's own BarcodeDetector (no library). Where the
  // browser has none, or no camera, the buttons stay hidden and a hardware scanner types into the focused field.
  if ("BarcodeDetector" in window && navigator.mediaDevices && navigator.mediaDevices.getUserMedia) {
    var view = document.getElementById("camera-view");
    Array.prototype.forEach.call(document.querySelectorAll("[data-camera]"), function (button) {
      var field = document.getElementById(button.getAttribute("data-camera"));
      if (!field || !view) { return; }
      button.hidden = false;
      button.addEventListener("click", function () {
        var detector = new window.BarcodeDetector({ formats: field.id === "qr" ? ["qr_code"] : ["code_128", "code_39", "ean_13", "qr_code", "data_matrix"] });
        navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } }).then(function (stream) {
          view.srcObject = stream;
          view.hidden = false;
          view.play();
          var stop = function () { stream.getTracks().forEach(function (t) { t.stop(); }); view.hidden = true; };
          var look = function () {
            detector.detect(view).then(function (codes) {
              if (codes.length) {
                stop();
                field.value = codes[0].rawValue;
                if (field.id === "qr" && field.form.requestSubmit) { field.form.requestSubmit(); } else { field.focus(); }
              } else { window.setTimeout(look, 250); }
            }).catch(function () { window.setTimeout(look, 500); });
          };
          look();
        }).catch(function () { button.hidden = true; });
      });
    });
  }
  Array.prototype.forEach.call(document.querySelectorAll("[data-print]"), function (button) {
    button.addEventListener("click", function () { window.print(); });
  });
})();
