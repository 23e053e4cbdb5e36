/**
 * The live model behind the visualizer: an xstate inspection observer that keeps, for every machine
 * actor of the runtime, who it is (ids, machine, place in the route tree), its machine definition as
 * a serialisable graph, and — computed only when a client asks — its current state and a scalar
 * summary of its context, plus a bounded ring of recent events.
 *
 * Cost model (the runtime may run thousands of actors): an inspection event costs a map lookup, a
 * counter bump and, for `@xstate.event`, one small record in a preallocated ring. Snapshots are never
 * copied: the hub keeps the actor ref and reads `getSnapshot()` when a view is built, and caches the
 * view until the actor changes. Machine graphs are built once per machine (shared by all actors of
 * it). Finished actors keep their last view but drop their ref, and only the newest `keepFinished`
 * of them are kept, so memory stays bounded however many sessions and jobs come and go.
 */
import type { InspectionEvent } from 'xstate';

/** The parts of an xstate actor ref the hub reads (`systemId`, `logic` and `_parent` are public fields of xstate's Actor but not of its ref types). */
interface Ref {
  id: string;
  sessionId: string;
  systemId?: string;
  logic?: unknown;
  _parent?: Ref;
  getSnapshot(): unknown;
}
/** Anything the runtime may hand to `label`: an actor or actor ref. */
export type ActorLike = { sessionId: string; id: string };

/** What an actor is, for the page's tree and filters. */
export type ActorKind = 'server' | 'gateway' | 'association' | 'session' | 'fanout' | 'other';

/** Labels the runtime (or a caller) can give an actor; the hub derives them from ids otherwise. */
export interface ActorLabels {
  gateway?: string;
  device?: string;
  kind?: Exclude<ActorKind, 'other'>;
}

/** A scalar, the only kind of value the hub ever copies out of contexts and events. */
export type Scalar = string | number | boolean | null;

/** One transition of a machine graph. */
export interface TransitionView {
  /** Index in `MachineGraph.transitions` (stable: the page highlights taken transitions by it). */
  index: number;
  /** Id of the state node the transition is defined on. */
  source: string;
  /** The event type as xstate names it (`''` for `always`). */
  event: string;
  /** A readable label: `after idleTimeout`, `done: handleMessage`, `always`, or the event type. */
  label: string;
  /** Target state node ids (empty: a targetless transition, which only runs actions). */
  targets: string[];
  guard?: string;
}

/** One state node of a machine graph (nested). */
export interface StateNodeView {
  id: string;
  key: string;
  type: 'atomic' | 'compound' | 'parallel' | 'final' | 'history';
  /** Ids of the initial child states (compound states only). */
  initial?: string[];
  states: StateNodeView[];
}

/** A machine definition as a serialisable graph. */
export interface MachineGraph {
  /** The machine's id (`gateway`, `association`, ...); also the key of the graph in the model. */
  id: string;
  root: StateNodeView;
  transitions: TransitionView[];
}

/** What the page knows of one actor. */
export interface ActorView {
  /** The hub's key of the actor: its xstate sessionId (unique in the process). */
  key: string;
  /** The actor's own id (xstate `id`: a DeviceID for associations, a session key for sessions). */
  actorId: string;
  systemId?: string;
  machine: string;
  kind: ActorKind;
  /** A short human name for the tree. */
  name: string;
  gateway?: string;
  device?: string;
  /** Key of the actor it is drawn under in the route tree (undefined: a top-level actor). */
  parent?: string;
  /** Route from the top, e.g. `['server', 'gw-a', 'gw-b', 'dev-1']`: what the filters match. */
  route: string[];
  status: 'active' | 'done' | 'stopped' | 'error';
  /** The state value as xstate gives it (a string or a nested object of strings). */
  value: unknown;
  /** Ids of the active state nodes (what the graph highlights). */
  active: string[];
  /** Indices of the transitions taken by the last macrostep. */
  taken: number[];
  context: Record<string, Scalar>;
  /** Events received so far. */
  events: number;
  /** The hub's version at which this view last changed. */
  version: number;
}

/** One entry of the event log. */
export interface EventView {
  seq: number;
  /** Milliseconds since the epoch. */
  t: number;
  /** Key of the receiving actor. */
  actor: string;
  /** Key of the sending actor, if another actor sent it. */
  source?: string;
  type: string;
  /** Scalar fields of the event (secrets never included). */
  fields?: Record<string, Scalar>;
}

/** The whole model, as a new client receives it. */
export interface ModelSnapshot {
  version: number;
  actors: ActorView[];
  machines: Record<string, MachineGraph>;
  events: EventView[];
}

/** What changed after a given version, as a client receives it every batch. */
export interface ModelDelta {
  from: number;
  version: number;
  actors: ActorView[];
  removed: string[];
  /** Graphs of machines first seen in this delta. */
  machines: Record<string, MachineGraph>;
  events: EventView[];
}

/** A model message from another process's hub (what `snapshot()`/`delta()` return, tagged). */
export type RemoteModel = ({ type: 'snapshot' } & ModelSnapshot) | ({ type: 'delta' } & ModelDelta);

