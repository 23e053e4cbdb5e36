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

/** The server's durable command queue, results and device records. */
export class CommandQueue {
  private readonly entries: Section<QueueEntry>;
  private readonly meta: Section<number>;
  private readonly alerts: Section<DeviceAlert>;
  /** Index of routed entries by the gateway that delivers them: `${via}\0${id}` -> deviceId. */
  private readonly via: Section<string>;
  private seq = 0;
  /** Emits `done` (QueueEntry) and `queued` (QueueEntry). */
  readonly events = new EventEmitter();

  private constructor(store: Store) {
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
    return q;
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
    await this.meta.put('seq', n);
    await this.entries.put(`${deviceId}\u0000${id}`, entry);
    if (route) await this.via.put(`${route.via}\u0000${id}`, deviceId);
    this.events.emit('queued', entry);
    return entry;
  }

  /** All entries of a device, oldest first. */
  async list(deviceId: string): Promise<QueueEntry[]> {
    return (await this.entries.entries(`${deviceId}\u0000`)).map(([, v]) => v);
  }

  /** One entry. */
  async get(deviceId: string, id: string): Promise<QueueEntry | undefined> {
    return this.entries.get(`${deviceId}\u0000${id}`);
  }

  /** Entries still to deliver (queued, or sent in a session that ended without a final status). */
  async pending(deviceId: string): Promise<QueueEntry[]> {
    return (await this.list(deviceId)).filter((e) => e.state !== 'done' && e.state !== 'accepted');
  }

  /** Entries routed through `via` that a gateway accepted (202) and whose result is still to come. */
  async accepted(via: string): Promise<QueueEntry[]> {
    const out: QueueEntry[] = [];
    for (const [key, deviceId] of await this.via.entries(`${via}\u0000`)) {
      const e = await this.get(deviceId, key.slice(key.indexOf('\u0000') + 1));
      if (e?.state === 'accepted') out.push(e);
    }
    return out;
  }

  /** Marks an entry as accepted for processing by the gateway that carries it. */
  async markAccepted(entry: QueueEntry): Promise<void> {
    entry.state = 'accepted';
    await this.entries.put(`${entry.deviceId}\u0000${entry.id}`, entry);
  }

  /**
   * What a session with `sessionDeviceId` delivers, oldest first: the device's own commands, and
   * the commands for devices reached through it (when it is a gateway).
   */
  async deliverable(sessionDeviceId: string): Promise<QueueEntry[]> {
    const own = (await this.pending(sessionDeviceId)).filter((e) => !e.route);
    const routed: QueueEntry[] = [];
    for (const [key, deviceId] of await this.via.entries(`${sessionDeviceId}\u0000`)) {
      const e = await this.get(deviceId, key.slice(key.indexOf('\u0000') + 1));
      if (e && e.state !== 'done' && e.state !== 'accepted') routed.push(e);
    }
    return [...own, ...routed].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Marks entries as sent in a session. */
  async markSent(entries: QueueEntry[], sessionId: string): Promise<void> {
    const at = new Date().toISOString();
    await this.entries.batch(
      entries.map((e) => {
        e.state = 'sent';
        e.sentAt = at;
        e.sessionId = sessionId;
        e.attempts += 1;
        return [`${e.deviceId}\u0000${e.id}`, e];
      }),
    );
  }

  /** Moves a routed entry to another gateway (a nomadic device moved); it is sent afresh there. */
  async reroute(entry: QueueEntry, route: Route): Promise<void> {
    if (entry.route) await this.via.del(`${entry.route.via}\u0000${entry.id}`);
    entry.route = route;
    entry.state = 'queued';
    await this.entries.put(`${entry.deviceId}\u0000${entry.id}`, entry);
    await this.via.put(`${route.via}\u0000${entry.id}`, entry.deviceId);
  }

  /** Records the route chosen for entries still waiting to be delivered. */
  async annotate(entries: QueueEntry[], delivery: RouteChoice): Promise<void> {
    if (!entries.length) return;
    await this.entries.batch(
      entries.map((e) => {
        e.delivery = delivery;
        return [`${e.deviceId}\u0000${e.id}`, e];
      }),
    );
  }

  /** Records the final outcome of an entry. */
  async complete(entry: QueueEntry, outcome: CommandOutcome): Promise<void> {
    entry.state = 'done';
    entry.doneAt = new Date().toISOString();
    entry.outcome = outcome;
    await this.entries.put(`${entry.deviceId}\u0000${entry.id}`, entry);
    if (entry.route) await this.via.del(`${entry.route.via}\u0000${entry.id}`);
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
