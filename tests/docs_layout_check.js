// Layout report for one page of the built site, read back by tests/test_docs.py.
//
// The test's web server adds this script to every HTML page it serves (the built site itself
// never contains it).  Once MathJax has typeset the page, it measures what a reader at the
// current window width can see and appends the result as JSON in <pre id="vca-layout-report">,
// which `chromium --dump-dom` prints.
//
// Each display equation (mjx-container[display=true]), code block (pre) and image gets
// one verdict, walking from the element out to the content column:
//   "scrolls"    an ancestor (or itself) with overflow-x auto/scroll is wider inside than
//                outside: the reader gets a horizontal scrollbar, and the scroller fits the column;
//   "fits"       nothing is cut and it lies inside the content column;
//   "clipped"    an ancestor with overflow hidden/clip cuts it: part of it cannot be seen at all;
//   "overflows"  it runs out of the content column (under the contents panel or off screen).
(function () {
  "use strict";

  function overflowX(el) { return getComputedStyle(el).overflowX; }

  // -> [verdict, width of the element or of the formula inside it, in px]
  function verdict(el, column) {
    var col = column.getBoundingClientRect();
    var r = el.getBoundingClientRect();
    var inner = el.querySelector("mjx-math");                 // the typeset formula itself
    if (inner) {
      var m = inner.getBoundingClientRect();
      r = { left: Math.min(r.left, m.left), right: Math.max(r.right, m.right),
            width: m.width };
    }
    for (var a = el; a && a !== column; a = a.parentElement) {
      var o = overflowX(a);
      var b = a.getBoundingClientRect();
      if ((o === "auto" || o === "scroll") && a.scrollWidth > a.clientWidth + 1) {
        return [(b.right > col.right + 1 || b.left < col.left - 1) ? "overflows" : "scrolls", r.width];
      }
      if ((o === "hidden" || o === "clip") && (r.right > b.right + 1 || r.left < b.left - 1)) {
        return ["clipped", r.width];
      }
    }
    return [(r.right > col.right + 1 || r.left < col.left - 1) ? "overflows" : "fits", r.width];
  }

  function describe(el, kind, column) {
    var text = (el.getAttribute("data-vca-tex") || el.textContent || "").replace(/\s+/g, " ");
    var v = verdict(el, column);
    return { kind: kind, verdict: v[0], width: Math.round(v[1]), text: text.slice(0, 80) };
  }

  function report(data) {
    var pre = document.createElement("pre");
    pre.id = "vca-layout-report";
    pre.textContent = JSON.stringify(data);
    document.body.appendChild(pre);
  }

  function measure() {
    var column = document.querySelector("article.md-content__inner");
    if (!column) { report({ error: "no article.md-content__inner on the page" }); return; }
    var doc = window.MathJax && window.MathJax.startup && window.MathJax.startup.document;
    if (doc && doc.math) {                      // remember each formula's TeX, for the messages
      for (var item of doc.math) {
        if (item.typesetRoot) item.typesetRoot.setAttribute("data-vca-tex", item.math);
      }
    }
    var items = [];
    column.querySelectorAll('mjx-container[display="true"]').forEach(function (el) {
      items.push(describe(el, "math", column));
    });
    column.querySelectorAll("pre").forEach(function (el) {
      if (el.id !== "vca-layout-report") items.push(describe(el, "code", column));
    });
    column.querySelectorAll("img").forEach(function (el) {       // plots and figures
      items.push(describe(el, "image", column));
    });
    report({ window: window.innerWidth, column: Math.round(column.getBoundingClientRect().width),
             typeset: !!(window.MathJax && window.MathJax.startup), items: items });
  }

  function start() {
    var mj = window.MathJax;
    if (mj && mj.startup && mj.startup.promise) {
      mj.startup.promise.then(measure, function (e) { report({ error: "MathJax: " + e }); });
    } else {
      measure();
    }
  }

  if (document.readyState === "complete") { start(); } else { window.addEventListener("load", start); }
})();