/** A process whose actors this hub mirrors (see `InspectionHub.ingest`). */
interface RemoteSource {
  /** Keys (in this hub) of the mirrored actors. */
  keys: Set<string>;
  /** Key of the actor the source's top-level actors are drawn under, once found. */
  attach: string | undefined;
  /** Route of that actor when the records were last rewritten (a change rewrites them). */
  attachRoute: string[];
  /** Newest remote event sequence number imported (a repeated snapshot does not duplicate events). */
  lastSeq: number;
}

/** Limits of the hub. */
export interface HubOptions {
  /** Event ring size (default 2,000). */
  maxEvents?: number;
  /** Finished actors kept for display (default 300); older ones are forgotten. */
  keepFinished?: number;
  /** Removals remembered for deltas (default 10,000); a client further behind gets a full snapshot. */
  maxRemovals?: number;
}

/** Context and event keys whose values are never copied out (credentials, nonces, digests). */
const SECRET_KEY = /secret|passw|nonce|token|cred|digest|hmac|auth|signature|private/i;
const MAX_STRING = 80;
const MAX_FIELDS = 12;

interface ActorRecord {
  key: string;
  /** Dropped when the actor finishes (its last view is kept instead). */
  ref: Ref | undefined;
  machine: string;
  /** The machine's graph index of transitions, for mapping `_transitions` of microsteps. */
  graph: GraphIndex;
  labels: ActorLabels;
  status: ActorView['status'];
  events: number;
  taken: number[];
  /** Bumped on every change; the cached view is valid while `viewVersion === version`. */
  version: number;
  view: ActorView | undefined;
  viewVersion: number;
  /** Key of the actor this one is drawn under (see `resolveParent`). */
  parent: string | undefined;
  /** The parent was a fallback guess (or not looked for yet): re-resolve it on every read until a real one is found. */
  provisional: boolean;
  /** `InspectionHub.structure` when the parent was last looked for (no new actor since: no new answer). */
  resolvedAt: number;
  /** Devices seen in the sessions of a server actor (to find a gateway's server). */
  seenDevices?: Set<string>;
  /** Set on actors mirrored from another process (`ingest`): the view as that process sent it. */
  remote?: { source: string; raw: ActorView };
}

interface GraphIndex {
  graph: MachineGraph;
  byTransition: WeakMap<object, number>;
}

/** Structural view of xstate's StateNode that the graph builder reads. */
interface StateNodeLike {
  id: string;
  key: string;
  type: StateNodeView['type'];
  states: Record<string, StateNodeLike>;
  transitions: Map<string, TransitionLike[]>;
  always?: TransitionLike[];
  initial?: { target?: StateNodeLike[] };
  invoke?: { id: string; src: unknown }[];
}
interface TransitionLike {
  eventType: string;
  target?: StateNodeLike[];
  guard?: unknown;
}

/** Machines are told apart from other logic (promises, callbacks) by their state-node tree. */
function machineRoot(logic: unknown): StateNodeLike | undefined {
  const l = logic as { root?: StateNodeLike; id?: unknown; transition?: unknown } | undefined;
  return l && typeof l === 'object' && l.root && typeof l.id === 'string' && typeof l.transition === 'function' ? l.root : undefined;
}

function guardName(g: unknown): string | undefined {
  if (!g) return undefined;
  if (typeof g === 'string') return g;
  if (typeof g === 'function') return g.name && g.name !== 'guard' ? g.name : 'guard';
  const t = (g as { type?: unknown }).type;
  return typeof t === 'string' ? t : 'guard';
}

function eventLabel(event: string, node: StateNodeLike): string {
  if (event === '') return 'always';
  if (event.startsWith('xstate.after.')) return `after ${event.slice('xstate.after.'.length).split('.')[0]}`;
  for (const [prefix, word] of [['xstate.done.actor.', 'done'], ['xstate.error.actor.', 'error']] as const) {
    if (event.startsWith(prefix)) {
      const id = event.slice(prefix.length);
      const src = node.invoke?.find((i) => i.id === id)?.src;
      return `${word}: ${typeof src === 'string' ? src : id}`;
    }
  }
  if (event.startsWith('xstate.done.state.')) return 'done';
  return event;
}

/** Builds the serialisable graph of a machine (once per machine). */
export function machineGraph(logic: unknown): MachineGraph | undefined {
  return graphIndex(logic)?.graph;
}

const graphCache = new WeakMap<object, GraphIndex>();
function graphIndex(logic: unknown): GraphIndex | undefined {
  const root = machineRoot(logic);
  if (!root) return undefined;
  const cached = graphCache.get(logic as object);
  if (cached) return cached;
  const transitions: TransitionView[] = [];
  const byTransition = new WeakMap<object, number>();
  const walk = (node: StateNodeLike): StateNodeView => {
    const add = (t: TransitionLike): void => {
      const index = transitions.length;
      const guard = guardName(t.guard);
      transitions.push({ index, source: node.id, event: t.eventType, label: eventLabel(t.eventType, node), targets: (t.target ?? []).map((s) => s.id), ...(guard ? { guard } : {}) });
      byTransition.set(t, index);
    };
    for (const list of node.transitions.values()) list.forEach(add);
    node.always?.forEach(add);
    const children = Object.values(node.states ?? {});
    const initial = node.type === 'compound' ? node.initial?.target?.map((s) => s.id) : undefined;
    return { id: node.id, key: node.key, type: node.type, ...(initial?.length ? { initial } : {}), states: children.map(walk) };
  };
  const graph: MachineGraph = { id: (logic as { id: string }).id, root: walk(root), transitions };
  const index = { graph, byTransition };
  graphCache.set(logic as object, index);
  return index;
}

