// optuna-dashboard's page under /tuning/optuna/<storage>/ on the Dask dashboard.
// Its script expects the root of a server: its router matches /dashboard/... (dasktune serves
// the script with that prefix read from DASKTUNE_OPTUNA_PREFIX), and it asks for /api/...,
// links /csv/... and shows /artifacts/... from the server's root. Those paths are moved under
// the mount point here, before the script runs. The mount point is read from this page's
// own address, so a proxy in front of the dashboard (JupyterHub's) changes nothing.
"use strict";
(function () {
  var match = /^(.*\/tuning\/optuna\/[^\/]+)\//.exec(location.pathname);
  var prefix = match ? match[1] : "";
  var rooted = /^\/(api|csv|artifacts)\//;
  self.DASKTUNE_OPTUNA_PREFIX = prefix;

  function mounted(url) {
    return typeof url === "string" && rooted.test(url) ? prefix + url : url;
  }

  // Relative URLs would break as its router moves between paths of different depths: the
  // icon, and the way back to the Tuning page and Dask, are from the dashboard's root.
  var icon = document.createElement("link");
  icon.rel = "icon";
  icon.href = prefix + "/favicon.ico";
  document.head.appendChild(icon);
  document.addEventListener("DOMContentLoaded", function () {
    var root = prefix.replace(/tuning\/optuna\/[^\/]+$/, "");
    document.querySelectorAll("#dasktune-nav a").forEach(function (a) { a.href = root + a.dataset.path; });
  });

  var fetch = self.fetch;
  self.fetch = function (input, init) {
    return fetch.call(this, mounted(input), init);
  };

  function fix(element) {
    ["href", "src"].forEach(function (name) {
      var value = element.getAttribute && element.getAttribute(name);
      if (value && rooted.test(value)) element.setAttribute(name, prefix + value);
    });
  }

  new MutationObserver(function (records) {
    records.forEach(function (record) {
      if (record.type === "attributes") return fix(record.target);
      record.addedNodes.forEach(function (node) {
        if (node.nodeType !== 1) return;
        fix(node);
        node.querySelectorAll("[href^='/'], [src^='/']").forEach(fix);
      });
    });
  }).observe(document.documentElement, {
    subtree: true, childList: true, attributes: true, attributeFilter: ["href", "src"],
  });
})();
