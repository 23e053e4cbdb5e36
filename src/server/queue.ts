/**
 * Per-device command queues and results, persisted in LevelDB. A command is written before it is
 * acknowledged to the operator and stays queued until the device returns a final status for it; a
 * command that was sent in a session that then died is sent again in the next session, so a server
 * restart loses nothing.
 */
import { EventEmitter } from 'node:events';
import type { Item } from '../codec/model.ts';
import type { Outgoing } from '../session/common.ts';
import type { Section, Store } from '../store/store.ts';
import { isCoalescing } from './write-coalescer.ts';

/** A per-command status inside an Atomic/Sequence, or the command itself. */
export interface CommandStatus {
  /** Path of inner indexes ([] = the queued command itself, [2] = its third inner command). */
  path: number[];
  cmd: string;
  target?: string;
  status: number;
  /** A gateway's 202 for a device it could not reach in time (marked in the Status); the result follows. */
  deferred?: boolean;
}

/** What came back for a queued command. */
export interface CommandOutcome {
  status: number;
  statuses: CommandStatus[];
  results: Item[];
  /**
   * For each result, the path of the Get it answers ([] the command itself, [i] its i-th inner
   * command). Absent in outcomes recorded before it existed: results then belong to the first Get.
   */
  resultPaths?: number[][];
}

/**
 * How a command reaches a device behind a gateway: it is delivered in the session of `via` (the
 * gateway the server talks to), with every URI under `prefix` (e.g. `./GwMO/Devices/d0001`, or
 * deeper through child gateways: `./GwMO/Devices/g2/GwMO/Devices/d0001`). GwMO proxy mode.
 */
export interface Route {
  via: string;
  prefix: string;
}

/** A queued command and, once done, its outcome. */
/** A way to deliver a device's commands (issue "server-initiated session bypassing the gateway"). */
export type RouteKind = 'own' | 'direct' | 'transparent' | 'proxy' | 'adaptation';

/** The route the server chose for a device, and why (shown with each command and in the logs). */
export interface RouteChoice {
  kind: RouteKind;
  /** The gateway involved (transparent, proxy, adaptation), or the gateway bypassed (direct). */
  via?: string;
  /** The address a Package 0 went to (own, direct). */
  address?: string;
  reason: string;
  /** The route tried before, when this one is a fallback. */
  fallbackFrom?: RouteKind;
  at: string;
}

export interface QueueEntry {
  id: string;
  /** The device the command is for (the operator's name for it). */
  deviceId: string;
  /** Set when the device is reached through a gateway. */
  route?: Route;
  /** Marks commands the server queues for itself (e.g. reading a gateway's inventory record). */
  tag?: string;
  /** How the server delivers it (the latest choice: a fallback replaces the route it fell back from). */
  delivery?: RouteChoice;
  command: Outgoing;
  /**
   * queued → sent → done; `accepted` when a gateway answered 202 for a device behind it: the
   * result follows in a DeferredResult alert, and the command is not sent again meanwhile.
   */
  state: 'queued' | 'sent' | 'accepted' | 'done';
  createdAt: string;
  sentAt?: string;
  sessionId?: string;
  doneAt?: string;
  outcome?: CommandOutcome;
  /** How many sessions it was sent in without a final status (redelivery count). */
  attempts: number;
}

/** A Generic Alert (1226) or client event received from a device. */
export interface DeviceAlert {
  deviceId: string;
  at: string;
  sessionId: string;
  code: string;
  correlator?: string;
  items: Item[];
}

const pad = (n: number): string => n.toString().padStart(12, '0');

const entryKey = (deviceId: string, id: string): string => `${deviceId}\u0000${id}`;

/**
 * The server's durable command queue, results and device records.
 *
 * LevelDB holds every entry, done ones included (the history the API shows). What a session
 * delivers is read from an in-memory index of the entries not yet done (and of the gateway
 * index), built from the store when the queue opens and updated after each successful write: a
 * device's history grows with every session, and listing it from LevelDB at every message made
 * the server slower the longer it ran. The index holds each entry as the JSON that was written, so
 * readers get fresh copies, as from LevelDB.
 */
export class CommandQueue {
  private readonly store: Store;
  private readonly entries: Section<QueueEntry>;
  private readonly meta: Section<number>;
  private readonly alerts: Section<DeviceAlert>;
  /** Index of routed entries by the gateway that delivers them: `${via}\0${id}` -> deviceId. */
  private readonly via: Section<string>;
  private seq = 0;
  /** Entries not done, by device: id -> JSON as written. */
  private readonly open = new Map<string, Map<string, string>>();
  /** The gateway index (`via`) in memory: via -> id -> deviceId. */
  private readonly viaIndex = new Map<string, Map<string, string>>();
  /** Emits `done` (QueueEntry) and `queued` (QueueEntry). */
  readonly events = new EventEmitter();