/** Copies the scalar fields of an object (one level, plus one nested plain object), never secrets. */
function scalars(obj: unknown, skip: string | undefined, nested: boolean): Record<string, Scalar> {
  const out: Record<string, Scalar> = {};
  if (!obj || typeof obj !== 'object') return out;
  let n = 0;
  for (const k of Object.keys(obj)) {
    if (n >= MAX_FIELDS) break;
    if (k === skip || SECRET_KEY.test(k)) continue;
    const v = (obj as Record<string, unknown>)[k];
    if (v === null || typeof v === 'number' || typeof v === 'boolean') out[k] = v;
    else if (typeof v === 'string') out[k] = v.length > MAX_STRING ? `${v.slice(0, MAX_STRING)}…` : v;
    else if (v instanceof Map || v instanceof Set) out[k] = `${v instanceof Map ? 'Map' : 'Set'}(${v.size})`;
    else if (Array.isArray(v)) out[k] = `[${v.length}]`;
    else if (nested && v && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
      for (const [k2, v2] of Object.entries(scalars(v, undefined, false))) {
        if (n >= MAX_FIELDS) break;
        out[`${k}.${k2}`] = v2;
        n++;
      }
      continue;
    } else continue;
    n++;
  }
  return out;
}

/** Active state node ids from a machine snapshot (xstate keeps them in `_nodes`; the value is the fallback). */
function activeIds(snapshot: unknown, machineId: string): string[] {
  const s = snapshot as { _nodes?: { id: string; type: string }[]; value?: unknown } | undefined;
  if (!s) return [];
  if (Array.isArray(s._nodes)) return s._nodes.filter((n) => n.id !== machineId).map((n) => n.id);
  const out: string[] = [];
  const walk = (v: unknown, prefix: string): void => {
    if (typeof v === 'string') out.push(`${prefix}.${v}`);
    else if (v && typeof v === 'object') for (const [k, sub] of Object.entries(v)) (out.push(`${prefix}.${k}`), walk(sub, `${prefix}.${k}`));
  };
  walk(s.value, machineId);
  return out;
}

/** An association kept as its record, with no live actor (virtual actors, machines/gateway.ts). */
export interface DormantAssociation {
  deviceId: string;
  mode: string;
  /** The record's status: the association machine's state it would start in. */
  status: string;
  gateway: boolean;
}

/** A gateway's associations as records, for the page (they show as association nodes). */
export interface RecordFeed {
  gatewayId: string;
  /** The association machine (its graph is drawn for record nodes too). */
  machine: unknown;
  /** Every association of the gateway (read only while a page is connected). */
  list(): Iterable<DormantAssociation>;
  get(deviceId: string): DormantAssociation | undefined;
  /** Whether the device has a live actor now (then the actor is shown, not the record). */
  live(deviceId: string): boolean;
}

/**
 * An inspection observer (what `observerFor` returns) that also accepts a gateway's record feed;
 * the returned function is to be called whenever a record changes or its actor goes live or retires.
 */
export type HubObserver = ((event: InspectionEvent) => void) & { recordFeed?: (feed: RecordFeed) => (deviceId: string) => void };

interface FeedState {
  feed: RecordFeed;
  /** Record nodes shown, by DeviceID; undefined until a page first asked (no cost before). */
  shown: Map<string, ActorRecord> | undefined;
  dirty: Set<string>;
  /** The gateway actor's key and route when the record views were built. */
  anchor: string;
}

/** The live model of the runtime's actors, fed by xstate's `inspect` option. */
export class InspectionHub {
  /** Pass as `{ inspect: hub.observer }`; never throws into the runtime. */
  readonly observer: (event: InspectionEvent) => void;
  private readonly byRef = new WeakMap<Ref, ActorRecord>();
  private readonly records = new Map<string, ActorRecord>();
  /** Finished actors in the order they finished (eviction order). */
  private readonly finished: string[] = [];
  private readonly removals: { key: string; version: number }[] = [];
  private readonly machines = new Map<string, { graph: MachineGraph; version: number }>();
  /** Labels given before the actor existed, by actor id or system id. */
  private readonly pendingLabels = new Map<string, ActorLabels>();
  private readonly ring: (EventView | undefined)[];
  private ringNext = 0;
  private seq = 0;
  private version = 0;
  private readonly keepFinished: number;
  private readonly maxRemovals: number;
  private indexMemo: ParentIndex | undefined;
  /** Bumped when an actor appears or is labelled; `resolvedAt` is its value at the last re-resolution. */
  private structure = 0;
  private resolvedAt = -1;
  /** Errors swallowed to protect the runtime (visible in tests and on the page's status line). */
  errors = 0;
  private readonly sources = new Map<string, RemoteSource>();
  private readonly feeds = new Map<string, FeedState>();

  constructor(opts: HubOptions = {}) {
    this.ring = new Array<EventView | undefined>(opts.maxEvents ?? 2000).fill(undefined);
    this.keepFinished = opts.keepFinished ?? 300;
    this.maxRemovals = opts.maxRemovals ?? 10_000;
    this.observer = (ev) => this.handle(ev, undefined);
  }

