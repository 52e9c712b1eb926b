// The console's own script, beside htmx and its SSE extension (assets/vendor/): the theme
// button, the live-updates notice, and the runbook commands' copy buttons. Loaded in
// <head> so the chosen theme applies before the page is drawn.
(function () {
  "use strict";
  var root = document.documentElement;
  var saved = null;
  try { saved = localStorage.getItem("nodemedic-theme"); } catch (e) { /* no storage */ }
  if (saved === "light" || saved === "dark") { root.setAttribute("data-theme", saved); }

  function current() {
    var t = root.getAttribute("data-theme");
    if (t) { return t; }
    return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  }

  function label(button) {
    var dark = current() === "dark";
    button.setAttribute("aria-pressed", dark ? "true" : "false");
    button.textContent = dark ? "Light theme" : "Dark theme";
  }

  function status(state, text) {
    var s = document.getElementById("live-status");
    if (s) { s.setAttribute("data-state", state); s.textContent = text; }
  }

  var lost = false;
  document.addEventListener("htmx:sseOpen", function () {
    status("live", "Live");
    if (lost) {
      // Changes made while the page was away were not sent to it: fetch its regions again.
      lost = false;
      document.body.dispatchEvent(new Event("refresh"));
    }
  });
  document.addEventListener("htmx:sseError", function () {
    lost = true;
    status("offline", "Disconnected from the collector; reconnecting\u2026");
  });

  document.addEventListener("click", function (e) {
    var target = e.target;
    if (!(target instanceof Element)) { return; }
    if (target.id === "theme") {
      var next = current() === "dark" ? "light" : "dark";
      root.setAttribute("data-theme", next);
      try { localStorage.setItem("nodemedic-theme", next); } catch (err) { /* no storage */ }
      label(target);
      return;
    }
    var copy = target.closest("button[data-copy]");
    if (copy) {
      var text = copy.getAttribute("data-copy");
      var done = function () { copy.textContent = "Copied"; setTimeout(function () { copy.textContent = "Copy"; }, 1500); };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, function () { select(copy); });
      } else {
        select(copy);
      }
    }
  });

  // Without the clipboard API (plain http to a non-local host), select the command so
  // Ctrl+C copies it.
  function select(button) {
    var pre = button.parentElement && button.parentElement.querySelector("pre");
    if (!pre) { return; }
    var range = document.createRange();
    range.selectNodeContents(pre);
    var sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    button.textContent = "Selected: press Ctrl+C";
  }

  document.addEventListener("DOMContentLoaded", function () {
    var b = document.getElementById("theme");
    if (b) { label(b); }
  });
})();
