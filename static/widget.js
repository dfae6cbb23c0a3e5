/* ragsite widget: <script src="https://ragsite.example/widget/v1/widget.js" data-key="wk_…" async></script>
 * Renders in a Shadow DOM (it neither takes nor leaks CSS) and adds one global, window.RagsiteWidget.
 * Optional attributes: data-token (a visitor token), data-token-url (a host-backend address that returns a
 * fresh token, fetched before each question), data-title. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.RagsiteWidget) return;

  var KEY = script.getAttribute("data-key") || "";
  var TOKEN_URL = script.getAttribute("data-token-url") || "";
  var TITLE = script.getAttribute("data-title") || "Ask ragsite";
  var API = new URL(".", script.src).href + encodeURIComponent(KEY) + "/";
  var MAX_RETRIES = 3;
  var MAX_WAIT_S = 30;
  var token = script.getAttribute("data-token") || "";
  var history = [];
  var busy = false;
  var configured = null;

  var CSS =
    ":host{all:initial!important;position:fixed!important;right:16px!important;bottom:16px!important;" +
    "z-index:2147483000!important;display:block!important;font:14px/1.45 system-ui,sans-serif;color:#1d2330}" +
    "*{box-sizing:border-box}" +
    ".launcher{border:0;border-radius:24px;padding:10px 18px;background:#2357d6;color:#fff;font:inherit;" +
    "font-weight:600;cursor:pointer;box-shadow:0 2px 8px rgba(0,0,0,.25)}" +
    "button:focus-visible,textarea:focus-visible,summary:focus-visible{outline:3px solid #f2b705;outline-offset:2px}" +
    ".panel{position:absolute;right:0;bottom:56px;width:min(420px,calc(100vw - 32px));max-height:min(640px,80vh);" +
    "display:flex;flex-direction:column;background:#fff;border:1px solid #dde2ec;border-radius:10px;" +
    "box-shadow:0 8px 30px rgba(0,0,0,.2);overflow:hidden}" +
    ".panel[hidden]{display:none}" +
    "header{display:flex;align-items:center;justify-content:space-between;padding:8px 12px;background:#f3f5fa;" +
    "border-bottom:1px solid #dde2ec}" +
    "h2{margin:0;font-size:15px}" +
    ".close{border:0;background:none;font:inherit;font-size:20px;line-height:1;cursor:pointer;color:#5b6475}" +
    ".log{flex:1;overflow-y:auto;padding:10px 12px}" +
    ".q{margin:8px 0 4px;font-weight:600}.a{white-space:pre-wrap;margin:0 0 6px}" +
    ".err{color:#a4161a}.note{margin:0 0 6px;color:#8a5a00;font-size:13px}.status{margin:0;padding:0 12px;min-height:1.2em;color:#5b6475;font-size:13px}" +
    "details{margin:4px 0;border-left:3px solid #dde2ec;padding-left:8px}summary{cursor:pointer;color:#2357d6}" +
    "blockquote{margin:4px 0;white-space:pre-wrap;color:#333;font-size:13px}" +
    "form{display:flex;flex-direction:column;gap:6px;padding:8px 12px;border-top:1px solid #dde2ec}" +
    "label{font-size:13px;color:#5b6475}" +
    "textarea{width:100%;resize:vertical;font:inherit;padding:6px;border:1px solid #b8c0d0;border-radius:6px}" +
    ".send{align-self:flex-end;border:0;border-radius:6px;padding:6px 14px;background:#2357d6;color:#fff;" +
    "font:inherit;cursor:pointer}.send:disabled{background:#9aa7c7;cursor:default}";

  var host = document.createElement("ragsite-widget");
  var root = host.attachShadow({ mode: "open" });
  root.innerHTML =
    "<style>" + CSS + "</style>" +
    '<section class="panel" id="panel" role="dialog" aria-modal="false" aria-labelledby="title" hidden>' +
    '<header><h2 id="title"></h2><button class="close" type="button" aria-label="Close">\u00d7</button></header>' +
    '<div class="log" role="log" aria-live="polite"></div>' +
    '<p class="status" role="status" aria-live="polite"></p>' +
    '<form><label for="question">Your question</label>' +
    '<textarea id="question" rows="3" maxlength="2000"></textarea>' +
    '<button class="send" type="submit">Ask</button></form></section>' +
    '<button class="launcher" type="button" aria-haspopup="dialog" aria-expanded="false" aria-controls="panel">' +
    "</button>";

  function $(selector) {
    return root.querySelector(selector);
  }
  var panel = $(".panel");
  var launcher = $(".launcher");
  var log = $(".log");
  var status = $(".status");
  var form = $("form");
  var input = $("textarea");
  var send = $(".send");
  $("h2").textContent = TITLE;
  launcher.textContent = TITLE;

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text) node.textContent = text;
    return node;
  }

  function setStatus(text) {
    status.textContent = text || "";
  }

  function setBusy(value) {
    busy = value;
    send.disabled = value;
  }

  function showError(message, target) {
    var node = el("p", "err", message);
    node.setAttribute("role", "alert");
    (target || log).appendChild(node);
    log.scrollTop = log.scrollHeight;
  }

  function open() {
    panel.hidden = false;
    launcher.setAttribute("aria-expanded", "true");
    input.focus();
    if (!configured) configure();
  }

  function close() {
    panel.hidden = true;
    launcher.setAttribute("aria-expanded", "false");
    launcher.focus();
  }

  function errorMessage(response) {
    return response.json().then(
      function (body) {
        return (body && body.error && body.error.message) || "ragsite answered " + response.status + ".";
      },
      function () {
        return "ragsite answered " + response.status + ".";
      }
    );
  }

  var UNREACHABLE =
    "Could not reach ragsite from this page: the network failed, or this site is not allowed to use the widget.";

  // Asks once, on first opening, so that a refused site or key says why before anyone types.
  function configure() {
    configured = fetch(API + "config", { credentials: "omit" }).then(
      function (response) {
        if (response.ok) {
          return response.json().then(function (config) {
            input.maxLength = config.max_question_chars || 2000;
            return true;
          });
        }
        return errorMessage(response).then(function (message) {
          refuse(message);
          return false;
        });
      },
      function () {
        refuse(UNREACHABLE);
        return false;
      }
    );
    return configured;
  }

  function refuse(message) {
    showError(message);
    input.disabled = true;
    send.disabled = true;
  }

  function freshToken() {
    if (!TOKEN_URL) return Promise.resolve(token);
    return fetch(TOKEN_URL, { credentials: "same-origin" }).then(function (response) {
      if (!response.ok) throw new Error("The host site gave no visitor token (" + response.status + ").");
      return response.text().then(function (text) {
        try {
          return JSON.parse(text).token || "";
        } catch (e) {
          return text.trim();
        }
      });
    });
  }

  function retryAfter(response) {
    var seconds = parseFloat(response.headers.get("Retry-After") || "");
    if (!(seconds >= 0)) seconds = 2;
    return Math.min(seconds, MAX_WAIT_S);
  }

  function ask(question) {
    setBusy(true);
    var entry = el("div", "entry");
    entry.appendChild(el("p", "q", question));
    var extract = el("p", "extract");
    extract.hidden = true;
    entry.appendChild(extract);
    var answer = el("p", "a");
    entry.appendChild(answer);
    log.appendChild(entry);
    log.scrollTop = log.scrollHeight;
    var turn = { question: question, answer: answer, extract: extract, entry: entry, sources: null };
    freshToken().then(
      function (visitorToken) {
        post(turn, visitorToken, 0);
      },
      function (error) {
        finish(turn, error.message);
      }
    );
  }

  function post(turn, visitorToken, attempt) {
    fetch(API + "ask", {
      method: "POST",
      credentials: "omit",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ question: turn.question, token: visitorToken, history: history })
    }).then(
      function (response) {
        if (response.status === 429 && attempt < MAX_RETRIES) {
          var wait = retryAfter(response);
          setStatus(
            "Busy, retrying in " + Math.ceil(wait) + " s (attempt " + (attempt + 1) + " of " + MAX_RETRIES + ")…"
          );
          setTimeout(function () {
            post(turn, visitorToken, attempt + 1);
          }, wait * 1000);
          return;
        }
        if (!response.ok || !response.body) {
          return errorMessage(response).then(function (message) {
            finish(turn, message);
          });
        }
        setStatus("Answering…");
        return readEvents(response.body, turn);
      },
      function () {
        finish(turn, UNREACHABLE);
      }
    );
  }

  // Server-sent events over fetch: EventSource cannot POST.
  function readEvents(body, turn) {
    var reader = body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    var ended = false;
    function handle(block) {
      var kind = "message";
      var data = [];
      block.split("\n").forEach(function (line) {
        if (line.indexOf("event:") === 0) kind = line.slice(6).trim();
        else if (line.indexOf("data:") === 0) data.push(line.slice(5).replace(/^ /, ""));
      });
      if (!data.length) return;
      var payload = JSON.parse(data.join("\n"));
      if (kind === "sources") showSources(turn, payload.sources || []);
      else if (kind === "extract") {
        // The passages' own best sentences, shown at once; the model's answer follows below them.
        turn.extract.textContent = "From the documents: " + payload.text;
        turn.extract.hidden = false;
      } else if (kind === "token") turn.answer.textContent += payload.text;
      else if (kind === "busy") setStatus(payload.message || "Busy, retrying…");
      else if (kind === "error") {
        ended = true;
        finish(turn, payload.message);
      } else if (kind === "done") {
        ended = true;
        // The checked answer replaces what streamed, and its sources (cited first) replace the list.
        turn.answer.textContent = payload.answer || turn.answer.textContent;
        turn.extract.hidden = true;
        showSources(turn, payload.sources || []);
        // The model had no room: the passages' own words stay the answer, and the visitor learns when to
        // ask again for one in the model's words. A reused answer says when it was written.
        if (payload.retry_after) {
          turn.entry.appendChild(el("p", "note",
            "The full answer is queued: the model is busy. Ask again in " + payload.retry_after + " s."));
        }
        if (payload.reused_at) {
          turn.entry.appendChild(el("p", "note",
            "Reused: written " + new Date(payload.reused_at).toLocaleString() + " for the same question."));
        }
        history.push([turn.question, turn.answer.textContent]);
        if (history.length > 6) history.shift();
        finish(turn, "");
      }
      log.scrollTop = log.scrollHeight;
    }
    function pump() {
      return reader.read().then(function (chunk) {
        if (chunk.done) {
          if (!ended) finish(turn, "The answer was cut off. Please ask again.");
          return;
        }
        buffer += decoder.decode(chunk.value, { stream: true }).replace(/\r\n/g, "\n");
        var end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          handle(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
        return pump();
      });
    }
    return pump().catch(function () {
      if (!ended) finish(turn, "The connection to ragsite broke off. Please ask again.");
    });
  }

  function showSources(turn, sources) {
    if (turn.sources) turn.sources.remove();
    turn.sources = null;
    if (!sources.length) return;
    var list = el("div", "sources");
    list.appendChild(el("p", "label", "Sources"));
    var others = null;
    sources.forEach(function (source) {
      var details = el("details", "source");
      if (source.cited === false && sources.some(function (s) { return s.cited; })) {
        if (!others) {
          others = el("details", "also-retrieved");
          others.appendChild(el("summary", "", "Also retrieved"));
          list.appendChild(others);
        }
        others.appendChild(details);
      } else list.appendChild(details);
      var where = [source.title, source.heading, source.page ? "p. " + source.page : ""].filter(Boolean);
      details.appendChild(el("summary", "", "[" + source.number + "] " + where.join(" — ")));
      details.appendChild(el("blockquote", "", source.text || source.excerpt));
    });
    turn.sources = list;
    turn.entry.appendChild(list);
  }

  function finish(turn, error) {
    setStatus("");
    if (error) showError(error, turn.entry);
    setBusy(false);
  }

  launcher.addEventListener("click", function () {
    if (panel.hidden) open();
    else close();
  });
  $(".close").addEventListener("click", close);
  panel.addEventListener("keydown", function (event) {
    if (event.key === "Escape") close();
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var question = input.value.trim();
    if (!question || busy) return;
    (configured || configure()).then(function (ok) {
      if (!ok) return;
      input.value = "";
      ask(question);
    });
  });

  function mount() {
    document.body.appendChild(host);
  }
  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);

  window.RagsiteWidget = Object.freeze({
    version: "1",
    open: open,
    close: close,
    setToken: function (value) {
      token = String(value || "");
    }
  });
})();