  /** An observer that also labels every actor it sees (e.g. `{ gateway: 'gw-a' }` for one gateway's actors). */
  observerFor(labels: ActorLabels): HubObserver {
    const fn: HubObserver = (ev) => this.handle(ev, labels);
    fn.recordFeed = (feed) => this.addFeed(feed);
    return fn;
  }

  /**
   * Registers a gateway's association records: those without a live actor are drawn as
   * association nodes in their recorded state (context `record: true`). Nothing is read or kept
   * until a page asks for the model; then changes are applied as the returned callback reports them.
   */
  addFeed(feed: RecordFeed): (deviceId: string) => void {
    const st: FeedState = { feed, shown: undefined, dirty: new Set(), anchor: '' };
    this.feeds.set(feed.gatewayId, st);
    return (deviceId) => {
      if (st.shown) st.dirty.add(deviceId);
    };
  }

  /** Brings the record nodes of every feed up to date (inside `withIndex`). */
  private syncFeeds(): void {
    for (const st of this.feeds.values()) {
      try {
        this.syncFeed(st);
      } catch {
        this.errors++;
      }
    }
  }

  private syncFeed(st: FeedState): void {
    const { feed } = st;
    const gwKey = this.parentIndex().gateways.get(feed.gatewayId);
    const gw = gwKey ? this.records.get(gwKey) : undefined;
    if (!gwKey || !gw) return; // the gateway actor is not seen (yet)
    const route = this.view(gw).route;
    const anchor = `${gwKey}\u0000${route.join('\u0000')}`;
    let ids: Iterable<string>;
    if (!st.shown || anchor !== st.anchor) {
      st.shown ??= new Map();
      st.anchor = anchor;
      const all = new Set(st.shown.keys());
      for (const d of feed.list()) all.add(d.deviceId);
      ids = all;
    } else ids = [...st.dirty];
    st.dirty.clear();
    const graph = graphIndex(feed.machine);
    if (graph && !this.machines.has(graph.graph.id)) this.machines.set(graph.graph.id, { graph: graph.graph, version: ++this.version });
    const machine = graph?.graph.id ?? 'association';
    let retiredAt: Set<string> | undefined;
    for (const id of ids) {
      const d = feed.get(id);
      const old = st.shown.get(id);
      if (!d || feed.live(id)) {
        if (old) {
          st.shown.delete(id);
          this.forget(old);
        }
        continue;
      }
      // The actor that retired into this record is not shown beside it.
      retiredAt ??= new Set(this.finished);
      for (const k of retiredAt) {
        const f = this.records.get(k);
        if (f && f.machine === machine && f.status !== 'active' && f.view?.device === id && f.labels.gateway === feed.gatewayId) {
          this.forget(f);
          retiredAt.delete(k);
        }
      }
      const key = old?.key ?? `record:${feed.gatewayId}/${id}`;
      const version = ++this.version;
      const view: ActorView = {
        key,
        actorId: id,
        machine,
        kind: 'association',
        name: `${d.gateway ? 'child gateway ' : ''}${id} (${d.mode})`,
        gateway: feed.gatewayId,
        device: id,
        parent: gwKey,
        route: [...route, id],
        status: 'active',
        value: d.status === 'sleeping' ? 'attached' : d.status,
        active: [`${machine}.${d.status === 'sleeping' ? 'attached' : d.status}`],
        taken: [],
        context: { deviceId: id, mode: d.mode, status: d.status, gateway: d.gateway, record: true },
        events: 0,
        version,
      };
      if (old) {
        old.view = view;
        old.version = version;
        old.viewVersion = version;
        continue;
      }
      const r: ActorRecord = { key, ref: undefined, machine, graph: graph ?? { graph: { id: machine, root: { id: machine, key: machine, type: 'atomic', states: [] }, transitions: [] }, byTransition: new WeakMap() }, labels: { gateway: feed.gatewayId, device: id, kind: 'association' }, status: 'active', events: 0, taken: [], version, view, viewVersion: version, parent: gwKey, provisional: false, resolvedAt: -1 };
      this.records.set(key, r);
      st.shown.set(id, r);
    }
  }

  /** Labels an actor by ref, sessionId, actor id or system id (also actors created later with that id). */
  label(actor: ActorLike | string, labels: ActorLabels): void {
    try {
      if (typeof actor !== 'string') {
        const r = this.byRef.get(actor as Ref);
        if (r) this.applyLabels(r, labels);
        else this.pendingLabels.set(actor.sessionId, { ...this.pendingLabels.get(actor.sessionId), ...labels });
        return;
      }
      const direct = this.records.get(actor);
      if (direct) return this.applyLabels(direct, labels);
      for (const r of this.records.values()) if (r.ref && (r.ref.id === actor || r.ref.systemId === actor)) this.applyLabels(r, labels);
      this.pendingLabels.set(actor, { ...this.pendingLabels.get(actor), ...labels });
    } catch {
      this.errors++;
    }
  }

