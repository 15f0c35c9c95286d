// flatmon's live page: a fleet view (#/) and a run view (#/run/ID), both built on the query API
// (GET /runs, /runs/ID/latest, /runs/ID/history?steps=N) and /signals, polled every few seconds.
// The JSON is read tolerantly: snake_case or camelCase names, int64 as number or string, extra fields.
'use strict';

const POLL_MS = Number(new URLSearchParams(location.search).get('poll')) || 3000;
const SPARK_STEPS = 40;
const HISTORY_STEPS = 1000;
const COLORS = { TRAIN: '#1f5fbf', EVAL: '#e8590c', gap: '#7b2cbf' };
const BANDS = { TRAIN: 'rgba(31,95,191,0.16)', EVAL: 'rgba(232,89,12,0.16)' };
const SIGNAL_COLORS = { STOP: '#c62828', WARN: '#e0a100' };

// ---------- JSON access ----------
function camel(name) { return name.replace(/_([a-z])/g, (m, c) => c.toUpperCase()); }
function pick(o, name) {
  if (o == null) return undefined;
  if (o[name] !== undefined) return o[name];
  return o[camel(name)];
}
function num(v) {
  if (v === undefined || v === null || v === '') return NaN;
  return typeof v === 'number' ? v : Number(v); // "NaN", "Infinity" and int64 strings too
}
/** An Estimate {mean, standard_error}, or null when the result does not carry it. */
function est(r, name) {
  const e = pick(r, name);
  if (e == null) return null;
  if (typeof e !== 'object') return { mean: num(e), se: 0 };
  const mean = pick(e, 'mean'), se = pick(e, 'standard_error');
  return { mean: mean === undefined ? 0 : num(mean), se: se === undefined ? 0 : num(se) };
}
function split(r) {
  const s = pick(r, 'split');
  if (s === 1 || s === 'TRAIN') return 'TRAIN';
  if (s === 2 || s === 'EVAL') return 'EVAL';
  return String(s);
}
function step(r) { const s = pick(r, 'step'); return s === undefined ? 0 : num(s); }
function runId(run) { return typeof run === 'string' ? run : String(pick(run, 'run_id') ?? pick(run, 'id')); }
function runEnded(run) {
  if (typeof run !== 'object') return false;
  const state = pick(run, 'state');
  if (typeof state === 'string') return state.toUpperCase() !== 'LIVE' && state.toUpperCase() !== 'RUNNING';
  return pick(run, 'ended') === true;
}
function action(sig) { return sig ? String(pick(sig, 'action')) : ''; }

function fmt(x) {
  if (x === null || x === undefined || Number.isNaN(x)) return '–';
  if (!Number.isFinite(x)) return String(x);
  if (x === 0) return '0';
  const a = Math.abs(x);
  return a >= 1e5 || a < 1e-3 ? x.toExponential(3) : String(Number(x.toPrecision(4)));
}
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === 'class') e.className = v; else if (k === 'text') e.textContent = v; else e.setAttribute(k, v);
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

