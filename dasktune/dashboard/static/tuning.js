// The Tuning pages: poll dasktune's JSON endpoint and fill the Bokeh sources.
// Only what changed since our cursor travels; the page keeps every trial it has seen.
"use strict";
var DaskTune = (function () {
  function fmt(v) {
    if (v === null || v === undefined) return "–";
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toPrecision(6);
    return String(v);
  }
  function when(ms) { return ms ? new Date(ms).toLocaleString() : "–"; }

  function poll(url, ms, onData) {
    var busy = false;
    function tick() {
      if (busy) return;
      busy = true;
      fetch(url(), {cache: "no-store"})
        .then(function (r) { if (!r.ok) throw new Error(r.status + " " + r.statusText); return r.json(); })
        .then(onData)
        .catch(function (e) { console.error("dasktune: " + e + (e.stack ? "\n" + e.stack : "")); })
        .finally(function () { busy = false; });
    }
    tick();
    setInterval(tick, ms);
  }

  function index(root, ms) {
    poll(function () { return root + "tuning/api/studies"; }, ms, function (data) {
      var body = document.querySelector("#studies tbody");
      document.getElementById("empty").style.display = data.studies.length ? "none" : "";
      body.innerHTML = "";
      data.studies.forEach(function (s) {
        var tr = document.createElement("tr");
        tr.dataset.study = s.study;
        var link = root + "tuning/study/" + encodeURIComponent(s.storage) + "/" + encodeURIComponent(s.study);
        var cells = [s.storage, s.directions.join(", "), s.trials.RUNNING, s.trials.COMPLETE,
          s.trials.PRUNED, s.trials.FAIL, s.trials.WAITING, s.best ? fmt(Number(s.best.value)) : "–",
          fmt(s.trials_per_minute), when(s.started), when(s.updated)];
        var a = document.createElement("a");
        a.href = link;
        a.textContent = s.study;
        var first = document.createElement("td");
        first.appendChild(a);
        tr.appendChild(first);
        cells.forEach(function (c, i) {
          var td = document.createElement("td");
          td.textContent = fmt(c);
          td.className = ["storage", "direction", "RUNNING", "COMPLETE", "PRUNED", "FAIL", "WAITING",
            "best", "rate", "started", "updated"][i];
          tr.appendChild(td);
        });
        body.appendChild(tr);
      });
    });
  }

  function study(apiUrl, item, directions, colors, ms) {
    var rows = {};
    var cursor = 0;
    var doc = null;
    var minimize = directions[0] === "minimize";
    Bokeh.embed.embed_item(item, "tuning-root").then(function () {
      doc = Bokeh.documents[Bokeh.documents.length - 1];
      var select = doc.get_model_by_name("param_select");
      select.connect(select.properties.value.change, function () { draw(); });
      poll(function () { return apiUrl + "?since=" + cursor; }, ms, function (data) {
        if (data.cursor < cursor) rows = {};  // the scheduler restarted: start over
        data.trials.forEach(function (t) {
          // Non-finite numbers travel as strings ("Infinity", "NaN"): JSON has no literal for them.
          if (t.values) t.values = t.values.map(Number);
          t.intermediate = t.intermediate.map(function (p) { return [p[0], Number(p[1])]; });
          rows[t.number] = t;
        });
        cursor = data.cursor;
        if (data.trials.length || !draw.done) draw();
        draw.done = true;
      });
    });

    function set(name, data) { doc.get_model_by_name(name).data = data; }

    function draw() {
      var all = Object.keys(rows).map(function (k) { return rows[k]; })
        .sort(function (a, b) { return a.number - b.number; });
      var counts = {RUNNING: 0, COMPLETE: 0, PRUNED: 0, FAIL: 0, WAITING: 0};
      all.forEach(function (t) { counts[t.state] = (counts[t.state] || 0) + 1; });
      document.getElementById("counts").innerHTML = Object.keys(counts).map(function (s) {
        return '<span class="' + s + '">' + s + ": <b>" + counts[s] + "</b></span>";
      }).join("");
      var complete = all.filter(function (t) { return t.state === "COMPLETE" && t.values; });
      if (directions.length === 2) drawPareto(complete); else drawHistory(all, complete);
      drawTimeline(all);
      drawCurves(all);
      drawParams(complete);
      drawTables(all, complete);
    }

    function better(a, b) { return minimize ? a < b : a > b; }

    function drawHistory(all, complete) {
      var h = {number: [], value: [], color: []}, b = {number: [], best: []}, best = null;
      complete.forEach(function (t) {
        var v = t.values[0];
        h.number.push(t.number); h.value.push(v); h.color.push(colors.COMPLETE);
        if (best === null || better(v, best)) best = v;
        b.number.push(t.number); b.best.push(best);
      });
      set("history", h);
      set("best", b);
      document.getElementById("best").textContent = fmt(best);
    }

    function dominates(a, b) {
      var strictly = false;
      for (var i = 0; i < 2; i++) {
        var x = directions[i] === "minimize" ? a[i] : -a[i], y = directions[i] === "minimize" ? b[i] : -b[i];
        if (x > y) return false;
        if (x < y) strictly = true;
      }
      return strictly;
    }

    function drawPareto(complete) {
      var p = {x: [], y: [], number: [], color: [], kind: []}, front = 0;
      complete.forEach(function (t) {
        var onFront = !complete.some(function (o) { return dominates(o.values, t.values); });
        if (onFront) front++;
        p.x.push(t.values[0]); p.y.push(t.values[1]); p.number.push(t.number);
        p.color.push(onFront ? colors.FAIL : colors.COMPLETE);
        p.kind.push(onFront ? "Pareto-optimal" : "dominated");
      });
      set("pareto", p);
      document.getElementById("best").textContent = front + " Pareto-optimal trials";
    }

    function drawTimeline(all) {
      var now = Date.now(), d = {worker: [], start: [], end: [], color: [], number: [], state: [], note: [], edge: []};
      var workers = {};
      all.forEach(function (t) {
        if (t.start === null) return;
        var w = t.worker || "(this process)";
        workers[w] = true;
        d.worker.push(w); d.start.push(t.start); d.end.push(t.complete || now);
        d.color.push(colors[t.state] || "#000"); d.number.push(t.number); d.state.push(t.state);
        d.note.push(t.fail_reason || ""); d.edge.push(t.fail_reason ? 1 : 0);
      });
      doc.get_model_by_name("timeline_plot").y_range.factors = Object.keys(workers).sort();
      set("timeline", d);
    }

    function drawCurves(all) {
      var c = {xs: [], ys: [], color: [], number: [], state: []};
      all.forEach(function (t) {
        if (!t.intermediate.length) return;
        c.xs.push(t.intermediate.map(function (p) { return p[0]; }));
        c.ys.push(t.intermediate.map(function (p) { return p[1]; }));
        c.color.push(colors[t.state] || "#000"); c.number.push(t.number); c.state.push(t.state);
      });
      set("curves", c);
    }

    function drawParams(complete) {
      var select = doc.get_model_by_name("param_select"), names = {};
      complete.forEach(function (t) { Object.keys(t.params).forEach(function (k) { names[k] = true; }); });
      var options = Object.keys(names).sort();
      if (options.join() !== select.options.join()) select.options = options;
      if (!select.value && options.length) { select.value = options[0]; return; }  // redraws
      var name = select.value, categories = [], d = {x: [], value: [], label: [], color: [], number: []};
      complete.forEach(function (t) {
        if (!(name in t.params)) return;
        var v = t.params[name];
        if (typeof v !== "number") {
          if (categories.indexOf(v) < 0) categories.push(v);
          v = categories.indexOf(v);
        }
        d.x.push(v); d.value.push(t.values[0]); d.label.push(fmt(t.params[name]));
        d.color.push(colors.COMPLETE); d.number.push(t.number);
      });
      var fig = doc.get_model_by_name("params_plot");
      fig.title.text = name ? name + " vs objective" + (categories.length ? " (categories: " + categories.join(", ") + ")" : "") : "Parameter vs objective";
      set("params", d);
    }

    function tableData(list) {
      var d = {number: [], state: [], value: [], params: [], worker: [], duration: []};
      list.forEach(function (t) {
        d.number.push(t.number); d.state.push(t.state);
        d.value.push(t.values ? t.values.map(fmt).join(", ") : "–");
        d.params.push(JSON.stringify(t.params)); d.worker.push(t.worker || "");
        d.duration.push(t.start && t.complete ? ((t.complete - t.start) / 1000).toFixed(2) + " s" : "");
      });
      return d;
    }

    function drawTables(all, complete) {
      set("latest", tableData(all.slice(-20).reverse()));
      var top = complete.slice().sort(function (a, b) {
        return better(a.values[0], b.values[0]) ? -1 : better(b.values[0], a.values[0]) ? 1 : 0;
      });
      set("top", tableData(top.slice(0, 20)));
    }
  }

  return {index: index, study: study};
})();