  private constructor(store: Store) {
    this.store = store;
    this.entries = store.section<QueueEntry>('queue');
    this.meta = store.section<number>('queue-meta');
    this.alerts = store.section<DeviceAlert>('alerts');
    this.via = store.section<string>('queue-via');
    this.events.setMaxListeners(0);
  }

  /** Opens the queue on a store, restoring the id sequence. */
  static async open(store: Store): Promise<CommandQueue> {
    const q = new CommandQueue(store);
    q.seq = (await q.meta.get('seq')) ?? 0;
    for (const [, e] of await q.entries.entries()) if (e.state !== 'done') q.remember(e.deviceId, e.id, JSON.stringify(e), e.state);
    for (const [key, deviceId] of await q.via.entries()) {
      const i = key.indexOf('\u0000');
      q.indexVia(key.slice(0, i), key.slice(i + 1), deviceId);
    }
    return q;
  }

  /** Records an entry's written state in the index of open entries (a done one leaves it). */
  private remember(deviceId: string, id: string, json: string, state: QueueEntry['state']): void {
    let m = this.open.get(deviceId);
    if (state === 'done') {
      m?.delete(id);
      if (m && !m.size) this.open.delete(deviceId);
      return;
    }
    if (!m) this.open.set(deviceId, (m = new Map()));
    m.set(id, json);
  }

  private indexVia(via: string, id: string, deviceId: string | undefined): void {
    let m = this.viaIndex.get(via);
    if (deviceId === undefined) {
      m?.delete(id);
      if (m && !m.size) this.viaIndex.delete(via);
      return;
    }
    if (!m) this.viaIndex.set(via, (m = new Map()));
    m.set(id, deviceId);
  }

  /** Writes entries (and gateway index changes) in one atomic batch; the index follows once it is written. */
  private async write(entries: QueueEntry[], via: [via: string, id: string, deviceId: string | undefined][] = [], seq?: number): Promise<void> {
    const snaps = entries.map((e) => [e.deviceId, e.id, JSON.stringify(e), e.state] as const);
    const ops = [
      ...(seq !== undefined ? [{ section: 'queue-meta', key: 'seq', json: JSON.stringify(seq) }] : []),
      ...snaps.map(([d, id, json]) => ({ section: 'queue', key: entryKey(d, id), json })),
      ...via.map(([v, id, d]) => ({ section: 'queue-via', key: `${v}\u0000${id}`, json: d === undefined ? undefined : JSON.stringify(d) })),
    ];
    if (isCoalescing(this.store)) await this.store.batchJson(ops);
    else await this.store.batch(ops.map((o) => ({ section: o.section, key: o.key, value: o.json === undefined ? undefined : (JSON.parse(o.json) as unknown) })));
    for (const [d, id, json, state] of snaps) this.remember(d, id, json, state);
    for (const [v, id, d] of via) this.indexVia(v, id, d);
  }

  /** Appends a command for a device; durable when the promise resolves. */
  async enqueue(deviceId: string, command: Outgoing, route?: Route, tag?: string, delivery?: RouteChoice): Promise<QueueEntry> {
    const n = ++this.seq;
    const id = `c${pad(n)}`;
    const entry: QueueEntry = {
      id,
      deviceId,
      ...(route ? { route } : {}),
      ...(tag ? { tag } : {}),
      ...(delivery ? { delivery } : {}),
      command,
      state: 'queued',
      createdAt: new Date().toISOString(),
      attempts: 0,
    };
    await this.write([entry], route ? [[route.via, id, deviceId]] : [], n);
    this.events.emit('queued', entry);
    return entry;
  }

  /** All entries of a device, oldest first. */
  async list(deviceId: string): Promise<QueueEntry[]> {
    return (await this.entries.entries(`${deviceId}\u0000`)).map(([, v]) => v);
  }

  /** One entry. */
  async get(deviceId: string, id: string): Promise<QueueEntry | undefined> {
    const json = this.open.get(deviceId)?.get(id);
    if (json !== undefined) return JSON.parse(json) as QueueEntry;
    return this.entries.get(entryKey(deviceId, id));
  }

  /** Entries still to deliver (queued, or sent in a session that ended without a final status). */
  async pending(deviceId: string): Promise<QueueEntry[]> {
    const m = this.open.get(deviceId);
    if (!m) return [];
    const ids = [...m.keys()].sort();
    return ids.map((id) => JSON.parse(m.get(id)!) as QueueEntry).filter((e) => e.state !== 'accepted');
  }

