// The staff dashboard's small behaviours, loaded as a static file (no inline script under the CSP):
// "select all" checkboxes for bulk actions, and following operations that run in the background.
"use strict";

(function () {
  function selectAll() {
    document.querySelectorAll("input.select-all[data-target]").forEach(function (box) {
      box.addEventListener("change", function () {
        var form = document.getElementById(box.getAttribute("data-target"));
        if (!form) return;
        form.querySelectorAll('input[type="checkbox"][name="partners"]').forEach(function (item) {
          item.checked = box.checked;
        });
      });
    });
  }

  // Each element with data-progress-url is polled until its operation is finished; the server renders the
  // same state on a reload, so the page works without this script too.
  function follow(element) {
    var url = element.getAttribute("data-progress-url");
    var delay = 1500;
    function update(data) {
      var bar = element.querySelector("progress");
      if (bar) { bar.max = data.total || 1; bar.value = data.done; bar.textContent = data.percent + "%"; }
      var state = element.querySelector(".progress-state");
      if (state) state.textContent = data.state;
      var message = element.querySelector(".progress-message");
      if (message) message.textContent = data.message;
      element.className = element.className.replace(/\bstate-\S+/, "state-" + data.state);
    }
    function poll() {
      fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (response) { if (!response.ok) throw new Error(response.status); return response.json(); })
        .then(function (data) {
          update(data);
          if (!data.finished && data.state !== "stale") {
            delay = Math.min(delay * 1.3, 10000);
            window.setTimeout(poll, delay);
          }
        })
        .catch(function () { window.setTimeout(poll, 10000); });
    }
    window.setTimeout(poll, delay);
  }

  document.addEventListener("DOMContentLoaded", function () {
    selectAll();
    document.querySelectorAll("[data-progress-url]").forEach(follow);
  });
})();
