// gridq dashboard: live refresh and charts. No build step, no framework.
// Every 2 s, while the tab is visible, the page is fetched again and each
// [data-live] region is swapped in (unless it holds the keyboard focus).
"use strict";
(function () {
  const EVERY = 2000;
  const CHART_EVERY = 5000; // the hub samples every 5 s
  const charts = [];
  let timer = null;
  let lastChart = 0;

  function swapLive(html) {
    const doc = new DOMParser().parseFromString(html, "text/html");
    document.querySelectorAll("[data-live]").forEach(function (el) {
      if (el.contains(document.activeElement) && document.activeElement !== document.body) return;
      const fresh = doc.querySelector('[data-live="' + el.getAttribute("data-live") + '"]');
      if (fresh && fresh.innerHTML !== el.innerHTML) el.innerHTML = fresh.innerHTML;
    });
  }

  async function refreshPage() {
    if (!document.querySelector("[data-live]")) return;
    const r = await fetch(location.href, { credentials: "same-origin", headers: { "X-Live": "1" } });
    if (r.redirected && new URL(r.url).pathname === "/ui/login") { location.reload(); return; }
    if (r.ok) swapLive(await r.text());
  }

  const COLOURS = { processed: "#2f81f7", failed: "#e5534b", depth: "#8250df", dead: "#d29922" };
  const LABELS = { processed: "processed/s", failed: "failed/s", depth: "waiting", dead: "dead" };

  function makeChart(el) {
    const fields = el.getAttribute("data-fields").split(",");
    const c = { el: el, url: el.getAttribute("data-series"), fields: fields, plot: null };
    charts.push(c);
    return c;
  }

  function chartOpts(c, width) {
    return {
      width: width, height: 200,
      // The whole window, however few samples there are yet: a fixed time axis.
      scales: { x: { time: true, range: function () { return c.win; } }, y: { range: function (u, min, max) { return [0, Math.max(1, max * 1.1)]; } } },
      axes: [{ stroke: getComputedStyle(document.body).color }, { stroke: getComputedStyle(document.body).color, size: 50 }],
      series: [{}].concat(c.fields.map(function (f) {
        return { label: LABELS[f] || f, stroke: COLOURS[f] || "#888", width: 2, points: { show: false } };
      })),
    };
  }

  // A data call answered 401: the session ended (expired, logged out elsewhere).
  // Reloading sends the browser to the login, and back here after it.
  function ended(r) {
    if (r.status === 401) { location.reload(); return true; }
    return !r.ok;
  }

  async function refreshChart(c) {
    const r = await fetch(c.url, { credentials: "same-origin" });
    if (ended(r)) return;
    const d = await r.json();
    c.win = d.window;
    const rows = [d.t].concat(c.fields.map(function (f) { return d[f]; }));
    const width = Math.max(240, c.el.clientWidth);
    if (!c.plot) {
      c.el.textContent = "";
      c.plot = new uPlot(chartOpts(c, width), rows, c.el);
    } else {
      c.plot.setData(rows);
    }
    if (!d.t.length && !c.el.querySelector(".empty")) {
      const p = document.createElement("p");
      p.className = "empty";
      p.textContent = "No samples yet: the hub samples every 5 s.";
      c.el.appendChild(p);
    } else if (d.t.length) {
      const e = c.el.querySelector(".empty");
      if (e) e.remove();
    }
  }

  async function doctorSummary() {
    const el = document.querySelector("[data-doctor-summary]");
    if (!el) return;
    const r = await fetch("/ui/api/doctor-summary", { credentials: "same-origin" });
    if (ended(r)) return;
    const d = await r.json();
    el.textContent = d.summary;
    el.className = d.pending ? "muted" : !d.ok ? "bad" : / warn/.test(d.summary) ? "warnt" : "good";
    if (d.pending) setTimeout(function () { doctorSummary().catch(function () {}); }, 3000);
  }

  async function tick() {
    timer = null;
    if (document.hidden) return; // resumed by visibilitychange
    try {
      await refreshPage();
      if (Date.now() - lastChart >= CHART_EVERY) {
        lastChart = Date.now();
        await Promise.all(charts.map(refreshChart));
      }
    } catch (e) {
      // The hub restarting or the network dropping: try again at the next tick.
    }
    schedule();
  }

  function schedule() {
    if (timer === null && !document.hidden) timer = setTimeout(tick, EVERY);
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) { lastChart = 0; if (timer !== null) clearTimeout(timer); timer = null; tick(); }
  });
  window.addEventListener("resize", function () {
    charts.forEach(function (c) { if (c.plot) c.plot.setSize({ width: Math.max(240, c.el.clientWidth), height: 200 }); });
  });
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".plot[data-series]").forEach(makeChart);
    lastChart = Date.now();
    Promise.all(charts.map(refreshChart)).catch(function () {});
    doctorSummary().catch(function () {});
    setInterval(function () { if (!document.hidden) doctorSummary().catch(function () {}); }, 30000);
    schedule();
  });
})();