  /** Entries routed through `via` that a gateway accepted (202) and whose result is still to come. */
  async accepted(via: string): Promise<QueueEntry[]> {
    const out: QueueEntry[] = [];
    for (const [id, deviceId] of [...(this.viaIndex.get(via) ?? [])].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))) {
      const e = await this.get(deviceId, id);
      if (e?.state === 'accepted') out.push(e);
    }
    return out;
  }

  /** Marks an entry as accepted for processing by the gateway that carries it. */
  async markAccepted(entry: QueueEntry): Promise<void> {
    entry.state = 'accepted';
    await this.write([entry]);
  }

  /**
   * What a session with `sessionDeviceId` delivers, oldest first: the device's own commands, and
   * the commands for devices reached through it (when it is a gateway).
   */
  async deliverable(sessionDeviceId: string): Promise<QueueEntry[]> {
    const own = (await this.pending(sessionDeviceId)).filter((e) => !e.route);
    const routed: QueueEntry[] = [];
    for (const [id, deviceId] of this.viaIndex.get(sessionDeviceId) ?? []) {
      const e = await this.get(deviceId, id);
      if (e && e.state !== 'done' && e.state !== 'accepted') routed.push(e);
    }
    return [...own, ...routed].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Marks entries as sent in a session. */
  async markSent(entries: QueueEntry[], sessionId: string): Promise<void> {
    const at = new Date().toISOString();
    for (const e of entries) {
      e.state = 'sent';
      e.sentAt = at;
      e.sessionId = sessionId;
      e.attempts += 1;
    }
    await this.write(entries);
  }

  /** Moves a routed entry to another gateway (a nomadic device moved); it is sent afresh there. */
  async reroute(entry: QueueEntry, route: Route): Promise<void> {
    const old = entry.route;
    entry.route = route;
    entry.state = 'queued';
    await this.write([entry], [...(old && old.via !== route.via ? [[old.via, entry.id, undefined] as [string, string, undefined]] : []), [route.via, entry.id, entry.deviceId]]);
  }

  /** Records the route chosen for entries still waiting to be delivered. */
  async annotate(entries: QueueEntry[], delivery: RouteChoice): Promise<void> {
    if (!entries.length) return;
    for (const e of entries) e.delivery = delivery;
    await this.write(entries);
  }

  /** Records the final outcome of an entry. */
  async complete(entry: QueueEntry, outcome: CommandOutcome): Promise<void> {
    entry.state = 'done';
    entry.doneAt = new Date().toISOString();
    entry.outcome = outcome;
    await this.write([entry], entry.route ? [[entry.route.via, entry.id, undefined]] : []);
    this.events.emit('done', entry);
  }

  /**
   * Withdraws a command the device has not received yet (state queued): it ends as 215 (Not
   * executed). Returns false when it was already sent or done.
   */
  async cancel(deviceId: string, id: string): Promise<boolean> {
    const e = await this.get(deviceId, id);
    if (!e || e.state !== 'queued') return false;
    await this.complete(e, { status: 215, statuses: [], results: [] });
    return true;
  }

  /** Waits until an entry is done, or the timeout passes (resolves undefined). */
  async waitFor(deviceId: string, id: string, timeoutMs: number): Promise<QueueEntry | undefined> {
    const now = await this.get(deviceId, id);
    if (!now || now.state === 'done' || this.closed) return this.closed ? undefined : now;
    return new Promise((resolve) => {
      const onDone = (e: QueueEntry): void => {
        if (e.id === id && e.deviceId === deviceId) finish(e);
      };
      const onClose = (): void => finish(undefined);
      const timer = setTimeout(() => finish(undefined), timeoutMs);
      const finish = (e: QueueEntry | undefined): void => {
        clearTimeout(timer);
        this.events.off('done', onDone);
        this.events.off('close', onClose);
        resolve(e);
      };
      this.events.on('done', onDone);
      this.events.on('close', onClose);
    });
  }

  private closed = false;

  /**
   * Ends every `waitFor` now (as a timeout would) and makes later ones return at once: a server or
   * gateway that is stopping must not sit out the deadlines of commands for devices that are gone.
   */
  close(): void {
    this.closed = true;
    this.events.emit('close');
  }

  /** Stores an alert received from a device. */
  async addAlert(a: DeviceAlert): Promise<void> {
    const n = ++this.seq;
    await this.meta.put('seq', n);
    await this.alerts.put(`${a.deviceId}\u0000${pad(n)}`, a);
    this.events.emit('alert', a);
  }

  /** Alerts received from a device, oldest first. */
  async listAlerts(deviceId: string): Promise<DeviceAlert[]> {
    return (await this.alerts.entries(`${deviceId}\u0000`)).map(([, v]) => v);
  }
}
