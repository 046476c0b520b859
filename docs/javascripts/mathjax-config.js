// MathJax 3 configuration for the vca_ref site.  Loaded BEFORE the vendored
// assets/vendor/mathjax/tex-chtml.js, which docs/_hooks/vca_docs.py copies into the build
// from the npm package `mathjax@3` (installed by .ci/install-docs.sh; nothing comes from a CDN).
//
// Only these elements are typeset, so prose and code elsewhere are never touched:
//   .arithmatex          Markdown pages: pymdownx.arithmatex (generic mode) wraps math as
//                        <span class="arithmatex">\( ... \)</span> / <div ...>\[ ... \]</div>
//   .jp-RenderedMarkdown notebook pages: nbconvert leaves $...$ / $$...$$ in markdown cells
//   .jp-RenderedLatex    notebook pages: text/latex outputs
// (An ignoreHtmlClass/processHtmlClass pair cannot do this: MathJax re-applies the ignore
// pattern to every class-less child, so the <p> inside a notebook cell would be skipped.)
// CHTML fonts load from [mathjax]/output/chtml/fonts/woff-v2, next to the vendored file.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true
  },
  startup: {
    elements: [".arithmatex", ".jp-RenderedMarkdown", ".jp-RenderedLatex"]
  }
};
