// The experiment plots, shared by the live dashboard and `hpo report` (which inlines this file).
// Input: the `plots` object of GET /api/v1/dashboard/experiments/{name} and its experiment.
"use strict";

const HPOPlots = (() => {
  const layoutBase = { margin: { l: 50, r: 20, t: 10, b: 40 }, showlegend: true, legend: { orientation: "h" } };
  const config = { responsive: true, displaylogo: false };
  const colors = { FINISHED: "#2f6fed", EARLY_STOPPED: "#f79009", FAILED: "#d92d20", RUNNING: "#12b76a" };

  function empty(el, text) {
    Plotly.purge(el);
    el.textContent = text;
    el.classList.add("no-data");
  }

  function ready(el) {
    if (el.classList.contains("no-data")) {
      el.textContent = "";
      el.classList.remove("no-data");
    }
  }

  function history(el, h, exp) {
    if (!h.number.length) return empty(el, "no results yet");
    ready(el);
    const traces = [
      {
        x: h.number, y: h.value, mode: "markers", type: "scattergl", name: exp.metric,
        marker: { size: 6, color: h.state.map((s) => colors[s] || "#98a2b3") },
        hovertemplate: "trial %{x}<br>%{y}<extra></extra>",
      },
      { x: h.number, y: h.best, mode: "lines", type: "scatter", name: "best so far", line: { shape: "hv", color: "#101828" } },
    ];
    const layout = { ...layoutBase, xaxis: { title: "trial" }, yaxis: { title: exp.metric } };
    Plotly.react(el, traces, layout, config);
  }

  function curves(el, cs, exp) {
    if (!cs.length) return empty(el, "no intermediate results yet");
    ready(el);
    const traces = cs.map((c) => {
      const stopped = c.state === "EARLY_STOPPED";
      return {
        x: c.step, y: c.value, type: "scatter", mode: "lines+markers", name: `#${c.number}${stopped ? " (stopped)" : ""}`,
        line: { dash: stopped ? "dot" : "solid", width: 1.5 },
        marker: { size: c.value.map((_, i) => (stopped && i === c.value.length - 1 ? 10 : 4)),
                  symbol: c.value.map((_, i) => (stopped && i === c.value.length - 1 ? "x" : "circle")) },
      };
    });
    const layout = { ...layoutBase, showlegend: cs.length <= 12, xaxis: { title: "step" }, yaxis: { title: exp.metric } };
    Plotly.react(el, traces, layout, config);
  }

  function parallel(el, p, exp) {
    if (!p.objective.length || !p.dimensions.length) return empty(el, "no finished trials yet");
    ready(el);
    const dims = p.dimensions.map((d) =>
      d.kind === "categorical"
        ? { label: d.name, values: d.values, tickvals: d.labels.map((_, i) => i), ticktext: d.labels }
        : { label: d.name, values: d.values }
    );
    dims.push({ label: exp.metric, values: p.objective });
    const trace = {
      type: "parcoords", dimensions: dims,
      line: { color: p.objective, colorscale: "Viridis", reversescale: exp.direction === "maximize", showscale: true },
    };
    Plotly.react(el, [trace], { margin: { l: 60, r: 60, t: 40, b: 20 } }, config);
  }

  function importance(el, imp) {
    if (!imp.length) return empty(el, "needs a few finished trials");
    ready(el);
    const sorted = [...imp].reverse();
    const trace = { type: "bar", orientation: "h", x: sorted.map((d) => d.importance), y: sorted.map((d) => d.name) };
    Plotly.react(el, [trace], { ...layoutBase, showlegend: false, margin: { l: 120, r: 20, t: 10, b: 40 }, xaxis: { title: "share of variance explained", range: [0, 1] } }, config);
  }

  function render(ids, plots, exp) {
    history(document.getElementById(ids.history), plots.history, exp);
    curves(document.getElementById(ids.curves), plots.curves, exp);
    parallel(document.getElementById(ids.parallel), plots.parallel, exp);
    importance(document.getElementById(ids.importance), plots.importance);
  }

  return { render };
})();
