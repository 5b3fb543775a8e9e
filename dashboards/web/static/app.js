// firstparty dashboard: the few things HTML cannot do alone. Everything works without it.
(function () {
  "use strict";

  // The date-range form applies itself; custom dates show only for "Custom range".
  document.querySelectorAll("form[data-autosubmit]").forEach(function (form) {
    var period = form.querySelector("select[name=period]");
    var custom = form.querySelector("[data-custom-range]");
    var apply = form.querySelector("[data-apply]");
    function sync() {
      var isCustom = period.value === "custom";
      custom.hidden = !isCustom;
      apply.hidden = !isCustom;
      // Dates only travel with a custom range, so preset URLs stay short and shareable.
      custom.querySelectorAll("input").forEach(function (input) { input.disabled = !isCustom; });
    }
    sync();
    period.addEventListener("change", function () {
      sync();
      if (period.value !== "custom") form.requestSubmit();
    });
    form.querySelectorAll("input[type=checkbox]").forEach(function (box) {
      box.addEventListener("change", function () { form.requestSubmit(); });
    });
  });

  // The visitors chart (uPlot, vendored).
  var holder = document.getElementById("chart");
  var dataTag = document.getElementById("chart-data");
  if (holder && dataTag && window.uPlot) {
    var chart = JSON.parse(dataTag.textContent);
    var metric = chart.metric;
    var css = getComputedStyle(document.documentElement);
    var accent = css.getPropertyValue("--accent").trim() || "#4f46e5";
    var muted = css.getPropertyValue("--muted").trim() || "#5b6270";
    var line = css.getPropertyValue("--line").trim() || "#e3e6eb";
    var names = { visitors: "Visitors", visits: "Visits", pageviews: "Pageviews" };
    var data = [chart.labels, chart.series[metric]];
    var series = [
      {},
      { label: names[metric], stroke: accent, width: 2, fill: accent + "22", points: { size: 5 } },
    ];
    if (chart.previous) {
      data.push(chart.previous[metric]);
      series.push({ label: "Previous period", stroke: muted, width: 1.5, dash: [6, 4], points: { show: false } });
    }
    var hourly = chart.interval === "hour";
    var fmtDate = uPlot.fmtDate(hourly ? "{MMM} {D} {HH}:00" : chart.interval === "month" ? "{MMM} {YYYY}" : "{MMM} {D}");
    var axisStyle = { stroke: muted, grid: { stroke: line, width: 1 }, ticks: { stroke: line, width: 1 } };
    // Ticks on bucket starts only (no "8am" under a daily chart), at most about ten of them.
    var every = Math.max(1, Math.ceil(chart.labels.length / Math.max(2, Math.min(10, Math.floor(holder.clientWidth / 80)))));
    var tickFmt = uPlot.fmtDate(hourly ? "{MMM} {D}\n{HH}:00" : chart.interval === "month" ? "{MMM} {YYYY}" : "{MMM} {D}");
    var xAxis = Object.assign({
      splits: function () { return chart.labels.filter(function (_, i) { return i % every === 0; }); },
      values: function (u, splits) { return splits.map(function (v) { return tickFmt(uPlot.tzDate(new Date(v * 1e3), "Etc/UTC")); }); },
      size: hourly ? 56 : 40,
    }, axisStyle);
    // The legend sits under the plot, inside the holder: leave it room.
    function size() { return { width: holder.clientWidth, height: holder.clientWidth < 600 ? 200 : 280 }; }
    var opts = Object.assign(size(), {
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); },
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(4, Math.ceil(max * 1.1))]; } } },
      series: [{ value: function (u, v) { return v == null ? "–" : fmtDate(uPlot.tzDate(new Date(v * 1e3), "Etc/UTC")); } }].concat(series.slice(1)),
      axes: [xAxis, Object.assign({ size: 50, incrs: [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1e3, 2e3, 2500, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6] }, axisStyle)],
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
    });
    var plot = new uPlot(opts, data, holder);
    if (window.ResizeObserver) {
      new ResizeObserver(function () { plot.setSize(size()); }).observe(holder);
    }
  }

  // Realtime visitors, refreshed every 30 seconds while the tab is visible.
  var realtime = document.querySelector("[data-realtime-url]");
  if (realtime && window.fetch) {
    var count = realtime.querySelector(".realtime-count");
    setInterval(function () {
      if (document.hidden) return;
      fetch(realtime.getAttribute("data-realtime-url"), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (body) { if (body) count.textContent = String(body.visitors); })
        .catch(function () {});
    }, 30000);
  }

  // Country codes read as names ("Belgium (BE)") where the browser knows them.
  if (window.Intl && Intl.DisplayNames) {
    var regions = new Intl.DisplayNames([navigator.language || "en"], { type: "region" });
    document.querySelectorAll("[data-country]").forEach(function (el) {
      var code = el.getAttribute("data-country");
      try {
        var name = /^[A-Z]{2}$/.test(code) ? regions.of(code) : null;
        if (name && name !== code) el.textContent = name + " (" + code + ")";
      } catch (e) { /* an unknown code stays as it is */ }
    });
  }

  // Copy-once links: select the text on focus so it is easy to copy.
  document.querySelectorAll("input.copy").forEach(function (input) {
    input.addEventListener("focus", function () { input.select(); });
  });
})();
