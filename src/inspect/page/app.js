// The visualizer page: keeps a copy of the hub's model (a snapshot, then deltas over a WebSocket),
// draws the actor tree by route, the selected actor's machine with its current state, its context,
// and the event log, all filtered by gateway / device / state. Rendering is coalesced into one
// animation frame however many deltas arrive, so a busy runtime does not starve the browser.
import { drawMachine, highlight } from '/graph.js';

const KIND_ORDER = { server: 0, gateway: 1, association: 2, fanout: 3, session: 4, other: 5 };
/** Children drawn per tree node; the rest are summarised (narrow them with the filters). */
const MAX_CHILDREN = 200;
const MAX_LOG_ROWS = 300;
/** Finished children kept per tree node unless "all finished" is ticked (sessions come and go all the time). */
const RECENT_FINISHED = 3;

const model = { version: -1, actors: new Map(), machines: new Map(), events: [], lastSeq: 0 };
const ui = { selected: undefined, collapsed: new Set(), frame: 0, eventsPerSec: 0, recent: [] };
const $ = (id) => document.getElementById(id);
const els = {
  tree: $('tree'), graph: $('graph'), details: $('details'), log: $('log').tBodies[0], status: $('status'), counts: $('counts'),
  gateway: $('f-gateway'), device: $('f-device'), state: $('f-state'), finished: $('f-finished'), selectedOnly: $('f-selected'),
  title: $('sel-title'), states: $('states'),
};

const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
/** A state value as one short string: `attached`, or `running.sending` for nested values. */
function stateText(v) {
  if (v === undefined || v === null) return '';
  if (typeof v === 'string') return v;
  return Object.entries(v).map(([k, s]) => (s && typeof s === 'object' && Object.keys(s).length ? `${k}.${stateText(s)}` : typeof s === 'string' ? `${k}.${s}` : k)).join(', ');
}

function apply(msg) {
  if (msg.type === 'snapshot') {
    model.actors.clear();
    model.events = [];
    model.lastSeq = 0;
  }
  for (const [id, g] of Object.entries(msg.machines ?? {})) model.machines.set(id, g);
  for (const a of msg.actors ?? []) {
    const old = model.actors.get(a.key);
    if (old && stateText(old.value) !== stateText(a.value)) a.flash = true;
    model.actors.set(a.key, a);
  }
  // An association switching between its record and its live actor keeps the selection: the new
  // node of the same device at the same gateway takes over.
  const sel = ui.selected && model.actors.get(ui.selected);
  if (sel && sel.kind === 'association' && (msg.removed ?? []).includes(ui.selected)) {
    const next = (msg.actors ?? []).find((a) => a.key !== sel.key && a.kind === 'association' && a.device === sel.device && a.gateway === sel.gateway && a.status === 'active');
    if (next) {
      model.actors.delete(sel.key);
      ui.selected = next.key;
    }
  }
  for (const k of msg.removed ?? []) if (k !== ui.selected) model.actors.delete(k);
  let added = 0;
  for (const e of msg.events ?? []) {
    if (e.seq <= model.lastSeq) continue;
    model.events.push(e);
    model.lastSeq = e.seq;
    added++;
  }
  if (model.events.length > 2000) model.events.splice(0, model.events.length - 2000);
  const now = Date.now();
  ui.recent.push([now, added]);
  while (ui.recent.length && ui.recent[0][0] < now - 5000) ui.recent.shift();
  model.version = msg.version;
  schedule();
}

function schedule() {
  if (ui.frame) return;
  ui.frame = requestAnimationFrame(() => {
    ui.frame = 0;
    render();
  });
}

/** The actors that pass the filters, plus their ancestors (so the tree keeps its shape). */
function visibleSet() {
  const g = els.gateway.value;
  const dev = els.device.value.trim().toLowerCase();
  const st = els.state.value.trim().toLowerCase();
  const match = (a) =>
    (!g || a.gateway === g || a.route.includes(g)) &&
    (!dev || (a.device ?? '').toLowerCase().includes(dev) || a.name.toLowerCase().includes(dev)) &&
    (!st || stateText(a.value).toLowerCase().includes(st));
  const visible = new Set();
  for (const a of model.actors.values()) {
    if (!match(a)) continue;
    for (let cur = a; cur && !visible.has(cur.key); cur = model.actors.get(cur.parent)) visible.add(cur.key);
  }
  return visible;
}

function render() {
  const visible = visibleSet();
  renderFilters();
  renderTree(visible);
  void renderSelection();
  renderLog(visible);
  const live = [...model.actors.values()].filter((a) => a.status === 'active').length;
  els.counts.textContent = `${visible.size} shown · ${live} live · ${model.actors.size} known`;
  const evs = ui.recent.reduce((s, [, n]) => s + n, 0) / 5;
  if (els.status.classList.contains('live')) els.status.textContent = `live · ${evs.toFixed(0)} events/s`;
}

function renderFilters() {
  const gws = [...new Set([...model.actors.values()].filter((a) => a.kind === 'gateway').map((a) => a.gateway))].sort();
  const have = [...els.gateway.options].slice(1).map((o) => o.value);
  if (gws.join('\n') !== have.join('\n')) {
    const cur = els.gateway.value;
    els.gateway.innerHTML = `<option value="">all</option>${gws.map((g) => `<option>${esc(g)}</option>`).join('')}`;
    els.gateway.value = cur;
  }
  const states = new Set();
  for (const a of model.actors.values()) for (const id of a.active) states.add(id.split('.').pop());
  const list = [...states].sort().join('\n');
  if (els.states.dataset.list !== list) {
    els.states.dataset.list = list;
    els.states.innerHTML = [...states].sort().map((s) => `<option value="${esc(s)}">`).join('');
  }
}

