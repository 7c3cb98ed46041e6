// The Tuning pages: embed the Bokeh layout the server built, then poll for updates and apply
// them. Every decision (what each source holds, axes, colours) is made on the server
// (dasktune/dashboard/study_doc.py, index_doc.py); this only applies what it says:
//   sources: {name: {mode: "replace", data} | {mode: "upsert", key, data}}  (upsert: rows
//            by key, replacing the rows with the same key and adding the others)
//   factors: {figure name: [categories of its y axis]}
//   counts: {state: n} (into #count-<state>), best: text (into #best)
//   cursor: what to send as ?since= next time; params: the parameters the layout must have.
"use strict";
var DaskTune = (function () {
  var NON_FINITE = {"NaN": NaN, "Infinity": Infinity, "-Infinity": -Infinity};

  function finite(column) {
    // JSON has no literal for them: the server sends non-finite numbers as strings.
    return column.map(function (v) { return typeof v === "string" && v in NON_FINITE ? NON_FINITE[v] : v; });
  }

  function upsert(source, key, rows) {
    var data = {}, names = Object.keys(source.data), index = {};
    names.forEach(function (n) { data[n] = Array.prototype.slice.call(source.data[n]); });
    data[key].forEach(function (k, i) { index[k] = i; });
    rows[key].forEach(function (k, j) {
      var i = k in index ? index[k] : (index[k] = data[key].length);
      names.forEach(function (n) { if (n in rows) data[n][i] = rows[n][j]; });
    });
    source.data = data;
  }

  function apply(doc, update) {
    Object.keys(update.sources || {}).forEach(function (name) {
      var change = update.sources[name], source = doc.get_model_by_name(name), rows = {};
      Object.keys(change.data).forEach(function (c) { rows[c] = finite(change.data[c]); });
      if (change.mode === "replace") source.data = rows;
      else if (rows[change.key].length) upsert(source, change.key, rows);
    });
    Object.keys(update.factors || {}).forEach(function (name) {
      var range = doc.get_model_by_name(name).y_range, factors = update.factors[name];
      if (range.factors.join("\n") !== factors.join("\n")) range.factors = factors;
    });
    Object.keys(update.counts || {}).forEach(function (state) {
      var element = document.getElementById("count-" + state);
      if (element) element.textContent = String(update.counts[state]);
    });
    if (update.best !== undefined) document.getElementById("best").textContent = update.best;
  }

  // Embed `item` into #tuning-root, then apply what `url` answers every `ms` ms. `params`:
  // the parameters the layout has figures for; a study that gained one is drawn anew.
  function live(url, item, ms, params) {
    var cursor = 0, busy = false, doc = null;
    function tick() {
      if (busy || doc === null) return;
      busy = true;
      fetch(url + (url.indexOf("?") < 0 ? "?" : "&") + "since=" + cursor, {cache: "no-store"})
        .then(function (r) { if (!r.ok) throw new Error(r.status + " " + r.statusText); return r.json(); })
        .then(function (update) {
          if (params && update.params && update.params.join("\n") !== params.join("\n")) {
            location.reload();
            return;
          }
          if (update.cursor !== undefined && update.cursor < cursor) {  // the scheduler restarted
            location.reload();
            return;
          }
          apply(doc, update);
          if (update.cursor !== undefined) cursor = update.cursor;
          document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
        })
        .catch(function (e) { console.error("dasktune: " + e + (e.stack ? "\n" + e.stack : "")); })
        .finally(function () { busy = false; });
    }
    Bokeh.embed.embed_item(item, "tuning-root").then(function () {
      doc = Bokeh.documents[Bokeh.documents.length - 1];
      tick();
      setInterval(tick, ms);
    });
  }

  return {live: live};
})();