async function getJson(path) {
  const r = await fetch(path, { cache: 'no-store' });
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status} ${(await r.text()).slice(0, 200)}`);
  return r.json();
}
const enc = encodeURIComponent;
// The query API wraps its lists: {"runs": [...]} and {"run_id": ..., "results": [...]}.
const listOf = (json, key) => (Array.isArray(json) ? json : (json && json[key]) || []);
const runsList = () => getJson('runs').then((j) => listOf(j, 'runs'));
const latestOf = (id) => getJson(`runs/${enc(id)}/latest`).then((j) => listOf(j, 'results'));
const historyOf = (id, n) => getJson(`runs/${enc(id)}/history?steps=${n}`).then((j) => listOf(j, 'results'));
const signalsOf = (id) => getJson(`signals/${enc(id)}`).catch(() => []);

function setStatus(text, error) {
  const s = document.getElementById('status');
  s.textContent = text;
  s.className = error ? 'status error' : 'status';
}

// ---------- fleet view ----------
const COLUMNS = [
  { key: 'run', label: 'run', text: true },
  { key: 'state', label: 'state', text: true },
  { key: 'layer', label: 'layer', text: true },
  { key: 'step', label: 'step' },
  { key: 'kappa', label: 'κ' },
  { key: 'kappaNorm', label: 'κ_norm' },
  { key: 'traceH', label: 'Tr H' },
  { key: 'lossTrain', label: 'train loss' },
  { key: 'lossEval', label: 'eval loss' },
  { key: 'accTrain', label: 'train acc' },
  { key: 'accEval', label: 'eval acc' },
  { key: 'signal', label: 'last signal', text: true },
  { key: 'spark', label: 'κ trend', text: true, nosort: true },
];
const fleetSort = { key: 'run', asc: true };

/** The fleet row of a run: primary layer (the run's first), its TRAIN values for curvature, both splits for loss/acc. */
function fleetRow(run, latest, history, lastSignal) {
  const id = runId(run);
  const layers = (typeof run === 'object' && pick(run, 'layers')) || [];
  const layer = layers[0] ?? (latest[0] ? pick(latest[0], 'layer') : '');
  const of = (s) => latest.find((r) => pick(r, 'layer') === layer && split(r) === s);
  const train = of('TRAIN'), evl = of('EVAL');
  const mean = (r, n) => { const e = r ? est(r, n) : null; return e ? e.mean : NaN; };
  const spark = history.filter((r) => pick(r, 'layer') === layer && split(r) === 'TRAIN')
    .map((r) => [step(r), mean(r, 'relative_flatness')]).sort((a, b) => a[0] - b[0]);
  return {
    id, run: pick(run, 'display_name') || id, state: runEnded(run) ? 'ended' : 'live', layer,
    step: Math.max(-Infinity, ...[train, evl].filter(Boolean).map(step)),
    kappa: mean(train, 'relative_flatness'), kappaNorm: mean(train, 'relative_flatness_normalized'),
    traceH: mean(train, 'hessian_trace'), lossTrain: mean(train, 'loss'), lossEval: mean(evl, 'loss'),
    accTrain: mean(train, 'accuracy'), accEval: mean(evl, 'accuracy'),
    signal: lastSignal ? `${action(lastSignal)} ${pick(lastSignal, 'reason') ?? ''}`.trim() : '',
    action: action(lastSignal), sparkData: spark,
  };
}

function sparkline(points) {
  const w = 110, h = 24;
  const svgNs = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(svgNs, 'svg');
  svg.setAttribute('class', 'spark');
  svg.setAttribute('width', w);
  svg.setAttribute('height', h);
  const pts = points.filter((p) => Number.isFinite(p[1]));
  if (pts.length > 1) {
    const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
    const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
    const line = document.createElementNS(svgNs, 'polyline');
    line.setAttribute('points', pts.map((p) =>
      `${(2 + (w - 4) * (p[0] - x0) / ((x1 - x0) || 1)).toFixed(1)},${(h - 2 - (h - 4) * (p[1] - y0) / ((y1 - y0) || 1)).toFixed(1)}`).join(' '));
    svg.append(line);
  }
  return svg;
}

function renderFleet(rows) {
  const view = document.getElementById('view');
  if (!rows.length) {
    view.replaceChildren(el('div', { class: 'empty', text: 'No runs yet: start a trainer that publishes to flatmon.' }));
    return;
  }
  const k = fleetSort.key;
  rows.sort((a, b) => {
    const x = a[k], y = b[k];
    const c = typeof x === 'number' && typeof y === 'number'
      ? (Number.isNaN(x) ? 1 : Number.isNaN(y) ? -1 : x - y) : String(x).localeCompare(String(y));
    return fleetSort.asc ? c : -c;
  });
  const head = el('tr', {}, ...COLUMNS.map((c) => {
    const th = el('th', { class: (c.text ? 'text ' : '') + (c.key === k ? 'sorted' + (fleetSort.asc ? ' asc' : '') : ''),
      'data-key': c.key, text: c.label });
    if (!c.nosort) {
      th.addEventListener('click', () => {
        fleetSort.asc = fleetSort.key === c.key ? !fleetSort.asc : true;
        fleetSort.key = c.key;
        renderFleet(rows);
      });
    }
    return th;
  }));
  const body = rows.map((r) => el('tr', { class: `${r.action} ${r.state}`.trim(), 'data-run': r.id },
    ...COLUMNS.map((c) => {
      if (c.key === 'run') return el('td', { class: 'text' }, el('a', { href: `#/run/${enc(r.id)}`, text: r.run }));
      if (c.key === 'signal') {
        return el('td', { class: 'text', 'data-key': 'signal' },
          r.signal ? el('span', { class: `badge ${r.action}`, text: r.signal }) : '–');
      }
      if (c.key === 'spark') return el('td', { class: 'text' }, sparkline(r.sparkData));
      if (c.text) return el('td', { class: 'text', 'data-key': c.key, text: r[c.key] });
      return el('td', { 'data-key': c.key, 'data-value': String(r[c.key]), text: c.key === 'step' ? fmtStep(r.step) : fmt(r[c.key]) });
    })));
  view.replaceChildren(el('h2', { text: 'Runs' }), el('table', { class: 'fleet' }, el('thead', {}, head), el('tbody', {}, ...body)));
}
function fmtStep(s) { return Number.isFinite(s) ? String(s) : '–'; }