function renderTree(visible) {
  const children = new Map();
  const roots = [];
  for (const a of model.actors.values()) {
    if (!visible.has(a.key)) continue;
    const p = a.parent && model.actors.has(a.parent) ? a.parent : undefined;
    if (p) (children.get(p) ?? children.set(p, []).get(p)).push(a);
    else roots.push(a);
  }
  const order = (x, y) => KIND_ORDER[x.kind] - KIND_ORDER[y.kind] || x.name.localeCompare(y.name, undefined, { numeric: true });
  const html = [];
  const node = (a) => {
    let kids = (children.get(a.key) ?? []).sort(order);
    let hidden = 0;
    if (!els.finished.checked) {
      const done = kids.filter((k) => k.status !== 'active').sort((x, y) => y.version - x.version);
      const keep = new Set(done.slice(0, RECENT_FINISHED).map((k) => k.key));
      hidden = done.length - keep.size;
      kids = kids.filter((k) => k.status === 'active' || keep.has(k.key) || k.key === ui.selected);
    }
    const open = !ui.collapsed.has(a.key);
    // An association kept as its record (no live actor: virtual actors) is drawn in its recorded state, in italics.
    const record = a.context?.record === true;
    const cls = ['row', a.key === ui.selected ? 'selected' : '', a.status !== 'active' ? 'finished' : '', record ? 'record' : ''].join(' ');
    const state = stateText(a.value);
    html.push(
      `<li><div class="${cls}" data-key="${esc(a.key)}" data-kind="${a.kind}" data-state="${esc(state)}" title="${esc(a.machine)} · ${esc(a.actorId)}">` +
        `<span class="twisty">${kids.length ? (open ? '▾' : '▸') : ''}</span><span class="kind kind-${a.kind}">${a.kind}</span>` +
        `<span class="name">${esc(a.name)}</span><span class="state${a.flash ? ' flash' : ''}">${esc(state)}${a.status !== 'active' ? ` · ${a.status}` : ''}${record ? ' · record' : ''}</span></div>`,
    );
    a.flash = false;
    if (kids.length && open) {
      html.push('<ul>');
      kids.slice(0, MAX_CHILDREN).forEach(node);
      if (kids.length > MAX_CHILDREN) html.push(`<li class="more">+${kids.length - MAX_CHILDREN} more (use the filters)</li>`);
      if (hidden) html.push(`<li class="more">+${hidden} older finished (tick “all finished”)</li>`);
      html.push('</ul>');
    }
    html.push('</li>');
  };
  roots.sort(order).forEach(node);
  els.tree.innerHTML = html.join('');
}

async function renderSelection() {
  const a = ui.selected && model.actors.get(ui.selected);
  if (!a) return;
  els.title.textContent = `${a.name} — machine “${a.machine}” — ${stateText(a.value)}${a.status !== 'active' ? ` (${a.status})` : ''}`;
  const g = model.machines.get(a.machine);
  if (g) {
    try {
      await drawMachine(els.graph, g);
      // The selection may have moved on while the first drawing of a machine was being laid out.
      const now = model.actors.get(ui.selected);
      if (now && now.machine === g.id) highlight(els.graph, g, now);
    } catch (err) {
      els.graph.textContent = `cannot draw ${a.machine}: ${err}`;
    }
  }
  const rows = [
    ['key', a.key], ['id', a.actorId], ...(a.systemId ? [['system id', a.systemId]] : []), ['route', a.route.join(' › ')],
    ['status', a.status], ['state', stateText(a.value)], ['events', a.events],
    ...Object.entries(a.context).map(([k, v]) => [`context.${k}`, v]),
  ];
  els.details.innerHTML = `<table>${rows.map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(v)}</td></tr>`).join('')}</table>`;
}

function renderLog(visible) {
  const only = els.selectedOnly.checked && ui.selected;
  const rows = [];
  for (let i = model.events.length - 1; i >= 0 && rows.length < MAX_LOG_ROWS; i--) {
    const e = model.events[i];
    if (only ? e.actor !== ui.selected : !visible.has(e.actor)) continue;
    const a = model.actors.get(e.actor);
    const src = e.source ? model.actors.get(e.source) : undefined;
    const f = e.fields ? Object.entries(e.fields).map(([k, v]) => `${k}=${v}`).join(' ') : '';
    const t = new Date(e.t).toISOString().slice(11, 23);
    rows.push(
      `<tr data-key="${esc(e.actor)}"><td class="t">${t}</td><td>${esc(a ? a.name : e.actor)}</td><td class="ty">${esc(e.type)}</td>` +
        `<td class="f">${src ? `from ${esc(src.name)} ` : ''}${esc(f)}</td></tr>`,
    );
  }
  els.log.innerHTML = rows.join('');
}

function select(key) {
  ui.selected = key;
  schedule();
}

els.tree.addEventListener('click', (ev) => {
  const row = ev.target.closest('.row');
  if (!row) return;
  const key = row.dataset.key;
  if (ev.target.classList.contains('twisty')) {
    if (ui.collapsed.has(key)) ui.collapsed.delete(key);
    else ui.collapsed.add(key);
    schedule();
    return;
  }
  select(key);
});
els.log.addEventListener('click', (ev) => {
  const row = ev.target.closest('tr');
  if (row) select(row.dataset.key);
});
for (const el of [els.gateway, els.device, els.state, els.finished, els.selectedOnly]) el.addEventListener('input', schedule);

function connect() {
  const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`);
  ws.onopen = () => {
    els.status.className = 'status live';
    els.status.textContent = 'live';
  };
  ws.onmessage = (m) => apply(JSON.parse(m.data));
  ws.onclose = () => {
    els.status.className = 'status down';
    els.status.textContent = 'disconnected — retrying';
    setTimeout(connect, 1000);
  };
}
connect();