  /**
   * Mirrors the actors of another process (a gateway process of `gwmo up --processes`) under
   * `source`, from the snapshots and deltas of that process's own hub. Mirrored actors get keys
   * `<source>/<key>`, and the source's top-level actors are drawn under the child-gateway
   * association of their parent (here or in another mirrored process) or under this process's DM
   * server, so the page shows one route tree for the whole deployment.
   */
  ingest(source: string, msg: RemoteModel): void {
    this.withIndex(() => this.ingestNow(source, msg));
  }

  private ingestNow(source: string, msg: RemoteModel): void {
    try {
      let src = this.sources.get(source);
      if (!src) this.sources.set(source, (src = { keys: new Set(), attach: undefined, attachRoute: [], lastSeq: -1 }));
      for (const [id, graph] of Object.entries(msg.machines)) {
        if (!this.machines.has(id)) this.machines.set(id, { graph, version: ++this.version });
      }
      const k = (key: string): string => `${source}/${key}`;
      if (msg.type === 'snapshot') {
        const present = new Set(msg.actors.map((a) => k(a.key)));
        for (const key of [...src.keys]) if (!present.has(key)) this.dropRemote(src, key);
      } else {
        for (const key of msg.removed) this.dropRemote(src, k(key));
      }
      let added = false;
      for (const raw of msg.actors) {
        const key = k(raw.key);
        let r = this.records.get(key);
        if (!r || !r.remote) {
          const graph = this.machines.get(raw.machine)?.graph ?? { id: raw.machine, root: { id: raw.machine, key: raw.machine, type: 'atomic' as const, states: [] }, transitions: [] };
          r = { key, ref: undefined, machine: raw.machine, graph: { graph, byTransition: new WeakMap() }, labels: {}, status: raw.status, events: raw.events, taken: raw.taken, version: 0, view: undefined, viewVersion: -1, parent: undefined, provisional: false, resolvedAt: -1 };
          this.records.set(key, r);
          src.keys.add(key);
          added = true;
        }
        r.remote = { source, raw };
        r.status = raw.status;
        this.rewrite(src, r);
      }
      for (const e of msg.events) {
        if (e.seq <= src.lastSeq) continue;
        src.lastSeq = e.seq;
        this.push({ ...e, seq: ++this.seq, actor: k(e.actor), ...(e.source ? { source: k(e.source) } : {}) });
      }
      if (added) this.structure++;
      this.reattach();
    } catch {
      this.errors++;
    }
  }

  /** Forgets every actor mirrored from `source` (its process stopped). */
  dropSource(source: string): void {
    const src = this.sources.get(source);
    if (!src) return;
    for (const key of [...src.keys]) this.dropRemote(src, key);
    this.sources.delete(source);
    this.structure++;
  }

  private dropRemote(src: RemoteSource, key: string): void {
    const r = this.records.get(key);
    src.keys.delete(key);
    if (r?.remote) this.forget(r);
  }

  /** Re-derives a mirrored actor's parent and route from its source's attachment point. */
  private rewrite(src: RemoteSource, r: ActorRecord): void {
    const raw = r.remote!.raw;
    const source = r.remote!.source;
    const prefix = src.attachRoute;
    const route = prefix.length === 0 ? raw.route : prefix.at(-1) === raw.route[0] ? [...prefix, ...raw.route.slice(1)] : [...prefix, ...raw.route];
    const parent = raw.parent ? `${source}/${raw.parent}` : src.attach;
    r.parent = parent;
    r.taken = raw.taken;
    r.events = raw.events;
    r.version = ++this.version;
    const { parent: _p, ...rest } = raw;
    r.view = { ...rest, key: r.key, ...(parent ? { parent } : {}), route, version: r.version };
    r.viewVersion = r.version;
  }

  /** Finds where each source hangs (and rewrites its actors when that place or its route changed). */
  private reattach(): void {
    for (const [source, src] of this.sources) {
      const attach = this.attachPoint(source);
      const attachRoute = attach ? (this.records.get(attach)?.view?.route ?? (this.records.get(attach) ? this.view(this.records.get(attach)!).route : [])) : [];
      if (attach === src.attach && attachRoute.join('\u0000') === src.attachRoute.join('\u0000')) continue;
      src.attach = attach;
      src.attachRoute = attachRoute;
      for (const key of src.keys) {
        const r = this.records.get(key);
        if (r?.remote) this.rewrite(src, r);
      }
    }
  }

  /** The child-gateway association of `gatewayId` (in this process or a mirrored one), else this process's DM server. */
  private attachPoint(gatewayId: string): string | undefined {
    let server: string | undefined;
    for (const r of this.records.values()) {
      if (r.status !== 'active') continue;
      if (r.machine === 'association' && !r.key.startsWith(`${gatewayId}/`)) {
        const v = r.remote ? r.remote.raw : r.ref ? this.view(r) : undefined;
        if (v && v.device === gatewayId && v.name.startsWith('child gateway')) return r.key;
      } else if (r.machine === 'dmServer' && r.ref && !r.labels.gateway) server ??= r.key;
    }
    return server;
  }

  /** Number of actors in the model (live and kept finished ones). */
  get size(): number {
    return this.records.size;
  }

  /** The current version (bumped by every change). */
  get currentVersion(): number {
    return this.version;
  }

