// Sortable tables for the dlmark report: click (or Enter on) a header to sort by that column.
// Numeric cells carry their raw value in data-value, so "1,234.5" sorts as a number and
// empty cells go last. No dependencies: the site must open offline.
(function () {
  "use strict";

  function cellKey(row, column) {
    var cell = row.cells[column];
    if (!cell) return { empty: true };
    if (cell.hasAttribute("data-value")) return { number: parseFloat(cell.getAttribute("data-value")) };
    var text = cell.textContent.trim();
    return text === "" ? { empty: true } : { text: text };
  }

  function compare(a, b) {
    if (a.empty || b.empty) return (a.empty ? 1 : 0) - (b.empty ? 1 : 0);
    if (a.number !== undefined && b.number !== undefined) return a.number - b.number;
    return String(a.text !== undefined ? a.text : a.number)
      .localeCompare(String(b.text !== undefined ? b.text : b.number), undefined, { numeric: true });
  }

  function sortBy(table, header, column) {
    var ascending = header.getAttribute("aria-sort") !== "ascending";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r1, r2) {
      var a = cellKey(r1, column), b = cellKey(r2, column);
      var order = compare(a, b);
      if (a.empty || b.empty) return order;  // empty cells last in both directions
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) { th.removeAttribute("aria-sort"); });
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }

  document.querySelectorAll("table.sortable").forEach(function (table) {
    if (!table.tHead) return;
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (header, column) {
      header.addEventListener("click", function () { sortBy(table, header, column); });
      header.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sortBy(table, header, column); }
      });
    });
  });
})();
