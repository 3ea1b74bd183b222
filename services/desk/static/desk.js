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
  document.querySelectorAll("[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });
})();
