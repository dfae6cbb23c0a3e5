// The ask page: Enter asks, Shift+Enter adds a line; a new turn scrolls into view. No inline scripts (CSP).
(function () {
  "use strict";

  document.addEventListener("keydown", function (event) {
    var field = event.target;
    if (!(field instanceof HTMLTextAreaElement) || !field.closest("#ask-form")) return;
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      if (field.value.trim()) field.form.requestSubmit();
    }
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.target.id === "turns") {
      var turns = event.target.querySelectorAll(".turn");
      if (turns.length) turns[turns.length - 1].scrollIntoView({ block: "start", behavior: "smooth" });
    }
  });

  // The web tier answers 429 + Retry-After when it is full; htmx swaps nothing for an error, so say so here
  // and ask again after the wait, a bounded number of times.
  var MAX_BUSY_RETRIES = 3;
  var busyRetries = 0;

  function askNote(form) {
    var note = form.querySelector(".ask-note");
    if (!note) {
      note = document.createElement("p");
      note.className = "ask-note";
      note.setAttribute("role", "status");
      form.appendChild(note);
    }
    return note;
  }

  document.addEventListener("htmx:responseError", function (event) {
    var form = event.detail.elt && event.detail.elt.closest && event.detail.elt.closest("#ask-form");
    if (!form) return;
    var xhr = event.detail.xhr;
    var note = askNote(form);
    if (xhr.status === 429 && busyRetries < MAX_BUSY_RETRIES) {
      var wait = Math.max(1, parseInt(xhr.getResponseHeader("Retry-After") || "2", 10) || 2);
      busyRetries += 1;
      note.textContent = "ragsite is busy, retrying in " + wait + " s (attempt " + busyRetries + " of " +
        MAX_BUSY_RETRIES + ").";
      window.setTimeout(function () { form.requestSubmit(); }, wait * 1000);
      return;
    }
    busyRetries = 0;
    note.textContent = xhr.status === 429
      ? "ragsite is still busy. Please ask again in a minute."
      : "Your question could not be sent (HTTP " + xhr.status + "). Please try again.";
  });

  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail.elt && event.detail.elt.closest && event.detail.elt.closest("#ask-form");
    if (!form || !event.detail.successful) return;
    busyRetries = 0;
    var note = form.querySelector(".ask-note");
    if (note) note.remove();
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    if (event.target.id === "ask-form") {
      var question = document.querySelector("#ask-form textarea");
      if (question) question.focus();
    }
  });
})();
