// Draws a machine graph (the hub's MachineGraph) as SVG with Viz.js (Graphviz in WebAssembly,
// served from our own server). Each machine is laid out once; live updates only toggle CSS
// classes on the drawn states and transitions, so a busy actor costs no re-layout.
import { instance } from '/vendor/viz.js';

let vizPromise;
/** @type {Map<string, { svg: string, stateIds: Map<string, string>, edges: Map<number, string[]>, notes: Map<number, string> }>} */
const drawn = new Map();

const q = (s) => `"${String(s).replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;

/** Builds the DOT text of a machine graph and the maps from state ids / transition indices to SVG ids. */
export function toDot(graph) {
  const stateIds = new Map();
  const edges = new Map();
  const notes = new Map();
  const byId = new Map();
  const lines = [
    'digraph machine {',
    'rankdir=LR; compound=true; nodesep=0.35; ranksep=0.55; fontname="Helvetica"; fontsize=11;',
    'node [shape=box style="rounded,filled" fillcolor="#ffffff" color="#607d8b" fontname="Helvetica" fontsize=11 margin="0.12,0.05"];',
    'edge [fontname="Helvetica" fontsize=9 color="#78909c" fontcolor="#455a64" arrowsize=0.7];',
  ];
  let n = 0;
  const walk = (node, depth) => {
    byId.set(node.id, node);
    const sid = `st-${n++}`;
    stateIds.set(node.id, sid);
    if (depth > 0 && node.states.length === 0) {
      const extra = node.type === 'final' ? ' peripheries=2' : '';
      lines.push(`${q(node.id)} [id=${q(sid)} label=${q(node.key)}${extra}];`);
      return;
    }
    if (depth > 0) lines.push(`subgraph ${q(`cluster_${node.id}`)} { id=${q(sid)} label=${q(node.key)} style="rounded" color="#90a4ae";`);
    if (node.initial && node.initial.length) {
      const init = `__init_${node.id}`;
      lines.push(`${q(init)} [shape=point width=0.09 style=filled fillcolor="#37474f" label=""];`);
      node.initial.forEach((t) => pendingInit.push([init, t]));
    }
    node.states.forEach((c) => walk(c, depth + 1));
    if (depth > 0) lines.push('}');
  };
  const pendingInit = [];
  walk(graph.root, 0);
  // An edge to or from a compound state is drawn to its first leaf and clipped at the cluster.
  const leaf = (id) => {
    let s = byId.get(id);
    while (s && s.states.length) s = s.states[0];
    return s ? s.id : id;
  };
  const isCluster = (id) => id !== graph.root.id && (byId.get(id)?.states.length ?? 0) > 0;
  for (const [init, t] of pendingInit) lines.push(`${q(init)} -> ${q(leaf(t))}${isCluster(t) ? ` [lhead=${q(`cluster_${t}`)}]` : ''};`);
  const rootNotes = [];
  for (const t of graph.transitions) {
    const label = t.guard ? `${t.label} [${t.guard}]` : t.label;
    if (!t.targets.length) {
      if (t.source === graph.root.id) {
        // Handled in every state: listed in one note rather than a loop on every state.
        rootNotes.push(label);
        notes.set(t.index, `note-${rootNotes.length - 1}`);
        continue;
      }
      const id = `tr-${t.index}-0`;
      edges.set(t.index, [id]);
      lines.push(`${q(leaf(t.source))} -> ${q(leaf(t.source))} [id=${q(id)} label=${q(label)} style=dashed];`);
      continue;
    }
    const ids = [];
    t.targets.forEach((target, k) => {
      const id = `tr-${t.index}-${k}`;
      ids.push(id);
      const attrs = [`id=${q(id)}`, `label=${q(label)}`];
      if (isCluster(t.source)) attrs.push(`ltail=${q(`cluster_${t.source}`)}`);
      if (isCluster(target)) attrs.push(`lhead=${q(`cluster_${target}`)}`);
      if (t.source === graph.root.id) attrs.push('style=dotted');
      lines.push(`${q(leaf(t.source === graph.root.id ? target : t.source))} -> ${q(leaf(target))} [${attrs.join(' ')}];`);
    });
    edges.set(t.index, ids);
  }
  if (rootNotes.length) {
    const rows = rootNotes.map((r, i) => `<tr><td id="note-${i}" align="left">${r.replace(/&/g, '&amp;').replace(/</g, '&lt;')}</td></tr>`).join('');
    lines.push(`"__notes" [shape=plaintext style="" label=<<table border="0" cellborder="0" cellspacing="0"><tr><td align="left"><i>in any state</i></td></tr>${rows}</table>>];`);
  }
  lines.push('}');
  return { dot: lines.join('\n'), stateIds, edges, notes };
}

/** Draws (or reuses the drawing of) a machine into `container`. */
export async function drawMachine(container, graph) {
  let d = drawn.get(graph.id);
  if (!d) {
    vizPromise ??= instance();
    const viz = await vizPromise;
    const { dot, stateIds, edges, notes } = toDot(graph);
    d = { svg: viz.renderString(dot, { format: 'svg' }), stateIds, edges, notes };
    drawn.set(graph.id, d);
  }
  if (container.dataset.machine !== graph.id) {
    container.innerHTML = d.svg;
    container.dataset.machine = graph.id;
  }
  return d;
}

/** Highlights the active states and the last taken transitions of an actor on its drawn machine. */
export function highlight(container, graph, actor) {
  const d = drawn.get(graph.id);
  if (!d || container.dataset.machine !== graph.id) return;
  container.querySelectorAll('.active, .taken').forEach((el) => el.classList.remove('active', 'taken'));
  for (const id of actor.active) {
    const el = container.querySelector(`[id="${d.stateIds.get(id)}"]`);
    if (el) el.classList.add('active');
  }
  for (const i of actor.taken) {
    for (const id of d.edges.get(i) ?? []) container.querySelector(`[id="${id}"]`)?.classList.add('taken');
  }
  container.dataset.state = JSON.stringify(actor.value);
}
