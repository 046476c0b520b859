// Notebook pages: the solution of each exercise starts folded.
//
// The notebooks tag their solution cells "solution" (and hide their source in Jupyter);
// nbconvert turns the tag into the class celltag_solution on the cell.  Here each run of such
// cells moves into one <details class="vca-solution"> whose summary reads "Solution", so a
// reader tries the exercise before opening it.  Pages without such cells are left alone.
(function () {
  "use strict";
  function fold() {
    document.querySelectorAll(".jp-Cell.celltag_solution").forEach(function (cell) {
      if (cell.parentElement.closest(".celltag_solution")) return;   // the template nests two
      var prev = cell.previousElementSibling;
      if (prev && prev.matches("details.vca-solution")) {   // the same solution, continued
        prev.appendChild(cell);
        return;
      }
      var box = document.createElement("details");
      box.className = "vca-solution tip";
      var summary = document.createElement("summary");
      summary.textContent = "Solution";
      box.appendChild(summary);
      cell.parentNode.insertBefore(box, cell);
      box.appendChild(cell);
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", fold);
  } else {
    fold();
  }
})();
