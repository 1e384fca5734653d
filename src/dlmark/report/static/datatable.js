// Tables of any length for the dlmark report: the rows come from a data file (data/NAME.js, which
// sets window.DLMARK_TABLES[NAME]); the page shows one page of them at a time, with a search box
// (every word must occur in the row, any case), sorting by a header (click again to reverse, empty
// cells last) and pages. Cells are set through textContent: values from result files never run.
// No dependencies: the site must open offline, from file:// too.
(function () {
  "use strict";

  var formats = {};
  function format(value, digits) {
    if (value === null || value === undefined) return "";
    if (!formats[digits]) {
      formats[digits] = new Intl.NumberFormat("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
    }
    return formats[digits].format(value);
  }

  function decode(table) {
    // Columnar codes -> rows of values (text columns are codes into their dictionary).
    var rows = new Array(table.rows);
    for (var r = 0; r < table.rows; r++) rows[r] = new Array(table.columns.length);
    table.columns.forEach(function (column, c) {
      var data = table.data[c], values = column.values;
      for (var r = 0; r < table.rows; r++) {
        var v = data[r];
        rows[r][c] = values ? (v === null ? null : values[v]) : v;
      }
    });
    return rows;
  }

  function element(tag, attributes, text) {
    var node = document.createElement(tag);
    Object.keys(attributes || {}).forEach(function (key) { node.setAttribute(key, attributes[key]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function build(holder) {
    var name = holder.getAttribute("data-table");
    var table = (window.DLMARK_TABLES || {})[name];
    if (!table) {
      holder.appendChild(element("p", { "class": "note" }, "The data file data/" + name + ".js did not load."));
      return;
    }
    var columns = table.columns, all = decode(table);
    var pageSize = parseInt(holder.getAttribute("data-page-size") || "50", 10);
    var haystacks = null;  // each row's text, lower case, built on the first search
    var shown = all, page = 0, sortColumn = -1, ascending = true;

    var bar = element("div", { "class": "datatable-bar" });
    var search = element("input", { type: "search", placeholder: "Search " + all.length.toLocaleString("en-US") + " rows",
                                    "aria-label": "search the table", "class": "datatable-search" });
    var info = element("span", { "class": "datatable-info" });
    bar.appendChild(search);
    bar.appendChild(info);
    var wrap = element("div", { "class": "table-wrap" });
    var grid = element("table", { "class": "sortable datatable", id: holder.id + "-table" });
    var head = element("tr");
    columns.forEach(function (column, c) {
      var th = element("th", { scope: "col", tabindex: "0" }, column.label);
      if (column.digits !== undefined) th.className = "num";
      th.addEventListener("click", function () { sortBy(c, th); });
      th.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sortBy(c, th); }
      });
      head.appendChild(th);
    });
    grid.appendChild(element("thead")).appendChild(head);
    var body = grid.appendChild(element("tbody"));
    wrap.appendChild(grid);
    var pager = element("div", { "class": "datatable-pager" });
    var buttons = {};
    [["first", "\u00ab first"], ["previous", "\u2039 previous"], ["next", "next \u203a"], ["last", "last \u00bb"]]
      .forEach(function (pair) {
        var button = element("button", { type: "button", "data-page": pair[0] }, pair[1]);
        button.addEventListener("click", function () { turn(pair[0]); });
        buttons[pair[0]] = button;
        pager.appendChild(button);
      });
    var where = element("span", { "class": "datatable-page" });
    pager.appendChild(where);
    holder.appendChild(bar);
    holder.appendChild(wrap);
    holder.appendChild(pager);

    function pages() { return Math.max(1, Math.ceil(shown.length / pageSize)); }

    function turn(to) {
      if (to === "first") page = 0;
      else if (to === "previous") page = Math.max(0, page - 1);
      else if (to === "next") page = Math.min(pages() - 1, page + 1);
      else if (to === "last") page = pages() - 1;
      render();
    }

    function compare(a, b, numeric) {
      if (numeric) return a - b;
      return String(a).localeCompare(String(b), undefined, { numeric: true });
    }

    function sortBy(c, th) {
      ascending = sortColumn === c ? !ascending : true;
      sortColumn = c;
      var numeric = columns[c].digits !== undefined;
      var sign = ascending ? 1 : -1;
      shown = shown.slice().sort(function (r1, r2) {
        var a = r1[c], b = r2[c];
        var emptyA = a === null || a === "", emptyB = b === null || b === "";
        if (emptyA || emptyB) return (emptyA ? 1 : 0) - (emptyB ? 1 : 0);  // empty cells last either way
        return sign * compare(a, b, numeric);
      });
      Array.prototype.forEach.call(head.cells, function (cell) { cell.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      page = 0;
      render();
    }

    function filter(query) {
      var words = query.toLowerCase().split(/\s+/).filter(Boolean);
      if (!words.length) { shown = all; } else {
        if (!haystacks) {
          haystacks = new Map();
          all.forEach(function (row) {
            haystacks.set(row, row.map(function (v, c) {
              return v === null ? "" : (columns[c].digits !== undefined ? String(v) : v);
            }).join("\u0001").toLowerCase());
          });
        }
        shown = all.filter(function (row) {
          var text = haystacks.get(row);
          return words.every(function (word) { return text.indexOf(word) >= 0; });
        });
      }
      if (sortColumn >= 0) {
        var th = head.cells[sortColumn];
        ascending = !ascending;  // sortBy flips it back: same order as before the search
        sortBy(sortColumn, th);
      } else {
        page = 0;
        render();
      }
    }

    function render() {
      page = Math.min(page, pages() - 1);
      var start = page * pageSize, rows = shown.slice(start, start + pageSize);
      var fragment = document.createDocumentFragment();
      rows.forEach(function (row) {
        var tr = element("tr");
        row.forEach(function (value, c) {
          var column = columns[c], td;
          if (column.digits !== undefined) {
            td = element("td", { "class": "num" }, format(value, column.digits));
          } else {
            td = element("td");
            var link = column.links && value !== null ? column.links[column.values.indexOf(value)] : null;
            if (link) td.appendChild(element("a", { href: link }, value)); else td.textContent = value === null ? "" : value;
          }
          tr.appendChild(td);
        });
        fragment.appendChild(tr);
      });
      body.textContent = "";
      body.appendChild(fragment);
      var total = all.length.toLocaleString("en-US");
      info.textContent = shown.length === all.length ? total + " rows"
        : shown.length.toLocaleString("en-US") + " of " + total + " rows match";
      where.textContent = shown.length ? "rows " + (start + 1).toLocaleString("en-US") + "\u2013" +
        (start + rows.length).toLocaleString("en-US") + ", page " + (page + 1) + " of " + pages() : "no rows";
      buttons.first.disabled = buttons.previous.disabled = page === 0;
      buttons.next.disabled = buttons.last.disabled = page >= pages() - 1;
      pager.hidden = all.length <= pageSize;
    }

    var timer = null;
    search.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () { filter(search.value); }, 120);
    });
    // index.html#search=ResNet opens with that search (family pages link so).
    var hash = /(?:^#|&)search=([^&]*)/.exec(window.location.hash);
    if (hash && holder.hasAttribute("data-hash-search")) {
      search.value = decodeURIComponent(hash[1].replace(/\+/g, " "));
      filter(search.value);
    } else {
      render();
    }
    holder.setAttribute("data-ready", "true");
  }

  document.querySelectorAll("div.datatable[data-table]").forEach(build);
})();
