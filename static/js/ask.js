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

  document.addEventListener("htmx:afterSettle", function (event) {
    if (event.target.id === "ask-form") {
      var question = document.querySelector("#ask-form textarea");
      if (question) question.focus();
    }
  });
})();