async function refreshFleet() {
  const [runs, signals] = await Promise.all([runsList(), getJson('signals').catch(() => [])]);
  const lastSignal = new Map(signals.map((s) => [String(pick(s, 'run_id')), s]));
  const rows = await Promise.all(runs.map(async (run) => {
    const id = runId(run);
    const [latest, history] = await Promise.all([latestOf(id).catch(() => []), historyOf(id, SPARK_STEPS).catch(() => [])]);
    return fleetRow(run, latest, history, lastSignal.get(id));
  }));
  if (route().view !== 'fleet') return;
  renderFleet(rows);
  document.getElementById('crumbs').textContent = `${rows.length} run${rows.length === 1 ? '' : 's'}`;
  return rows.length;
}

// ---------- run view ----------
const CHARTS = [
  { key: 'kappa', title: 'relative flatness κ (± 1 SE)', field: 'relative_flatness', band: true },
  { key: 'kappaNorm', title: 'κ_norm (± 1 SE)', field: 'relative_flatness_normalized', band: true },
  { key: 'traceH', title: 'Tr H (± 1 SE)', field: 'hessian_trace', band: true },
  { key: 'loss', title: 'loss: train, eval and gap (eval − train)', field: 'loss', gap: true },
  { key: 'accuracy', title: 'accuracy', field: 'accuracy' },
  { key: 'lambdaMax', title: 'λ_max (largest Hessian eigenvalue)', field: 'hessian_max_eigenvalue', scalar: true, optional: true },
];
const charts = new Map(); // "layer|chart" -> {plot, shape, signals}
let runViewId = null;

/** uPlot data for one chart of one layer: x = steps, then per split mean (and mean ± SE). */
function chartData(spec, results) {
  const steps = [...new Set(results.map(step))].sort((a, b) => a - b);
  const index = new Map(steps.map((s, i) => [s, i]));
  const series = [], data = [steps];
  const col = () => steps.map(() => null);
  const bySplit = {};
  for (const sp of ['TRAIN', 'EVAL']) {
    const rows = results.filter((r) => split(r) === sp);
    if (!rows.length) continue;
    const mean = col(), hi = col(), lo = col();
    let any = false;
    for (const r of rows) {
      const i = index.get(step(r));
      if (spec.scalar) {
        const v = pick(r, spec.field);
        if (v !== undefined) { mean[i] = num(v); any = true; }
      } else {
        const e = est(r, spec.field);
        if (e) { mean[i] = e.mean; hi[i] = e.mean + e.se; lo[i] = e.mean - e.se; any = true; }
      }
    }
    if (!any) continue;
    bySplit[sp] = mean;
    series.push({ label: sp.toLowerCase(), stroke: COLORS[sp], width: 2, points: { show: true, size: 4 } });
    data.push(mean);
    if (spec.band) {
      series.push({ label: `${sp.toLowerCase()} +SE`, stroke: 'transparent', points: { show: false }, band: true });
      data.push(hi);
      series.push({ label: `${sp.toLowerCase()} −SE`, stroke: 'transparent', points: { show: false }, band: true });
      data.push(lo);
    }
  }
  if (spec.gap && bySplit.TRAIN && bySplit.EVAL) {
    series.push({ label: 'gap', stroke: COLORS.gap, width: 1.5, dash: [5, 4], points: { show: false } });
    data.push(steps.map((s, i) => bySplit.TRAIN[i] == null || bySplit.EVAL[i] == null ? null : bySplit.EVAL[i] - bySplit.TRAIN[i]));
  }
  return { series, data };
}