  /** The whole model: what a new client gets first. */
  snapshot(): ModelSnapshot {
    return this.withIndex(() => {
      this.reresolve();
      this.syncFeeds();
      const machines: Record<string, MachineGraph> = {};
      for (const [id, m] of this.machines) machines[id] = m.graph;
      return { version: this.version, actors: [...this.records.values()].map((r) => this.view(r)), machines, events: this.eventsAfter(-1) };
    });
  }

  /** What changed after `from` (a version from a snapshot or delta), or undefined if too far behind. */
  delta(from: number, fromSeq: number): ModelDelta | undefined {
    return this.withIndex(() => this.deltaNow(from, fromSeq));
  }

  private deltaNow(from: number, fromSeq: number): ModelDelta | undefined {
    this.reresolve();
    this.syncFeeds();
    const oldestRemoval = this.removals[0];
    if (oldestRemoval && this.removals.length >= this.maxRemovals && oldestRemoval.version > from) return undefined;
    const actors: ActorView[] = [];
    for (const r of this.records.values()) if (r.version > from) actors.push(this.view(r));
    const removed = this.removals.filter((x) => x.version > from).map((x) => x.key);
    const machines: Record<string, MachineGraph> = {};
    for (const [id, m] of this.machines) if (m.version > from) machines[id] = m.graph;
    return { from, version: this.version, actors, removed, machines, events: this.eventsAfter(fromSeq) };
  }

  /** The view of one actor by key (sessionId). */
  actor(key: string): ActorView | undefined {
    const r = this.records.get(key);
    return r ? this.withIndex(() => this.view(r)) : undefined;
  }

  /** Runs `fn` with one parent index shared by every view it builds (building it is O(actors)). */
  private withIndex<T>(fn: () => T): T {
    this.indexMemo = undefined;
    try {
      return fn();
    } finally {
      this.indexMemo = undefined;
    }
  }

  /** Events in the ring with a sequence number above `seq`, oldest first. */
  eventsAfter(seq: number): EventView[] {
    const out: EventView[] = [];
    const n = this.ring.length;
    for (let i = 0; i < n; i++) {
      const e = this.ring[(this.ringNext + i) % n];
      if (e && e.seq > seq) out.push(e);
    }
    return out;
  }

  /** The newest event sequence number (0: none yet). */
  get lastSeq(): number {
    return this.seq;
  }

  private handle(ev: InspectionEvent, labels: ActorLabels | undefined): void {
    try {
      switch (ev.type) {
        case '@xstate.actor':
          this.onActor(ev.actorRef as unknown as Ref, labels);
          break;
        case '@xstate.event': {
          const r = this.byRef.get(ev.actorRef as unknown as Ref);
          if (!r) return;
          r.events++;
          this.touch(r);
          const src = ev.sourceRef ? this.byRef.get(ev.sourceRef as unknown as Ref) : undefined;
          const type = typeof ev.event?.type === 'string' ? ev.event.type : '?';
          const fields = scalars(ev.event, 'type', true);
          if (type === 'session.open' && r.machine === 'dmServer') this.noteSession(r, fields['input.key']);
          this.push({ seq: ++this.seq, t: Date.now(), actor: r.key, type, ...(src ? { source: src.key } : {}), ...(Object.keys(fields).length ? { fields } : {}) });
          break;
        }
        case '@xstate.microstep': {
          const r = this.byRef.get(ev.actorRef as unknown as Ref);
          if (!r) return;
          const ts = (ev as { _transitions?: object[] })._transitions;
          if (ts?.length) {
            const taken: number[] = [];
            for (const t of ts) {
              const i = r.graph.byTransition.get(t);
              if (i !== undefined) taken.push(i);
            }
            if (taken.length) r.taken = taken;
          }
          this.touch(r);
          break;
        }
        case '@xstate.snapshot': {
          const r = this.byRef.get(ev.actorRef as unknown as Ref);
          if (!r) return;
          const status = (ev.snapshot as { status?: string }).status;
          this.touch(r);
          if (status && status !== 'active') this.finish(r, status as ActorView['status']);
          break;
        }
        default:
          break;
      }
    } catch {
      // The visualizer must never break the runtime: a malformed event is counted and dropped.
      this.errors++;
    }
  }

  private onActor(ref: Ref, labels: ActorLabels | undefined): void {
    const logic = (ref as { logic?: unknown }).logic;
    const graph = graphIndex(logic);
    // Promise and callback actors (a session's message handler, an HTTP exchange) are short-lived
    // plumbing: their outcome shows as the done/error event of the machine that invoked them.
    if (!graph) return;
    const key = ref.sessionId;
    const old = this.records.get(key);
    if (old) this.forget(old);
    const r: ActorRecord = {
      key,
      ref,
      machine: graph.graph.id,
      graph,
      labels: { ...labels, ...this.pendingLabels.get(key) },
      status: 'active',
      events: 0,
      taken: [],
      version: 0,
      view: undefined,
      viewVersion: -1,
      parent: undefined,
      provisional: true,
      resolvedAt: -1,
    };
    // Actors of one machine id may come from different definitions (tests build their own):
    // the first one seen names the graph, which is what the page draws.
    if (!this.machines.has(r.machine)) this.machines.set(r.machine, { graph: graph.graph, version: ++this.version });
    this.records.set(key, r);
    this.byRef.set(ref, r);
    this.structure++;
    this.touch(r);
    // The actor's id is known now; its systemId only after construction, so label() by systemId
    // also re-checks live records.
    const byId = this.pendingLabels.get(ref.id);
    if (byId) r.labels = { ...r.labels, ...byId };
  }

