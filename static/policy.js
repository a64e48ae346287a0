// Policy pages: check a CEL condition as it is typed, preview a masking algorithm on sample values.
// Both ask the server (the checks and maskers are the Python ones); the pages work without this file.
(function () {
  "use strict";

  function csrfToken() {
    var input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function post(url, fields) {
    var body = new FormData();
    Object.keys(fields).forEach(function (name) { body.append(name, fields[name]); });
    return fetch(url, {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken() },
    }).then(function (response) {
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      return response.json();
    });
  }

  function text(tag, content, className) {
    var node = document.createElement(tag);
    node.textContent = content;
    if (className) { node.className = className; }
    return node;
  }

  function showMatches(result) {
    var summary = document.querySelector("[data-match-summary]");
    var list = document.querySelector("[data-match-list]");
    if (!summary || !list) { return; }
    list.replaceChildren();
    if (!result.ok) { summary.textContent = "—"; return; }
    var shown = result.matches.length;
    summary.textContent = result.count + (result.count === 1 ? " column" : " columns") +
      (result.count > shown ? " (first " + shown + " shown)" : "") +
      (result.taken ? "; " + result.taken + " taken first by an earlier rule" : "") + ".";
    result.matches.forEach(function (match) {
      var item = document.createElement("li");
      item.appendChild(text("code", match.column));
      item.appendChild(document.createTextNode(" "));
      item.appendChild(text("span", match.environment, "muted"));
      if (match.taken_by) {
        item.appendChild(document.createTextNode(" "));
        item.appendChild(text("span", "taken first by \u201c" + match.taken_by + "\u201d", "warn"));
      }
      list.appendChild(item);
    });
  }

  document.querySelectorAll("textarea[data-check-url]").forEach(function (area) {
    // The live status sits next to the field; aria-describedby also names its help and errors.
    var status = area.parentNode.querySelector(".check-status");
    var timer = null;
    var sent = 0;
    function check() {
      var ticket = ++sent;
      var fields = { condition: area.value, kind: area.dataset.checkKind, rule: area.dataset.rule || "" };
      if (area.dataset.projectField) {
        var project = document.querySelector(area.dataset.projectField);
        fields.project = project ? project.value : "";
      }
      post(area.dataset.checkUrl, fields).then(function (result) {
        if (ticket !== sent) { return; } // an answer to an older keystroke
        status.className = "check-status " + (result.ok ? "ok" : "error");
        status.textContent = result.ok ? "\u2713 Valid condition" : "\u2717 " + result.error;
        area.setAttribute("aria-invalid", result.ok ? "false" : "true");
        if (area.dataset.checkKind !== "approval") { showMatches(result); }
      }).catch(function () {
        status.className = "check-status";
        status.textContent = "Could not check the condition right now.";
      });
    }
    // The server's own error for the field (after a submit) stays the one message shown until the
    // admin edits the condition; then the live status takes over and the stale error goes.
    var serverErrors = area.parentNode.querySelector("[data-server-errors]");
    function recheck() {
      clearTimeout(timer);
      timer = setTimeout(check, 300);
    }
    area.addEventListener("input", function () {
      if (serverErrors) {
        var errorList = serverErrors.querySelector("[id]");
        if (errorList) {
          // The error is gone from the page: stop describing the field with it.
          var ids = area.getAttribute("aria-describedby").split(/\s+/).filter(function (id) { return id !== errorList.id; });
          area.setAttribute("aria-describedby", ids.join(" "));
        }
        serverErrors.remove();
        serverErrors = null;
      }
      recheck();
    });
    // An exemption's empty condition means every column of its project; its project is chosen on
    // the same form, so the matches follow both.
    var isExemption = area.dataset.checkKind === "exemption";
    if (isExemption && area.dataset.projectField) {
      var projectField = document.querySelector(area.dataset.projectField);
      if (projectField) { projectField.addEventListener("change", recheck); }
    }
    if (serverErrors) {
      area.setAttribute("aria-invalid", "true");
    } else if (area.value.trim() || isExemption) {
      check();
    }
  });

  document.querySelectorAll("[data-preview-url]").forEach(function (button) {
    button.addEventListener("click", function () {
      var algorithm = document.querySelector(button.dataset.algorithm);
      var samples = document.querySelector(button.dataset.samples);
      var results = document.querySelector(button.dataset.results);
      post(button.dataset.previewUrl, { algorithm: algorithm.value, samples: samples.value }).then(function (result) {
        results.replaceChildren();
        if (!result.ok) { results.appendChild(text("p", result.error, "error")); return; }
        var table = document.createElement("table");
        table.appendChild(text("caption", "Sample values and how they are masked", "visually-hidden"));
        var head = table.createTHead().insertRow();
        ["Value", "Masked"].forEach(function (heading) {
          var cell = text("th", heading);
          cell.scope = "col";
          head.appendChild(cell);
        });
        var body = table.createTBody();
        result.results.forEach(function (row) {
          var line = body.insertRow();
          line.appendChild(text("td", row.input));
          line.appendChild(text("td", row.output === null ? "NULL" : row.output));
        });
        results.appendChild(table);
        if (result.throwaway_key) {
          results.appendChild(text("p", "Pseudonyms are shown under a throwaway key, not the data-access layer's.", "muted"));
        }
      }).catch(function () {
        results.replaceChildren(text("p", "Could not preview right now.", "error"));
      });
    });
  });
})();
