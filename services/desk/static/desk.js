// The desk's one script: search as you type, "/" to search, filters that apply at once.
(function () {
  "use strict";
  var input = document.querySelector("[data-live-search]");
  if (input) {
    var timer = null, asked = "";
    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        var q = input.value.trim();
        if (q === asked) { return; }
        asked = q;
        fetch(input.dataset.liveSearch + "?q=" + encodeURIComponent(q), {credentials: "same-origin"})
          .then(function (r) { return r.ok ? r.text() : ""; })
          .then(function (html) {
            if (asked !== q) { return; }
            var holder = document.getElementById("results");
            if (!holder) {
              holder = document.createElement("div");
              document.getElementById("main").prepend(holder);
            }
            holder.outerHTML = html;  // server-rendered, every value escaped
          });
      }, 150);
    });
    input.form.addEventListener("submit", function (e) {
      var first = document.querySelector("#results a");
      if (first) { e.preventDefault(); window.location.href = first.href; }
    });
  }
  document.addEventListener("keydown", function (e) {
    var typing = /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement.tagName);
    if (e.key === "/" && !typing && input) { e.preventDefault(); input.focus(); input.select(); }
  });
  // The open card follows the customer: a touchpoint from any channel shows without a reload.
  var card = document.querySelector("article[data-live]");
  if (card && window.EventSource) {
    var stream = new EventSource(card.dataset.live);
    stream.addEventListener("changed", function () {
      fetch(window.location.pathname + window.location.search, {credentials: "same-origin"})
        .then(function (r) { return r.ok ? r.text() : ""; })
        .then(function (html) {
          if (!html) { return; }
          var fresh = new DOMParser().parseFromString(html, "text/html");
          fresh.querySelectorAll("[data-part]").forEach(function (part) {
            var here = card.querySelector('[data-part="' + part.dataset.part + '"]');
            if (here) { here.innerHTML = part.innerHTML; }  // server-rendered, escaped
          });
          bindFilters();
        });
    });
    window.addEventListener("pagehide", function () { stream.close(); });
  }
  function bindFilters() {
    document.querySelectorAll("[data-autosubmit]").forEach(function (select) {
      if (select.dataset.bound) { return; }
      select.dataset.bound = "1";
      select.addEventListener("change", function () { select.form.submit(); });
    });
  }
  bindFilters();
})();