  private applyLabels(r: ActorRecord, labels: ActorLabels): void {
    r.labels = { ...r.labels, ...labels };
    r.provisional = true;
    this.structure++;
    this.touch(r);
  }

  private noteSession(server: ActorRecord, key: Scalar | undefined): void {
    if (typeof key !== 'string') return;
    (server.seenDevices ??= new Set()).add(key.split('|')[0]!);
  }

  private touch(r: ActorRecord): void {
    r.version = ++this.version;
  }

  private push(e: EventView): void {
    this.ring[this.ringNext] = e;
    this.ringNext = (this.ringNext + 1) % this.ring.length;
  }

  private finish(r: ActorRecord, status: ActorView['status']): void {
    if (r.status !== 'active') return;
    r.status = status;
    this.touch(r);
    // Freeze the last view and let go of the actor (its context may hold sessions, sockets, buffers).
    this.withIndex(() => this.view(r));
    r.ref = undefined;
    this.finished.push(r.key);
    while (this.finished.length > this.keepFinished) {
      const old = this.records.get(this.finished.shift()!);
      if (old && old.status !== 'active') this.forget(old);
    }
  }

  private forget(r: ActorRecord): void {
    this.records.delete(r.key);
    this.removals.push({ key: r.key, version: ++this.version });
    if (this.removals.length > this.maxRemovals) this.removals.splice(0, this.removals.length - this.maxRemovals);
  }

  /** Actors whose parent was a guess get another try (the real parent may have appeared since). */
  private reresolve(): void {
    // A guessed parent can only improve when an actor appears or is labelled.
    if (this.resolvedAt === this.structure) return;
    this.resolvedAt = this.structure;
    for (const r of this.records.values()) {
      if (!r.provisional || !r.ref) continue;
      const { parent, provisional } = this.resolveParent(r);
      r.provisional = provisional;
      if (parent !== r.parent || !r.view) {
        r.parent = parent;
        this.touch(r);
      }
    }
    // Mirrored processes hang under actors whose routes are only now known.
    if (this.sources.size) this.reattach();
  }

  private view(r: ActorRecord): ActorView {
    if (r.view && r.viewVersion === r.version) return r.view;
    if (!r.ref) return r.view!;
    const snap = r.ref.getSnapshot() as { value?: unknown; context?: unknown; status?: string } | undefined;
    const ctx = snap?.context;
    const derived = this.derive(r, ctx);
    // A parent once found does not change (an actor does not move between gateways).
    if (r.provisional && r.resolvedAt !== this.structure) {
      r.resolvedAt = this.structure;
      const found = this.resolveParent(r);
      r.parent = found.parent;
      r.provisional = found.provisional;
    }
    const parent = r.parent;
    const parentView = parent ? this.records.get(parent) : undefined;
    const parentRoute = parentView && parentView !== r ? (parentView.view?.route ?? this.view(parentView).route) : [];
    const v: ActorView = {
      key: r.key,
      actorId: r.ref.id,
      ...(r.ref.systemId ? { systemId: r.ref.systemId } : {}),
      machine: r.machine,
      kind: derived.kind,
      name: derived.name,
      ...(derived.gateway ? { gateway: derived.gateway } : {}),
      ...(derived.device ? { device: derived.device } : {}),
      ...(parent ? { parent } : {}),
      route: derived.segment && parentRoute.at(-1) !== derived.segment ? [...parentRoute, derived.segment] : parentRoute.length ? parentRoute : [derived.segment ?? derived.name],
      status: r.status,
      value: snap?.value,
      active: activeIds(snap, r.machine),
      taken: r.taken,
      context: scalars(ctx, undefined, false),
      events: r.events,
      version: r.version,
    };
    r.view = v;
    r.viewVersion = r.version;
    return v;
  }

  /** Kind, labels and name from the machine id and context, unless labels were given. */
  private derive(r: ActorRecord, ctx: unknown): { kind: ActorKind; name: string; gateway?: string; device?: string; segment?: string } {
    const c = (ctx ?? {}) as Record<string, unknown>;
    const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
    const L = r.labels;
    const id = r.ref?.id ?? r.key;
    switch (r.machine) {
      case 'dmServer':
        return L.gateway
          ? { kind: 'server', name: `south server of ${L.gateway}`, gateway: L.gateway }
          : { kind: L.kind ?? 'server', name: 'DM server', segment: 'server' };
      case 'dmSession': {
        const key = str(c.key) ?? id;
        const [device, sid] = key.split('|');
        return { kind: 'session', name: `session ${sid ?? key} of ${device}`, device: L.device ?? device, ...(L.gateway ? { gateway: L.gateway } : {}) };
      }
      case 'dmClientSession':
        return { kind: 'session', name: `client session ${id}`, ...(L.gateway ? { gateway: L.gateway } : {}), ...(L.device ? { device: L.device } : {}) };
      case 'gateway': {
        const g = str(c.gatewayId) ?? L.gateway ?? id;
        return { kind: 'gateway', name: `gateway ${g}`, gateway: g, segment: g };
      }
      case 'association': {
        const d = str(c.deviceId) ?? L.device ?? id;
        const mode = str(c.mode);
        return { kind: 'association', name: `${c.gateway === true ? 'child gateway ' : ''}${d}${mode ? ` (${mode})` : ''}`, device: d, segment: d, ...(L.gateway ? { gateway: L.gateway } : {}) };
      }
      case 'fanout':
        return { kind: 'fanout', name: `fanout job ${str(c.name) ?? id}`, ...(L.gateway ? { gateway: L.gateway } : {}) };
      default:
        return { kind: L.kind ?? 'other', name: `${r.machine} ${id}`, ...(L.gateway ? { gateway: L.gateway } : {}), ...(L.device ? { device: L.device } : {}) };
    }
  }

