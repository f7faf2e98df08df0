// Copy buttons for the links shown to staff: a button[data-copy] copies the value of the readonly input it names,
// and says "Copied" for a moment. A link in a flash message gets the same: the link in a readonly input (to select
// by hand too) with a Copy button beside it.
"use strict";
(function () {
  function say(button, text) {
    var state = button.parentNode.querySelector(".copy-state");
    button.textContent = text;
    if (state) state.textContent = text === "Copied" ? "Link copied to the clipboard." : "";
    window.setTimeout(function () { button.textContent = "Copy"; if (state) state.textContent = ""; }, 2000);
  }
  function copy(button) {
    var input = document.getElementById(button.getAttribute("data-copy"));
    if (!input) return;
    input.select();
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(input.value).then(
        function () { say(button, "Copied"); },
        function () { say(button, "Press Ctrl+C to copy"); }
      );
    } else {
      say(button, "Press Ctrl+C to copy");
    }
  }
  function linksInMessages() {
    var count = 0;
    document.querySelectorAll("ul.messages li").forEach(function (item) {
      var text = item.textContent;
      var match = text.match(/https?:\/\/\S+/);
      if (!match) return;
      var before = text.slice(0, match.index).replace(/[\s:]+$/, "");
      var shown = Array.prototype.some.call(document.querySelectorAll("input[readonly]"), function (field) {
        return field.value === match[0];
      });
      if (shown) {
        // The page shows this link in a field of its own already: the message need not repeat it.
        item.textContent = before + ": below, with a copy button.";
        return;
      }
      count += 1;
      var id = "message-link-" + count;
      item.textContent = before + ":";
      var input = document.createElement("input");
      input.type = "text";
      input.readOnly = true;
      input.id = id;
      input.value = match[0];
      input.setAttribute("aria-label", "The link");
      var button = document.createElement("button");
      button.type = "button";
      button.className = "secondary copy-button";
      button.setAttribute("data-copy", id);
      button.textContent = "Copy";
      var state = document.createElement("span");
      state.className = "copy-state";
      state.setAttribute("role", "status");
      item.appendChild(input);
      item.appendChild(button);
      item.appendChild(state);
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    linksInMessages();
    document.querySelectorAll("button[data-copy]").forEach(function (button) {
      button.addEventListener("click", function () { copy(button); });
    });
  });
})();
