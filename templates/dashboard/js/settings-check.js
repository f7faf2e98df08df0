// The settings page's live check: it takes seconds (it calls Microsoft), so the page is shown first and this
// fills the results in from the JSON endpoint named by #checks[data-check-url].
"use strict";
(function () {
  var section = document.getElementById("checks");
  if (!section || !section.getAttribute("data-check-url")) return;
  var rows = document.getElementById("check-rows");
  var state = document.getElementById("checks-state");
  function cell(row, text, tag) {
    var element = document.createElement(tag || "td");
    element.textContent = text;
    row.appendChild(element);
    return element;
  }
  fetch(section.getAttribute("data-check-url"), { headers: { Accept: "application/json" }, credentials: "same-origin" })
    .then(function (response) { if (!response.ok) throw new Error("the check answered " + response.status); return response.json(); })
    .then(function (data) {
      rows.textContent = "";
      data.checks.forEach(function (c) {
        var row = document.createElement("tr");
        row.className = c.ok ? "ok-row" : "bad-row";
        cell(row, c.name, "th");
        cell(row, c.ok ? "OK" : "Failed");
        cell(row, c.milliseconds + " ms");
        cell(row, c.detail).className = "wrap";
        rows.appendChild(row);
      });
      var failed = data.checks.filter(function (c) { return !c.ok; }).length;
      state.textContent = failed ? failed + " check" + (failed > 1 ? "s" : "") + " failed." : "Everything answered.";
    })
    .catch(function (error) { state.textContent = "The live check could not be run: " + error.message + ". Use Check again."; });
})();