  private parentIndex(): ParentIndex {
    return (this.indexMemo ??= this.buildParentIndex());
  }

  private buildParentIndex(): ParentIndex {
    const index: ParentIndex = { associationOwner: new Map(), gateways: new Map(), associationsByDevice: new Map(), servers: [] };
    for (const r of this.records.values()) {
      if (r.status !== 'active' || !r.ref) continue;
      const ctx = (r.ref.getSnapshot() as { context?: Record<string, unknown> } | undefined)?.context;
      if (r.machine === 'gateway' && ctx) {
        const gid = typeof ctx.gatewayId === 'string' ? ctx.gatewayId : undefined;
        if (gid) index.gateways.set(gid, r.key);
        // The gateway keeps its association actors in a Map in its context (they are root actors,
        // not xstate children), which is the authoritative link from an association to its gateway.
        if (ctx.associations instanceof Map) {
          for (const a of ctx.associations.values()) {
            const ar = this.byRef.get(a as Ref);
            if (ar) index.associationOwner.set(ar.key, r.key);
          }
        }
      } else if (r.machine === 'association' && ctx && typeof ctx.deviceId === 'string') {
        const list = index.associationsByDevice.get(ctx.deviceId) ?? [];
        list.push({ key: r.key, gateway: ctx.gateway === true });
        index.associationsByDevice.set(ctx.deviceId, list);
      } else if (r.machine === 'dmServer') index.servers.push(r);
    }
    return index;
  }

  /** Where an actor is drawn in the route tree; `provisional` while the answer is a fallback. */
  private resolveParent(r: ActorRecord): { parent: string | undefined; provisional: boolean } {
    const ref = r.ref;
    if (!ref) return { parent: r.parent, provisional: false };
    const idx = (): ParentIndex => this.parentIndex();
    const ctx = (ref.getSnapshot() as { context?: Record<string, unknown> } | undefined)?.context ?? {};
    const L = r.labels;
    const gatewayKey = (g: string | undefined): string | undefined => (g ? idx().gateways.get(g) : undefined);
    const topServer = (): string | undefined => idx().servers.find((s) => !s.labels.gateway)?.key;
    switch (r.machine) {
      case 'association': {
        const owner = idx().associationOwner.get(r.key) ?? gatewayKey(L.gateway);
        return { parent: owner, provisional: !owner };
      }
      case 'gateway': {
        const gid = typeof ctx.gatewayId === 'string' ? ctx.gatewayId : L.gateway;
        // A child gateway is a device of its parent: drawn under its association there.
        const assoc = gid ? idx().associationsByDevice.get(gid)?.find((a) => a.gateway) : undefined;
        if (assoc) return { parent: assoc.key, provisional: false };
        const server = idx().servers.find((s) => !s.labels.gateway && gid && s.seenDevices?.has(gid));
        if (server) return { parent: server.key, provisional: false };
        return { parent: topServer(), provisional: true };
      }
      case 'dmServer': {
        if (!L.gateway) return { parent: undefined, provisional: false };
        const g = gatewayKey(L.gateway);
        return { parent: g, provisional: !g };
      }
      case 'dmSession': {
        const xparent = (ref as { _parent?: Ref })._parent;
        const server = xparent ? this.byRef.get(xparent) : undefined;
        // A session at a gateway's southbound server belongs to the association of its device.
        if (server?.labels.gateway) {
          const device = (typeof ctx.key === 'string' ? ctx.key : ref.id).split('|')[0]!;
          const g = gatewayKey(server.labels.gateway);
          const assoc = g ? idx().associationsByDevice.get(device)?.find((a) => idx().associationOwner.get(a.key) === g) : undefined;
          if (assoc) return { parent: assoc.key, provisional: false };
        }
        return { parent: server?.key, provisional: false };
      }
      case 'fanout':
      case 'dmClientSession': {
        const g = gatewayKey(L.gateway);
        return { parent: g, provisional: !g && !!L.gateway };
      }
      default: {
        const xparent = (ref as { _parent?: Ref })._parent;
        const p = xparent ? this.byRef.get(xparent)?.key : gatewayKey(L.gateway);
        return { parent: p, provisional: false };
      }
    }
  }
}

interface ParentIndex {
  associationOwner: Map<string, string>;
  gateways: Map<string, string>;
  associationsByDevice: Map<string, { key: string; gateway: boolean }[]>;
  servers: ActorRecord[];
}

/** Creates an inspection hub (see `InspectionHub`). */
export function createInspectionHub(opts: HubOptions = {}): InspectionHub {
  return new InspectionHub(opts);
}