/** A uPlot hook drawing each WARN/STOP signal as a vertical marker with its reason. */
function signalMarkers(holder) {
  return (u) => {
    const ctx = u.ctx, top = u.bbox.top, height = u.bbox.height;
    ctx.save();
    for (const s of holder.signals) {
      const a = action(s);
      if (a !== 'STOP' && a !== 'WARN') continue;
      const x = Math.round(u.valToPos(step(s), 'x', true));
      if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
      ctx.strokeStyle = SIGNAL_COLORS[a];
      ctx.lineWidth = (a === 'STOP' ? 3 : 1) * devicePixelRatio;
      ctx.setLineDash(a === 'STOP' ? [] : [4 * devicePixelRatio, 3 * devicePixelRatio]);
      ctx.beginPath();
      ctx.moveTo(x, top);
      ctx.lineTo(x, top + height);
      ctx.stroke();
      if (a === 'STOP') {
        ctx.fillStyle = SIGNAL_COLORS.STOP;
        ctx.font = `${11 * devicePixelRatio}px system-ui, sans-serif`;
        const label = `STOP ${pick(s, 'reason') ?? ''}`;
        const fits = x + 5 * devicePixelRatio + ctx.measureText(label).width <= u.bbox.left + u.bbox.width;
        ctx.textAlign = fits ? 'left' : 'right';
        ctx.fillText(label, x + (fits ? 5 : -5) * devicePixelRatio, top + 12 * devicePixelRatio);
      }
    }
    ctx.restore();
  };
}

function drawChart(container, layer, spec, results, signals) {
  const key = `${layer}|${spec.key}`;
  const { series, data } = chartData(spec, results);
  const shape = series.map((s) => s.label).join(',');
  let entry = charts.get(key);
  if (entry && entry.shape === shape && entry.plot.root.isConnected) {
    entry.holder.signals = signals;
    entry.plot.setData(data);
    return;
  }
  if (entry) entry.plot.destroy();
  container.replaceChildren(el('div', { class: 'title', text: spec.title }));
  const holder = { signals };
  const bands = [];
  series.forEach((s, i) => { if (s.band && s.label.endsWith('+SE')) bands.push({ series: [i + 1, i + 2], fill: BANDS[s.label.startsWith('train') ? 'TRAIN' : 'EVAL'] }); });
  const plot = new uPlot({
    width: Math.max(300, container.clientWidth - 12), height: 220,
    scales: { x: { time: false } },
    axes: [{ label: 'step', size: 36 }, { size: 62 }],
    series: [{ label: 'step' }, ...series.map(({ band, ...s }) => s)],
    bands,
    hooks: { draw: [signalMarkers(holder)] },
  }, data, container);
  container.querySelectorAll('.u-legend .u-series').forEach((row, i) => {
    if (i > 0 && series[i - 1].band) row.style.display = 'none';
  });
  charts.set(key, { plot, shape, holder });
}

function renderRun(id, run, latest, history, signals) {
  const view = document.getElementById('view');
  let root = view.querySelector(`section.run`);
  if (!root || root.dataset.run !== id) {
    charts.forEach((c) => c.plot.destroy());
    charts.clear();
    root = el('section', { class: 'run', 'data-run': id });
    view.replaceChildren(root);
  }
  const layers = [...new Set([...((run && pick(run, 'layers')) || []), ...history.map((r) => pick(r, 'layer')),
    ...latest.map((r) => pick(r, 'layer'))])];
  const last = signals[signals.length - 1];
  const summary = el('div', { class: 'summary' },
    el('div', {}, el('span', { text: 'run' }), el('strong', { class: 'run-id', text: id })),
    el('div', {}, el('span', { text: 'state' }), run ? (runEnded(run) ? 'ended' : 'live') : 'unknown'),
    el('div', {}, el('span', { text: 'latest step' }), fmtStep(Math.max(-Infinity, ...latest.map(step)))),
    el('div', {}, el('span', { text: 'last signal' }),
      last ? el('span', { class: `badge ${action(last)}`, text: `${action(last)} ${pick(last, 'reason') ?? ''}` }) : '–'),
    ...latestValues(latest, layers[0]));
  const marks = signals.filter((s) => ['WARN', 'STOP'].includes(action(s)));
  const list = el('ul', { class: 'signals' }, ...marks.map((s) => el('li', {
    class: action(s), 'data-step': String(step(s)), 'data-action': action(s), 'data-reason': String(pick(s, 'reason') ?? ''),
    text: `${action(s)} ${pick(s, 'reason') ?? ''} at step ${step(s)}${pick(s, 'detail') ? ' — ' + pick(s, 'detail') : ''}`,
  })));
  let head = root.querySelector('.run-head');
  const newHead = el('div', { class: 'run-head' }, summary, marks.length ? el('h3', { text: 'signals' }) : null, list);
  if (head) head.replaceWith(newHead); else root.prepend(newHead);
  for (const layer of layers) {
    let sec = [...root.querySelectorAll('section.layer')].find((s) => s.dataset.layer === layer);
    if (!sec) {
      sec = el('section', { class: 'layer', 'data-layer': layer }, el('h3', { text: `layer ${layer}` }), el('div', { class: 'charts' }));
      root.append(sec);
    }
    const results = history.filter((r) => pick(r, 'layer') === layer);
    const grid = sec.querySelector('.charts');
    for (const spec of CHARTS) {
      let box = grid.querySelector(`[data-chart="${spec.key}"]`);
      const has = results.some((r) => { const v = pick(r, spec.field); return v !== undefined && (spec.scalar || Number.isFinite(est(r, spec.field).mean)); });
      if (!has && spec.optional) { if (box) box.remove(); continue; }
      if (!box) { box = el('div', { class: 'chart', 'data-chart': spec.key, 'data-layer': layer }); grid.append(box); }
      if (has) {
        drawChart(box, layer, spec, results, signals);
      } else {
        const old = charts.get(`${layer}|${spec.key}`);
        if (old) { old.plot.destroy(); charts.delete(`${layer}|${spec.key}`); }
        box.replaceChildren(el('div', { class: 'title', text: spec.title }),
          el('div', { class: 'empty', text: ['loss', 'accuracy'].includes(spec.field)
          ? 'not measured: the trainer sends no labels for this layer' : 'not measured' }));
      }
    }
  }
  document.getElementById('crumbs').replaceChildren(el('a', { href: '#/', text: 'all runs' }), ` / ${id}`);
}

function latestValues(latest, layer) {
  const out = [];
  for (const sp of ['TRAIN', 'EVAL']) {
    const r = latest.find((x) => pick(x, 'layer') === layer && split(x) === sp);
    if (!r) continue;
    for (const [name, label] of [['relative_flatness', 'κ'], ['hessian_trace', 'Tr H'], ['loss', 'loss'], ['accuracy', 'acc']]) {
      const e = est(r, name);
      if (e) out.push(el('div', { 'data-key': `${sp}.${name}`, 'data-value': String(e.mean) },
        el('span', { text: `${sp.toLowerCase()} ${label}` }), `${fmt(e.mean)} ± ${fmt(e.se)}`));
    }
    const lam = pick(r, 'hessian_max_eigenvalue');
    if (lam !== undefined) out.push(el('div', {}, el('span', { text: `${sp.toLowerCase()} λ_max` }), fmt(num(lam))));
  }
  return out;
}

async function refreshRun(id) {
  const [runs, latest, history, signals] = await Promise.all([runsList().catch(() => []), latestOf(id),
    historyOf(id, HISTORY_STEPS), signalsOf(id)]);
  if (route().view !== 'run' || route().id !== id) return;
  renderRun(id, runs.find((r) => runId(r) === id), latest, history, signals);
}

// ---------- routing and polling ----------
function route() {
  const m = location.hash.match(/^#\/run\/(.+)$/);
  return m ? { view: 'run', id: decodeURIComponent(m[1]) } : { view: 'fleet' };
}

let timer = null;
async function tick() {
  clearTimeout(timer);
  const r = route();
  try {
    if (r.view === 'run') {
      if (runViewId !== r.id) { runViewId = r.id; }
      await refreshRun(r.id);
    } else {
      runViewId = null;
      await refreshFleet();
    }
    setStatus(`updated ${new Date().toLocaleTimeString()} · every ${POLL_MS / 1000} s`);
    document.body.dataset.updated = String((Number(document.body.dataset.updated) || 0) + 1);
  } catch (e) {
    setStatus(`update failed: ${e.message}`, true);
  }
  timer = setTimeout(tick, POLL_MS);
}
window.addEventListener('hashchange', () => {
  charts.forEach((c) => c.plot.destroy());
  charts.clear();
  document.getElementById('view').replaceChildren();
  tick();
});
tick();
