/**
 * A DM Gateway (GwMO 1.0/1.1): a DM client northbound to its parent (the DM server or a parent
 * gateway) with its own tree (standard objects plus the GwMO objects, GwMO-ADM-001), a DM server
 * southbound for proxy-mode devices and child gateways, a Package 0 forwarder for transparent
 * mode, and one association actor per device under a gateway root actor. A child gateway is just
 * a proxy-mode device of its parent that happens to be a gateway, so hierarchy is recursion.
 */
import { createActor, type Actor, type InspectionEvent } from 'xstate';
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { HMAC_HEADER, toAAuthType } from '../codec/auth.ts';
import { post, readBody } from '../transport/http.ts';
import { tlsFetch, type TlsClientConfig } from '../transport/tls.ts';
import { Counter, Gauge } from 'prom-client';
import { backoffDelay } from '../../adapters/link.ts';

import { GwError, describeError } from '../errors.ts';
import { accountNodes, encodeBootstrap } from '../codec/bootstrap.ts';
import { createLogger, type Logger } from '../log.ts';
import { deviceConfigSchema } from '../device/config.ts';
import { SimDevice, type CommandExecutor } from '../device/device.ts';
import { genericAlert } from '../session/client-session.ts';
import { prefixUri } from '../session/route.ts';
import { serverConfigSchema } from '../server/config.ts';
import { DEFERRED_RESULT, DmServer, INVENTORY_ALERTS, NOTIFICATION_CONTENT_TYPE } from '../server/server.ts';
import type { DeviceAlert, QueueEntry } from '../server/queue.ts';
import { openStore, type Section, type Store } from '../store/store.ts';
import { LOCAL, type DmTree } from '../tree/tree.ts';
import type { Command, Item, OperationCommand } from '../codec/model.ts';
import { cmdStatus } from '../session/common.ts';
import type { Reply } from '../tree/executor.ts';
import { gatewayMachine, isNoOpOnRecord } from '../../machines/gateway.ts';
import { associationMachine, type AssociationEvent, type AssociationInput } from '../../machines/association.ts';
import type { HubObserver } from '../inspect/hub.ts';
import { AssociationStore, type AssociationRecord } from './associations.ts';
import { MODES, associationConfigSchema, parentTls, southTrust, type AssociationConfig, type GatewayConfig } from './config.ts';
import { EDTRIGGER_ROOT, createEdTriggerPlugin, type TriggerRecord } from './edtrigger.ts';
import { DEVICES_ROOT, RECORDS_ROOT, SUMMARY_ROOT, createDevicesPlugin, createRecordsPlugin, createSummaryPlugin } from './inventory.ts';
import { GROUPS_ROOT, GroupStore, type GroupRecord } from './groups.ts';
import { FANOUT_COMPLETE_ALERT, FANOUT_ROOT, FanoutService } from './fanout.ts';
import { IMAGES_ROOT, IMAGE_DOWNLOAD_ALERT, ImageStore, type ImageRecord } from './images.ts';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createGatewayExecutor, deferredItems, notExecuted, type GatewayExecutor } from './proxy.ts';
import { createAdapter, type Adapter, type AdapterDevice } from '../../adapters/index.ts';
import { ADAPTATION_MOID, ADAPTATION_ROOT, AdaptationService, type AssociationSpec, type NetworkSettings } from './adaptation.ts';

/** Retries of the alert outbox towards the parent: 1 s doubling to 60 s, with jitter. */
const NORTH_BACKOFF = { initialMs: 1000, maxMs: 60_000, factor: 2 };

export { DEVICES_ROOT, RECORDS_ROOT, SUMMARY_ROOT };

/** Root of the GwMO objects in the gateway's tree (notes §1.1). */
export const GWMO_ROOT = './GwMO';
/** The new-device alert switch (notes §1.2). */
export const NEW_DEVICE_ALERT = './GwMO/Config/NewDeviceAlert';
/** Generic Alert type of a proxied command finished after a 202 (PROPOSED). */
export const DEFERRED_RESULT_ALERT = DEFERRED_RESULT;

/** An alert waiting to be delivered northbound (durable: store-and-forward). */
interface PendingAlert {
  items: Item[];
  correlator?: string;
  at: string;
}

/** Outbox classes: alerts are delivered before bulk results and kept longer. */
type OutboxClass = 'alert' | 'result';

/** Results of proxied commands finished after a 202 are bulk; everything else is an alert. */
function outboxClass(p: PendingAlert): OutboxClass {
  return p.items.length > 0 && p.items.every((it) => it.meta?.type === DEFERRED_RESULT_ALERT) ? 'result' : 'alert';
}

/** Options for creating a gateway in-process. */
export interface GatewayOptions {
  config: GatewayConfig;
  dataDir?: string;
  store?: Store;
  logger?: Logger;
  /** xstate inspection observer for every actor of the gateway (the live visualizer, src/inspect). */
  inspect?: (event: InspectionEvent) => void;
  /**
   * Adapters built by the caller, by name, used instead of building them from `config.adapters`
   * (an embedding application that owns its network objects; the benchmarks' prebuilt simulators).
   */
  adapters?: Adapter[];
}

/** A running DM gateway. */
export class Gateway {
  readonly config: GatewayConfig;
  readonly log: Logger;
  readonly associations: AssociationStore;
  readonly groups: GroupStore;
  /** Fanout jobs (GwMO-FORA). */
  fanout!: FanoutService;
  /** Image and configuration storage (GwMO-DCIS). */
  images!: ImageStore;
  /** `./GwMO/Adaptation`: the networks' settings, operations and server-configured associations. */
  adaptation!: AdaptationService;
  /** Where the image store keeps blobs when the gateway has no data directory (removed on stop). */
  private scratchDir: string | undefined;
  /** Devices deeper in the tree, by DeviceID: the key of the child gateway they sit behind. */
  private readonly descendants: Section<string>;
  private readonly descendantCache = new Map<string, string>();
  readonly north: SimDevice;
  readonly south: DmServer;
  readonly actor: Actor<typeof gatewayMachine>;
  /** Adaptation networks, by name (GwMO-AMode). */
  readonly adapters = new Map<string, Adapter>();
  private readonly store: Store;
  private readonly ownsStore: boolean;
  private readonly outbox: Section<PendingAlert>;
  /** Southbound entries answered 202 northbound, by entry id: their results go up as DeferredResult. */
  private readonly deferred: Section<{ deviceId: string; mount: string; original: Command }>;
  private outboxSeq = 0;
  /** Failed deliveries to the parent in a row (backoff of the outbox flusher). */
  private northFailures = 0;
  /** A retry towards the parent is scheduled (the parent was away at the last try). */
  private northRetryPending = false;
  /** Outbox entries dropped (TTL, size bound); set with the other metrics when services open. */
  private outboxDropped!: Counter<'class' | 'why'>;
  /** Entries in the outbox (kept in step with it; the size bound looks at the store only when this passes it). */
  private outboxCount = 0;
  /** The size bound in progress (serialised). */
  private bounding: Promise<void> = Promise.resolve();
  private flushing: Promise<void> | undefined;
  private flushAgain = false;
  private flushAlways = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** The inspection observer given at creation (also handed to fanout job actors). */
  private readonly inspect: ((event: InspectionEvent) => void) | undefined;
  /** An association actor's input from its record. */
  private readonly inputOf: (rec: AssociationRecord) => AssociationInput;
  /** Retires idle association actors to their records (`associationIdle`). */
  private sweepTimer: NodeJS.Timeout | undefined;

  private constructor(
    config: GatewayConfig,
    parts: { store: Store; ownsStore: boolean; associations: AssociationStore; groups: GroupStore; north: SimDevice; south: DmServer; log: Logger; inspect?: ((event: InspectionEvent) => void) | undefined; adapters?: Adapter[] | undefined },
  ) {
    this.config = config;
    this.store = parts.store;
    this.ownsStore = parts.ownsStore;
    this.associations = parts.associations;
    this.groups = parts.groups;
    this.north = parts.north;
    this.south = parts.south;
    this.log = parts.log;
    this.outbox = this.store.section<PendingAlert>('north-outbox');
    this.deferred = this.store.section('deferred');
    this.descendants = this.store.section('descendants');
    this.inspect = parts.inspect;
    // Associations are virtual actors (machines/gateway.ts): their records are the directory an
    // actor is activated from; the visualizer shows the records of those without a live actor.
    const onChange = (ch: Parameters<NonNullable<AssociationInput['onChange']>>[0]): void => void this.onAssociationChange(ch);
    const inputOf = (rec: AssociationRecord): AssociationInput => ({ deviceId: rec.deviceId, mode: rec.mode, status: rec.status, gateway: rec.gateway, maxFailures: 2, onChange });
    const feed = (parts.inspect as HubObserver | undefined)?.recordFeed?.({
      gatewayId: config.id,
      machine: associationMachine,
      list: () => this.associations.all().map((r) => ({ deviceId: r.deviceId, mode: r.mode, status: r.status, gateway: r.gateway })),
      get: (id) => {
        const r = this.associations.get(id);
        return r && { deviceId: r.deviceId, mode: r.mode, status: r.status, gateway: r.gateway };
      },
      live: (id) => this.actor.getSnapshot().context.associations.has(id),
    });
    if (feed) this.associations.onChange = feed;
    this.inputOf = inputOf;
    this.actor = createActor(gatewayMachine, {
      input: {
        gatewayId: config.id,
        directory: {
          get: (id) => {
            const r = this.associations.get(id);
            return r && inputOf(r);
          },
          ...(feed ? { liveness: (id: string) => feed(id) } : {}),
        },
        ...(parts.inspect ? { inspect: parts.inspect } : {}),
      },
      ...(parts.inspect ? { inspect: parts.inspect } : {}),
    });
    this.actor.start();
    for (const a of config.adapters) {
      if (this.adapters.has(a.name)) throw new GwError('CONFIG_ADAPTER', `two adapters are named "${a.name}"`);
      // Simulated devices download images from this gateway's store: they trust what the gateway
      // trusts and, simulated by the gateway, present its certificate where its listener asks for one.
      const trust = southTrust(config)?.ca;
      const own = config.tls && config.tls.clientAuth !== 'none' ? { cert: config.tls.cert, key: config.tls.key } : {};
      const given = parts.adapters?.find((x) => x.name === a.name);
      this.adapters.set(a.name, given ?? createAdapter(a.type === 'sim' && !a.ca && trust ? { ...a, ca: trust, ...own } : a));
    }
  }

  /** Opens the gateway's store and builds its parts (not yet listening). */
  static async create(opts: GatewayOptions): Promise<Gateway> {
    const c = opts.config;
    const dir = opts.dataDir ?? c.data;
    if (!opts.store && !dir) throw new GwError('CONFIG_DATA', 'the gateway needs a data directory (--data or `data:` in the config)');
    const store = opts.store ?? (await openStore(dir!));
    const log = opts.logger ?? createLogger('gateway').child(c.id);
    const associations = await AssociationStore.open(store);
    const groups = await GroupStore.open(store.section<GroupRecord>('groups'));
    // Late-bound: the executor needs the southbound server and the tree, which need each other's owner.
    let gateway: Gateway | undefined;
    const south = await DmServer.create({
      config: serverConfigSchema.parse({
        listen: c.listen,
        ...(c.tls ? { tls: c.tls } : {}),
        path: c.path,
        serverId: c.serverId,
        serverSecret: c.serverSecret,
        serverAuthType: c.serverAuthType,
        accounts: [],
      }),
      store,
      learnRoutes: false,
      metricsLabels: { gateway: c.id },
      logger: log.child('south'),
      ...(opts.inspect ? { inspect: opts.inspect } : {}),
      // The image store's downloads (LocalURL) and the transparent-mode relay share the southbound listener.
      extraRoute: async (req, res, url) => (await gateway!.images.handle(req, res, url)) || (c.relay ? relayHttp(c.relay, req, res, url, log, southTrust(c)) : false),
      onSessionEnded: (deviceId, reason) => gateway?.onSouthSessionEnded(deviceId, reason),
    });
    const north = await SimDevice.create({
      config: deviceConfigSchema.parse({
        deviceId: c.id,
        encoding: c.encoding,
        maxMsgSize: c.maxMsgSize,
        devInfo: { man: 'gwmo', mod: 'gwmo-gateway', dmV: '1.2', lang: 'en-US' },
        devDetail: { devTyp: 'gateway', oem: 'gwmo', fwV: '0.1.0', swV: '0.1.0', hwV: 'sim' },
        server: c.parent,
        notify: { listen: c.notify.listen, path: c.notify.path, advertise: true, ...(c.tls ? { tls: { ...c.tls, clientAuth: 'none' as const } } : {}) },
        requestTimeout: c.requestTimeout,
        nodes: [],
      }),
      store,
      logger: log.child('north'),
      executor: (cmds, msgRef, ctx) => gateway!.executor(cmds, msgRef, ctx),
    });
    gateway = new Gateway(c, { store, ownsStore: !opts.store, associations, groups, north, south, log, inspect: opts.inspect, adapters: opts.adapters });
    await gateway.openServices();
    await gateway.mountViews();
    return gateway;
  }

  /** The gateway's own DM tree. */
  get tree(): DmTree {
    return this.north.tree;
  }

  private executorImpl: CommandExecutor | undefined;
  private gatewayExecutorImpl: GatewayExecutor | undefined;
  /** Proxy forwarding, adaptation and the local tree; also the per-member runner of fanout jobs. */
  private get gatewayExecutor(): GatewayExecutor {
    this.gatewayExecutorImpl ??= createGatewayExecutor({
      tree: this.tree,
      associations: this.associations,
      south: this.south,
      timeoutMs: this.config.proxyTimeout * 1000,
      log: this.log,
      adapter: (network) => this.adapters.get(network),
      defer: async (entry, mount, original) => {
        await this.deferred.put(entry.id, { deviceId: entry.deviceId, mount, original: original as Command });
        // It may have finished while we were recording it.
        const now = await this.south.queue.get(entry.deviceId, entry.id);
        if (now?.state === 'done') await this.onSouthDone(now);
      },
    });
    return this.gatewayExecutorImpl;
  }

  /** Runs the parent's commands: the gateway executor, with Mode switches kept out of Atomic/Sequence. */
  private get executor(): CommandExecutor {
    this.executorImpl ??= this.withModeSwitch(this.gatewayExecutor.execute);
    return this.executorImpl;
  }

  /**
   * A Mode switch (Replace `.../Records/<x>/Mode`, MOO-001) has side effects the tree cannot roll
   * back (southbound account, actor, alerts), so it is refused inside Atomic or Sequence: it must
   * be a command of its own.
   */
  private withModeSwitch(inner: CommandExecutor): CommandExecutor {
    const re = /^(?:\.\/)?GwMO\/DeviceInventory\/Records\/[^/]+\/Mode$/;
    const isModeReplace = (c: OperationCommand): boolean => c.kind === 'Replace' && c.items.some((i) => re.test(i.target?.locURI ?? ''));
    const hidesModeChange = (c: OperationCommand): boolean =>
      'commands' in c && c.commands.some((x) => isModeReplace(x as OperationCommand) || hidesModeChange(x as OperationCommand));
    return async (commands, msgRef, ctx) => {
      const out: Reply[] = [];
      for (const c of commands) {
        if (hidesModeChange(c)) {
          this.log.warn('a Mode switch inside Atomic/Sequence is refused: send it as a command of its own');
          out.push(...(notExecuted(msgRef, c, 405) as Reply[]));
        } else out.push(...(await inner([c], msgRef, ctx)));
      }
      return out;
    };
  }

  /**
   * GwMO-MOO-001: the server switches a device's mode with `Replace .../Records/<x>/Mode` (0
   * transparent, 1 proxy, 2 adaptation); the association (record, southbound account, actor) follows.
   * A child gateway cannot be put in adaptation mode (MOO-002: 403); unknown values are 400.
   */
  private async switchMode(rec: AssociationRecord, value: string): Promise<number> {
    const mode = /^[012]$/.test(value) ? MODES[Number(value) as 0 | 1 | 2] : undefined;
    if (!mode || (rec.gateway && mode === 'adaptation')) {
      this.log.warn(`mode ${value} refused for ${rec.deviceId}`);
      return mode ? 403 : 400;
    }
    if (mode === rec.mode) return 200;
    const updated = (await this.associations.update(rec.deviceId, { mode }))!;
    this.activate(updated, true);
    this.log.info(`${updated.deviceId} switched from ${rec.mode} to ${mode} mode`);
    await this.inventoryAlert(updated, INVENTORY_ALERTS.changed);
    return 200;
  }

  /** A southbound entry finished: if the parent was told 202 for it, report the result (durably tracked). */
  private async onSouthDone(e: QueueEntry): Promise<void> {
    const d = await this.deferred.get(e.id);
    if (!d || d.deviceId !== e.deviceId) return;
    await this.deferred.del(e.id);
    // A child gateway that deferred too sends its own DeferredResult, which is relayed up unchanged.
    if (this.associations.get(e.deviceId)?.gateway && e.outcome?.status === 202) return;
    await this.queueAlert({ items: deferredItems(d.mount, d.original, e, DEFERRED_RESULT_ALERT), at: new Date().toISOString() });
  }

  /** Starts both endpoints, restores associations, and reports new ones to the parent. */
  async start(): Promise<void> {
    this.south.queue.events.on('done', (e: QueueEntry) => void this.onSouthDone(e).catch((err: unknown) => this.log.error(`deferred result lost: ${describeError(err)}`)));
    await this.south.start();
    await this.north.start();
    // Continue after the highest pending key, so alerts keep their order across restarts.
    const kept = await this.outbox.entries();
    this.outboxSeq = kept.reduce((m, [k]) => Math.max(m, Number.parseInt(k.slice(0, 10), 10) || 0), 0);
    this.outboxCount = kept.length;
    // Results that came in while the gateway was down (or between a 202 and a crash).
    for (const [id, d] of await this.deferred.entries()) {
      const e = await this.south.queue.get(d.deviceId, id);
      if (e?.state === 'done') await this.onSouthDone(e);
    }
    await this.installGwmoObjects();
    const plugin = await createEdTriggerPlugin(this.store.section<TriggerRecord>('edtrigger'), (id, p0) => this.deliverPackage0(id, p0));
    await this.tree.mount(EDTRIGGER_ROOT, plugin);
    // Associations: restored from their records, then those provisioned in the config.
    // Records only: an actor is activated when an event needs one (a child gateway's at once).
    for (const rec of this.associations.all()) this.activate(rec, rec.gateway);
    this.sweepTimer = setInterval(() => this.actor.send({ type: 'association.sweep' }), this.config.associationIdle * 1000);
    this.sweepTimer.unref();
    // The config provisions devices once; afterwards the records (changed by the server: mode
    // switches, removals, new credentials) are the truth and are not overwritten at each start.
    const provisioned = this.store.section<boolean>('provisioned');
    for (const cfg of this.config.devices) {
      if (await provisioned.get(cfg.deviceId)) continue;
      if (!this.associations.get(cfg.deviceId)) await this.associate(cfg);
      await provisioned.put(cfg.deviceId, true);
    }
    this.south.queue.events.on('alert', (a: DeviceAlert) => void this.onSouthAlert(a));
    await this.adaptation.startAll();
    await this.fanout.resume();
    this.log.info(`gateway ${this.config.id} running`, { south: this.south.dmUrl, north: this.config.parent.url, devices: this.associations.all().length });
    // Always call in at start: the parent learns where this gateway listens now (its Package 0
    // address may have changed across a restart) and gets any alerts kept from before. Not awaited:
    // that session may carry commands for devices that are still coming up.
    void this.flushAlerts(true);
  }

  /** URL of the southbound DM endpoint (what proxy-mode devices and child gateways use). */
  get southUrl(): string {
    return this.south.dmUrl;
  }

  /** Stops everything and closes the store. */
  /** Stops the gateway; with `drain` (SIGTERM, Ctrl-C) its devices' open sessions may finish first (`limits.drainTimeout`). */
  async stop(opts: { drain?: boolean } = {}): Promise<void> {
    if (this.stopped) return;
    if (opts.drain) await this.south.drainSessions();
    this.stopped = true;
    // Proxied commands still waiting for a device end now (as 202/461), so the northbound session
    // carrying them finishes at once instead of sitting out proxyTimeout.
    this.south.queue.close();
    clearTimeout(this.retryTimer);
    clearInterval(this.sweepTimer);
    await this.flushing?.catch(() => undefined);
    await this.fanout.stop();
    await this.images.close();
    if (this.scratchDir) await rm(this.scratchDir, { recursive: true, force: true });
    for (const a of this.adapters.values()) await a.stop().catch((err: unknown) => this.log.warn(`adapter ${a.name} did not stop cleanly: ${describeError(err)}`));
    this.actor.send({ type: 'stop' });
    this.actor.stop();
    await this.north.stop();
    await this.south.stop();
    if (this.ownsStore) await this.store.close();
  }

  /**
   * Associates a device (or child gateway) with the gateway (HLF-003: a device provisioned with its
   * credentials becomes manageable). New associations are announced to the parent with DeviceAttached.
   */
  async associate(cfg: AssociationConfig, extra: { protocol?: string; man?: string; mod?: string } = {}): Promise<AssociationRecord> {
    let { record, created } = await this.associations.upsert(cfg, extra.protocol ? { protocol: extra.protocol } : {});
    if (created && (extra.man || extra.mod)) record = (await this.associations.update(record.deviceId, { ...(extra.man ? { man: extra.man } : {}), ...(extra.mod ? { mod: extra.mod } : {}) }))!;
    this.activate(record, true);
    if (created) {
      this.log.info(`associated ${record.deviceId} as ${record.key} (${record.mode}${record.gateway ? ', child gateway' : ''})`);
      await this.inventoryAlert(record, INVENTORY_ALERTS.attached);
    }
    return record;
  }

  /** Starts an adaptation network with its events wired to the inventory (AMode-001). */
  private async startAdapter(adapter: Adapter): Promise<void> {
    await adapter.start({
      attached: (dev) => void this.onAdapterAttached(adapter, dev).catch((err: unknown) => this.log.error(`cannot associate ${dev.deviceId}: ${describeError(err)}`)),
      detached: (address) => this.onAdapterDetached(adapter, address),
      link: (state, detail) => {
        this.adaptation.linkDetail.set(adapter.name, detail ?? '');
        const line = `${adapter.name} link ${state}${detail ? `: ${detail}` : ''}`;
        if (state === 'backoff') this.log.warn(line);
        else this.log.info(line);
      },
    });
  }

  /** Stops an adaptation network: its devices are detached (not forgotten). */
  private async stopAdapter(adapter: Adapter): Promise<void> {
    await adapter.stop();
    for (const rec of this.associations.all()) {
      if (rec.mode === 'adaptation' && rec.network === adapter.name) this.observe(rec.deviceId, { type: 'detach' });
    }
  }

  /** Devices adapters reported, waiting to be associated in a batch. */
  private attachQueue: { adapter: Adapter; dev: AdapterDevice }[] = [];
  private attaching: Promise<void> | undefined;

  /**
   * An adapter found a device (AMode-001, notes §2.3 step 1): a new one is associated in adaptation
   * mode (and announced); a known one is marked attached. The adapter's word is enough: devices on
   * a building network are accepted automatically. Reports are handled in batches (one LevelDB
   * write and one alert per batch), so a network of 100,000 devices attaches in seconds.
   */
  private onAdapterAttached(adapter: Adapter, dev: AdapterDevice): Promise<void> {
    this.attachQueue.push({ adapter, dev });
    this.attaching ??= (async () => {
      try {
        while (this.attachQueue.length && !this.stopped) {
          const batch = this.attachQueue.splice(0, 5000);
          await this.attachBatch(batch);
        }
      } finally {
        this.attaching = undefined;
      }
    })();
    return this.attaching;
  }

  /** Waits until every device reported so far by the adapters is associated. */
  async settled(): Promise<void> {
    while (this.attaching) await this.attaching;
  }

  private async attachBatch(batch: { adapter: Adapter; dev: AdapterDevice }[]): Promise<void> {
    const fresh: { adapter: Adapter; dev: AdapterDevice }[] = [];
    for (const { adapter, dev } of batch) {
      const rec = this.associations.get(dev.deviceId);
      if (!rec) {
        fresh.push({ adapter, dev });
        continue;
      }
      if (rec.mode === 'adaptation') {
        // A device reported again may say more about itself (a BLE peripheral's model, read once
        // connected, replaces the advertised name): keep the record current.
        const change: Partial<AssociationRecord> = {};
        if (rec.address !== dev.address || rec.network !== adapter.name) Object.assign(change, { address: dev.address, network: adapter.name });
        if (dev.man && dev.man !== rec.man) change.man = dev.man;
        if (dev.mod && dev.mod !== rec.mod) change.mod = dev.mod;
        if (Object.keys(change).length) await this.associations.update(rec.deviceId, change);
      }
      this.observe(rec.deviceId, { type: 'session.ok' });
    }
    const created = await this.associations.addMany(
      fresh.map(({ adapter, dev }) => ({
        cfg: { deviceId: dev.deviceId, mode: 'adaptation' as const, gateway: false, protocol: adapter.name, address: dev.address, authType: 'syncml:auth-md5' as const },
        protocol: adapter.protocol,
        ...(dev.man ? { man: dev.man } : {}),
        ...(dev.mod ? { mod: dev.mod } : {}),
        status: 'attached' as const,
      })),
    );
    // Found attached and recorded so: records at rest, no actor until one is needed.
    for (const rec of created) this.activate(rec, false);
    if (created.length) {
      this.log.info(`associated ${created.length} adaptation device(s)`, { first: created[0]!.deviceId });
      if (await this.newDeviceAlertOn()) {
        await this.queueAlert({ items: created.map((r) => this.inventoryAlertItem(r, INVENTORY_ALERTS.attached)), at: new Date().toISOString() });
      }
    }
  }

  /** An adapter lost a device: it is detached (and reported so), not forgotten. */
  private onAdapterDetached(adapter: Adapter, address: string): void {
    const rec = this.associations.byAddress(adapter.name, address);
    if (rec) this.observe(rec.deviceId, { type: 'detach' });
  }

  /**
   * Makes an association manageable: its southbound account and, with `live`, its actor now
   * (a new or changed association); otherwise the actor is activated by the first event that needs it.
   */
  private activate(rec: AssociationRecord, live: boolean): void {
    if (rec.mode === 'proxy' && rec.username && rec.secret) {
      this.south.addAccount({
        deviceId: rec.deviceId,
        username: rec.username,
        secret: rec.secret,
        authType: rec.authType,
        gateway: rec.gateway,
        ...(rec.notify ? { notify: rec.notify } : {}),
        clientNonce: '',
        serverNonce: '',
      });
    } else this.south.removeAccount(rec.deviceId);
    if (live) this.actor.send({ type: 'association.add', input: this.inputOf(rec) });
  }

  /**
   * What a session or fanout leg learnt about a device's reachability, for its association actor.
   * Checked against the record first: an outcome that changes nothing (a success from an attached
   * device) costs no actor and no event, which is what lets a fanout over 100,000 members report
   * without one gateway transition each.
   */
  observe(deviceId: string, event: AssociationEvent): void {
    if (!this.actor.getSnapshot().context.associations.has(deviceId)) {
      const rec = this.associations.get(deviceId);
      if (!rec || isNoOpOnRecord(rec, event)) return;
    }
    this.actor.send({ type: 'association.event', deviceId, event });
  }

  private async onAssociationChange(ch: { deviceId: string; status?: 'pending' | 'attached' | 'detached'; mode?: AssociationRecord['mode'] }): Promise<void> {
    if (this.stopped) return; // shutting down: the store may already be closed
    try {
      const now = new Date().toISOString();
      const prev = this.associations.get(ch.deviceId);
      const rec = await this.associations.update(ch.deviceId, {
        ...(ch.status ? { status: ch.status, lastSeen: now, ...(prev?.firstSeen ? {} : { firstSeen: now }) } : {}),
        ...(ch.mode ? { mode: ch.mode } : {}),
      });
      if (!rec) return;
      if (ch.status === 'attached' && prev?.status === 'detached') {
        // Back again: the parent marks the route attached (and re-reads its mode).
        await this.inventoryAlert(rec, INVENTORY_ALERTS.attached);
      }
      if (ch.status === 'detached') {
        // Detached is always reported (notes §1.3).
        await this.queueAlert({ items: [this.inventoryAlertItem(rec, INVENTORY_ALERTS.detached)], at: now });
      }
    } catch (err) {
      if (!this.stopped) this.log.error(`cannot record the change of ${ch.deviceId}: ${describeError(err)}`);
    }
  }

  private onSouthSessionEnded(deviceId: string, reason: string): void {
    if (!this.associations.get(deviceId)) return;
    const ok = reason === 'completed';
    this.observe(deviceId, { type: ok ? 'session.ok' : 'session.failed' });
    if (ok) void this.recordIdentity(deviceId);
  }

  /** An inventory alert item (notes §1.3): Source = the record, Data = the DeviceID. */
  /**
   * Sends an inventory alert. Attached and Changed go only while `./GwMO/Config/NewDeviceAlert` is
   * true (the server switches it, DI "new-device alert on/off"); Detached always goes (notes §1.3).
   */
  private async inventoryAlert(rec: AssociationRecord, type: string): Promise<void> {
    if (type !== INVENTORY_ALERTS.detached && !(await this.newDeviceAlertOn())) return;
    await this.queueAlert({ items: [this.inventoryAlertItem(rec, type)], at: new Date().toISOString() });
  }

  /** The server's new-device alert switch (notes §1.2). */
  private async newDeviceAlertOn(): Promise<boolean> {
    return !this.tree.hasLocal(NEW_DEVICE_ALERT) || (await this.tree.get(NEW_DEVICE_ALERT, LOCAL)).data === 'true';
  }

  /**
   * Caches what the device reported in its Package 1 in its inventory record: its identity (Man,
   * Mod) and how it can be reached (its notification address on this gateway's network, and a
   * publicly routable one when it has one: the record's NotifyAddress and PublicAddress).
   */
  private async recordIdentity(deviceId: string): Promise<void> {
    const rec = this.associations.get(deviceId);
    const info = (await this.south.device(deviceId))?.devInfo;
    if (!rec || !info || this.stopped) return;
    const change: Partial<AssociationRecord> = {};
    const man = info['Man'];
    const mod = info['Mod'];
    const reported = info['Ext/NotifyURI'];
    const pub = info['Ext/PublicNotifyURI'];
    if (man !== undefined && man !== rec.man) change.man = man;
    if (mod !== undefined && mod !== rec.mod) change.mod = mod;
    if (reported !== undefined && reported !== rec.reportedNotify) change.reportedNotify = reported;
    if (pub !== undefined && /^https?:\/\//.test(pub) && pub !== rec.publicNotify) change.publicNotify = pub;
    if (Object.keys(change).length) await this.associations.update(deviceId, change);
  }

  private inventoryAlertItem(rec: AssociationRecord, type: string): Item {
    return { source: { locURI: `${RECORDS_ROOT}/${rec.key}` }, meta: { type, format: 'chr' }, data: rec.deviceId };
  }

  /**
   * Alerts from a child gateway (its inventory, deferred results) are relayed to the parent with
   * their Source moved under the child's mount, so the server sees every level (notes §2.4).
   */
  private async onSouthAlert(a: DeviceAlert): Promise<void> {
    const rec = this.associations.get(a.deviceId);
    // Generic alerts of proxy-mode devices (e.g. an async Exec's completion) and of child gateways go up.
    if (!rec || rec.mode !== 'proxy' || a.code !== '1226') return;
    if (rec.gateway) {
      // A child's sub-job ended: its report is merged by the job that created it, not relayed.
      const done = a.items.filter((it) => it.meta?.type === FANOUT_COMPLETE_ALERT);
      for (const it of done) this.fanout.onChildComplete(it.source?.locURI ?? '');
      if (done.length === a.items.length) return;
      await this.learnDescendants(rec, a.items);
    }
    const mount = `${DEVICES_ROOT}/${rec.key}`;
    const items = a.items.map((it) => (it.source ? { ...it, source: { ...it.source, locURI: prefixUri(mount, it.source.locURI) } } : it));
    await this.queueAlert({ items, ...(a.correlator !== undefined ? { correlator: a.correlator } : {}), at: a.at });
  }

  /**
   * Devices announced by a child gateway (its DeviceAttached/Detached alerts, relayed from any depth)
   * are remembered with the child they sit behind, so a fanout naming them goes to that child.
   */
  private async learnDescendants(child: AssociationRecord, items: Item[]): Promise<void> {
    const ops: [string, string | undefined][] = [];
    for (const it of items) {
      const id = typeof it.data === 'string' ? it.data : undefined;
      if (!id) continue;
      if (it.meta?.type === INVENTORY_ALERTS.attached || it.meta?.type === INVENTORY_ALERTS.changed) {
        if (this.descendantCache.get(id) === child.key) continue;
        this.descendantCache.set(id, child.key);
        ops.push([id, child.key]);
      }
      // Detached is a status, not a move: the device stays routable through that child.
    }
    if (ops.length) await this.descendants.batch(ops);
  }

  /**
   * The next batch to deliver: expired entries dropped first (logged, counted), then alerts before
   * results, each class in arrival order (so a device's alerts keep their order).
   */
  private async deliverable(): Promise<[string, PendingAlert][]> {
    const all = await this.outbox.entries();
    const now = Date.now();
    const ttl = this.config.outbox.ttl;
    const expired: string[] = [];
    const byClass: Record<OutboxClass, [string, PendingAlert][]> = { alert: [], result: [] };
    for (const e of all) {
      const cls = outboxClass(e[1]);
      if (now - Date.parse(e[1].at) > ttl[cls] * 1000) {
        expired.push(e[0]);
        this.outboxDropped.inc({ class: cls, why: 'expired' });
      } else byClass[cls].push(e);
    }
    // Kept in step by increments and decrements only: a snapshot count would race with puts.
    this.outboxCount = Math.max(0, this.outboxCount - expired.length);
    if (expired.length) {
      await this.outbox.batch(expired.map((k) => [k, undefined]));
      this.log.warn(`outbox: ${expired.length} entr${expired.length === 1 ? 'y' : 'ies'} older than their TTL dropped (alert ${ttl.alert} s, result ${ttl.result} s)`);
    }
    return [...byClass.alert, ...byClass.result].slice(0, this.config.outbox.batch);
  }

  /** Keeps the outbox within `outbox.maxEntries`: oldest results first; an alert only with an error log. */
  private boundOutbox(): Promise<void> {
    // One at a time: concurrent bounds would pick the same oldest entries and miscount.
    const next = this.bounding.then(() => this.boundOutboxNow());
    this.bounding = next.catch(() => undefined);
    return next;
  }

  private async boundOutboxNow(): Promise<void> {
    if (this.outboxCount <= this.config.outbox.maxEntries) return;
    const max = this.config.outbox.maxEntries;
    const all = await this.outbox.entries();
    if (all.length <= max) {
      this.outboxCount = Math.min(this.outboxCount, all.length);
      return;
    }
    const over = all.length - max;
    const results = all.filter(([, p]) => outboxClass(p) === 'result').slice(0, over);
    const alerts = all.filter(([, p]) => outboxClass(p) === 'alert').slice(0, over - results.length);
    await this.outbox.batch([...results, ...alerts].map(([k]) => [k, undefined]));
    this.outboxCount = Math.max(0, this.outboxCount - results.length - alerts.length);
    if (results.length) {
      this.outboxDropped.inc({ class: 'result', why: 'full' }, results.length);
      this.log.warn(`outbox full (${max} entries): the ${results.length} oldest result(s) dropped`);
    }
    if (alerts.length) {
      this.outboxDropped.inc({ class: 'alert', why: 'full' }, alerts.length);
      this.log.error(`outbox full (${max} entries) of alerts: the ${alerts.length} oldest alert(s) dropped`, { first: alerts[0]![1].at });
    }
  }

  /** Stores an alert for the parent, then tries to deliver everything pending. */
  private async queueAlert(p: PendingAlert): Promise<void> {
    const key = String(++this.outboxSeq).padStart(10, '0') + '-' + Date.now().toString(36);
    await this.outbox.put(key, p);
    if (++this.outboxCount > this.config.outbox.maxEntries) await this.boundOutbox();
    // While the parent is known to be away, the retry timer delivers it: a new alert does not
    // hammer the parent with an attempt of its own (nor grow the backoff).
    if (this.northRetryPending) return;
    // Not awaited: this may run inside a northbound session (an Exec from the parent), and the
    // delivering session can only start after that one ends.
    void this.flushAlerts();
  }

  /**
   * Delivers pending alerts in client-initiated sessions; retried later on failure. One flusher at
   * a time: callers that arrive while it runs only ask it to go round once more.
   */
  async flushAlerts(always = false): Promise<void> {
    if (this.stopped) return;
    this.flushAgain = true;
    this.flushAlways ||= always;
    if (this.flushing) return this.flushing;
    const run = (async () => {
      while (this.flushAgain && !this.stopped) {
        // A failing store (full disk) must not end the process with an unhandled rejection: the
        // entries stay where they are and the next try comes with the backoff.
        try {
          this.flushAgain = false;
          const force = this.flushAlways;
          this.flushAlways = false;
          const pending = await this.deliverable();
          if (!pending.length && !force) continue;
          if (pending.length >= this.config.outbox.batch) this.flushAgain = true; // more after this batch
          const alerts = pending.map(([, p]) => genericAlert(p.items, p.correlator));
          const r = await this.north.connect({ alerts }).catch((err: unknown) => ({ ok: false, reason: describeError(err) }));
          if (r.ok) {
            if (pending.length) await this.outbox.batch(pending.map(([k]) => [k, undefined]));
            this.outboxCount = Math.max(0, this.outboxCount - pending.length);
            this.northFailures = 0;
            continue;
          }
          // Parent away: try again with exponential backoff and jitter (a building's gateways must
          // not all hit a recovering server at the same instant).
          const delay = backoffDelay(NORTH_BACKOFF, ++this.northFailures);
          this.log.warn(`cannot reach the parent (${r.reason}); ${pending.length} alert(s) kept, next try in ${delay} ms`);
          clearTimeout(this.retryTimer);
          if (!this.stopped) {
            this.northRetryPending = true;
            this.retryTimer = setTimeout(() => {
              this.northRetryPending = false;
              void this.flushAlerts(force);
            }, delay).unref();
          }
          return;
        } catch (err) {
          const delay = backoffDelay(NORTH_BACKOFF, ++this.northFailures);
          this.log.error(`outbox: ${describeError(err)}; next try in ${delay} ms`);
          clearTimeout(this.retryTimer);
          if (!this.stopped) {
            this.northRetryPending = true;
            this.retryTimer = setTimeout(() => {
              this.northRetryPending = false;
              void this.flushAlerts();
            }, delay).unref();
          }
          return;
        }
      }
    })();
    this.flushing = run;
    try {
      await run;
    } finally {
      if (this.flushing === run) this.flushing = undefined;
    }
  }

  /** Transparent mode: pushes a Package 0 to a device untouched (EDTrigger Exec). */
  private async deliverPackage0(deviceId: string, p0: Uint8Array): Promise<number> {
    const rec = this.associations.get(deviceId);
    if (!rec) return 404;
    if (rec.mode !== 'transparent') return 406;
    // The provisioned address, or the one the device reported in its last session with this gateway.
    const url = rec.notify ?? (await this.south.device(deviceId))?.notifyUrl;
    if (!url) {
      this.log.warn(`no notification address for transparent device ${deviceId}`);
      return 404;
    }
    try {
      const res = await tlsFetch(url, { method: 'POST', body: p0, headers: { 'content-type': NOTIFICATION_CONTENT_TYPE }, signal: AbortSignal.timeout(5000) }, southTrust(this.config));
      await res.arrayBuffer();
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      this.log.info(`Package 0 forwarded to ${deviceId}`, { url });
      this.observe(deviceId, { type: 'session.ok' });
      return 200;
    } catch (err) {
      this.log.warn(`Package 0 to ${deviceId} failed: ${describeError(err)}`);
      this.observe(deviceId, { type: 'session.failed' });
      return 500;
    }
  }

  /** Creates the GwMO objects of the gateway's tree (ACLs give the parent server full rights, notes §1.10). */
  private async installGwmoObjects(): Promise<void> {
    const acl = this.gwmoAcl;
    const ensure = async (uri: string, opts: { format: string; data?: string; acl?: string; type?: string }): Promise<void> => {
      if (this.tree.hasLocal(uri)) {
        if (opts.data !== undefined && opts.format !== 'node') await this.tree.replace(uri, { format: opts.format, data: opts.data }, LOCAL);
        return;
      }
      await this.tree.add(
        uri,
        {
          format: opts.format,
          ...(opts.data !== undefined ? { data: opts.data } : {}),
          ...(opts.acl !== undefined ? { acl: opts.acl } : {}),
          ...(opts.type ? { type: opts.type } : {}),
          access: opts.format === 'node' ? ['Get', 'Add', 'Delete', 'Replace'] : ['Get'],
        },
        LOCAL,
      );
    };
    await ensure(GWMO_ROOT, { format: 'node', acl });
    await ensure(`${GWMO_ROOT}/Config`, { format: 'node', type: 'urn:oma:mo:oma-gwmo-gwconfig:1.1' });
    await ensure(`${GWMO_ROOT}/Config/GatewayID`, { format: 'chr', data: this.config.id });
    await ensure(`${GWMO_ROOT}/Config/SupportedModes`, { format: 'chr', data: this.adapters.size ? 'Transparent/Proxy/Adaptation' : 'Transparent/Proxy' });
    await ensure(`${GWMO_ROOT}/Config/DefaultMode`, { format: 'int', data: '1' });
    await ensure(`${GWMO_ROOT}/Config/SouthServerID`, { format: 'chr', data: this.config.serverId });
    await ensure(`${GWMO_ROOT}/Config/SouthServerURI`, { format: 'chr', data: this.south.dmUrl });
    await ensure(`${GWMO_ROOT}/DeviceInventory`, { format: 'node', type: 'urn:oma:mo:oma-gwmo-deviceinventory:1.1' });
    if (!this.tree.hasLocal(NEW_DEVICE_ALERT)) {
      await this.tree.add(NEW_DEVICE_ALERT, { format: 'bool', data: String(this.config.newDeviceAlert), access: ['Get', 'Replace'] }, LOCAL);
    }
    // Device groups (GwMO-Group-001/002, notes §1.4): the server creates, changes and deletes them
    // with plain Add/Replace/Delete (./GwMO's ACL gives it the rights).
    await ensure(`${GWMO_ROOT}/DeviceInventory/Operations`, { format: 'node' });
    for (const op of ['Associate', 'Remove', 'Bootstrap']) {
      const uri = `${GWMO_ROOT}/DeviceInventory/Operations/${op}`;
      if (!this.tree.hasLocal(uri)) await this.tree.add(uri, { format: 'null', access: ['Exec'] }, LOCAL);
    }
    this.tree.onExec(`${GWMO_ROOT}/DeviceInventory/Operations/Associate`, (req) => this.execAssociate(req.data));
    this.tree.onExec(`${GWMO_ROOT}/DeviceInventory/Operations/Remove`, (req) => this.execRemove(req.data));
    this.tree.onExec(`${GWMO_ROOT}/DeviceInventory/Operations/Bootstrap`, (req) => this.execBootstrap(req.data));
  }

  /** Opens the fanout jobs, the image store and the descendant index. */
  private async openServices(): Promise<void> {
    for (const [id, key] of await this.descendants.entries()) this.descendantCache.set(id, key);
    // Gateway figures on its southbound server's /metrics: fanout members, outbox depth, inventory.
    const reg = this.south.metrics.registry;
    const members = new Counter({ name: 'gwmo_fanout_members_total', help: 'fanout member results recorded, by result', labelNames: ['result'], registers: [reg] });
    // Bound children: a fanout records 100,000 results; resolving the labels each time costs more than the count.
    const memberOk = members.labels({ result: 'ok' });
    const memberUnreachable = members.labels({ result: 'unreachable' });
    const memberFailed = members.labels({ result: 'failed' });
    this.outboxDropped = new Counter({ name: 'gwmo_gateway_outbox_dropped_total', help: 'outbox entries dropped, by class (alert, result) and why (expired, full)', labelNames: ['class', 'why'], registers: [reg] });
    const depth = (): number => this.outboxCount;
    new Gauge({
      name: 'gwmo_gateway_outbox_depth',
      help: 'alerts waiting for the parent (durable north outbox)',
      registers: [reg],
      collect() {
        this.set(depth());
      },
    });
    const associations = this.associations;
    new Gauge({
      name: 'gwmo_gateway_associations',
      help: 'associations in the inventory, by status',
      labelNames: ['status'],
      registers: [reg],
      collect() {
        this.reset();
        for (const r of associations.all()) this.inc({ status: r.status });
      },
    });
    this.fanout = await FanoutService.open({
      ...(this.inspect ? { inspect: this.inspect } : {}),
      onMemberResult: (status) => (status < 300 ? memberOk : status === 461 ? memberUnreachable : memberFailed).inc(),
      store: this.store,
      associations: this.associations,
      groups: this.groups,
      executor: () => this.gatewayExecutor,
      log: this.log.child('fanout'),
      defaults: this.config.fanout,
      alert: (items, correlator) => this.queueAlert({ items, ...(correlator !== undefined ? { correlator } : {}), at: new Date().toISOString() }),
      observe: (id, event) => this.observe(id, event),
      behindChild: (id) => this.descendantCache.get(id),
      image: (name) => {
        const url = this.images.localUrl(name);
        const hash = this.images.get(name)?.hash;
        return url ? { url, ...(hash ? { hash } : {}) } : undefined;
      },
    });
    this.adaptation = await AdaptationService.open(this.adapters, this.store.section<AssociationSpec>('adaptation-assoc'), this.store.section<NetworkSettings>('adaptation-settings'), {
      start: (a) => this.startAdapter(a),
      stop: (a) => this.stopAdapter(a),
      attached: (network) => this.associations.all().filter((r) => r.network === network && r.status === 'attached').length,
      forget: async (id) => void (await this.forget(id)),
      log: this.log.child('adaptation'),
    });
    const ic = this.config.images;
    let dir = ic.dir ?? (this.store.location ? join(this.store.location, 'images') : undefined);
    if (!dir) dir = this.scratchDir = await mkdtemp(join(tmpdir(), 'gwmo-images-'));
    this.images = await ImageStore.open({
      dir,
      records: this.store.section<ImageRecord>('images'),
      settings: this.store.section('image-settings'),
      defaults: { enabled: ic.enabled, dedup: ic.dedup, quotaBytes: ic.quotaBytes, urlLifetime: ic.urlLifetime },
      baseUrl: () => this.south.url,
      tls: parentTls(this.config),
      log: this.log.child('images'),
      onDownloadDone: (name, status, correlator) =>
        void this.queueAlert({
          items: [{ source: { locURI: `${IMAGES_ROOT}/Images/${name}` }, meta: { type: IMAGE_DOWNLOAD_ALERT, format: 'int' }, data: String(status) }],
          ...(correlator !== undefined ? { correlator } : {}),
          at: new Date().toISOString(),
        }),
    });
  }

  /** Mounts the views of the records: inventory, summary, device mount points, groups, fanout jobs, images. */
  private async mountViews(): Promise<void> {
    if (!this.tree.hasLocal(GWMO_ROOT)) await this.tree.add(GWMO_ROOT, { format: 'node', acl: this.gwmoAcl, access: ['Get', 'Add', 'Delete', 'Replace'] }, LOCAL);
    if (!this.tree.hasLocal(`${GWMO_ROOT}/DeviceInventory`)) {
      await this.tree.add(`${GWMO_ROOT}/DeviceInventory`, { format: 'node', type: 'urn:oma:mo:oma-gwmo-deviceinventory:1.1', access: ['Get'] }, LOCAL);
    }
    // The inventory and the mount points are views of the association records (inventory.ts).
    await this.dropLocalSubtrees();
    await this.tree.mount(
      RECORDS_ROOT,
      createRecordsPlugin({
        associations: this.associations,
        groupsOf: (id) => this.groupsOf(id),
        switchMode: (rec, v) => this.switchMode(rec, v),
        remove: (rec) => this.forget(rec.deviceId),
      }),
    );
    await this.tree.mount(SUMMARY_ROOT, createSummaryPlugin(this.associations));
    await this.tree.mount(
      DEVICES_ROOT,
      createDevicesPlugin({
        associations: this.associations,
        adapter: (rec) => (rec.network ? this.adapters.get(rec.network) : undefined),
        setAcl: async (rec, acl) => void (await this.associations.update(rec.deviceId, { acl })),
      }),
    );
    if (this.tree.hasLocal(GROUPS_ROOT)) await this.tree.delete(GROUPS_ROOT, LOCAL); // pre-plugin data
    await this.tree.mount(FANOUT_ROOT, this.fanout.plugin(), { type: 'urn:oma:mo:oma-gwmo-fanout:1.1' });
    await this.tree.mount(IMAGES_ROOT, this.images.plugin(), { type: 'urn:oma:mo:oma-gwmo-imageinventory:1.1' });
    await this.tree.mount(ADAPTATION_ROOT, this.adaptation.plugin(), { type: ADAPTATION_MOID });
    await this.tree.mount(GROUPS_ROOT, this.groups.plugin((id) => this.groups.resolve(id, this.associations.all()).members.length), { type: 'urn:oma:mo:oma-gwmo-group:1.1' });
  }

  /** ACL of ./GwMO: the parent server has every right (notes §1.10). */
  private get gwmoAcl(): string {
    const srv = this.config.parent.serverId;
    return `Get=${srv}&Replace=${srv}&Add=${srv}&Delete=${srv}&Exec=${srv}`;
  }

  /**
   * Data directories written before the inventory became a view held records and mount nodes as
   * tree nodes: mount-node ACLs move into the records, then the nodes go (mounts need empty points).
   */
  private async dropLocalSubtrees(): Promise<void> {
    if (this.tree.hasLocal(DEVICES_ROOT)) {
      for (const key of (await this.tree.get(DEVICES_ROOT, LOCAL)).data?.split('/').filter(Boolean) ?? []) {
        const rec = this.associations.byKey(key);
        const acl = await this.tree.getProperty(`${DEVICES_ROOT}/${key}`, 'ACL', LOCAL);
        if (rec && acl && rec.acl === undefined) await this.associations.update(rec.deviceId, { acl });
        await this.tree.delete(`${DEVICES_ROOT}/${key}`, LOCAL);
      }
    }
    for (const uri of [RECORDS_ROOT, SUMMARY_ROOT]) {
      if (this.tree.hasLocal(uri) && (await this.tree.get(uri, LOCAL)).data) await this.tree.delete(uri, LOCAL);
    }
  }

  /** GroupIDs that list a device as a member (the inventory's derived Groups leaf). */
  private groupsOf(deviceId: string): string[] {
    return this.groups.groupsOf(deviceId);
  }

  /**
   * HLF-003 / PMode-003 (PROPOSED interface, docs/gateway.md): the server provisions a new device
   * with its credentials; Data is a query string, e.g.
   * `DeviceID=IMEI:1&Mode=proxy&AAuthName=dev1&AAuthSecret=s3cret&AAuthType=md5`.
   */
  private async execAssociate(data: string | Uint8Array | undefined): Promise<{ status: number; data?: string }> {
    const q = new URLSearchParams(typeof data === 'string' ? data : Buffer.from(data ?? new Uint8Array()).toString('utf8'));
    const parsed = associationConfigSchema.safeParse({
      deviceId: q.get('DeviceID') ?? undefined,
      mode: (q.get('Mode') ?? 'proxy').toLowerCase(),
      gateway: q.get('Gateway') === '1' || q.get('ComponentType') === '1',
      ...(q.get('AAuthName') ? { username: q.get('AAuthName') } : {}),
      ...(q.get('AAuthSecret') ? { secret: q.get('AAuthSecret') } : {}),
      ...(q.get('AAuthType') ? { authType: q.get('AAuthType') } : {}),
      ...(q.get('Notify') ? { notify: q.get('Notify') } : {}),
      ...(q.get('ServerID') ? { serverId: q.get('ServerID') } : {}),
    });
    if (!parsed.success) {
      this.log.warn(`Associate refused: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
      return { status: 400 };
    }
    const rec = await this.associate(parsed.data);
    return { status: 200, data: rec.key };
  }

  /**
   * HLF-005 / PMode-002 (PROPOSED interface, docs/gateway.md): bootstraps a device to this gateway.
   * Data: `DeviceID=IMEI:1&Address=<device bootstrap URL>&PIN=<its bootstrap PIN>`. The gateway makes
   * fresh credentials, associates the device in proxy mode, and sends it a DM bootstrap message
   * (WBXML, HMAC-SHA1 keyed by the PIN) that adds a DMAcc for the gateway's southbound server. If the
   * device refuses it, the provisional association is withdrawn.
   */
  async bootstrapDevice(deviceId: string, address: string, pin: string): Promise<number> {
    const username = `bs-${randomBytes(6).toString('hex')}`;
    const secret = randomBytes(18).toString('base64url');
    const previous = this.associations.get(deviceId);
    const rec = await this.associate({ deviceId, mode: 'proxy', gateway: false, username, secret, authType: 'syncml:auth-md5' });
    /** On failure: a device that was already associated keeps its association; a new one is withdrawn. */
    const undo = async (): Promise<void> => {
      if (!previous) {
        await this.forget(deviceId);
        return;
      }
      const { key: _k, deviceId: _d, ...fields } = previous;
      void _k;
      void _d;
      this.activate((await this.associations.update(deviceId, fields))!, true);
    };
    const { body, contentType } = encodeBootstrap({
      deviceId,
      serverId: this.config.serverId,
      pin,
      nodes: accountNodes({
        name: this.config.id.replace(/[^A-Za-z0-9_-]/g, '_'),
        serverId: this.config.serverId,
        address: this.south.dmUrl,
        client: { type: toAAuthType(rec.authType), name: username, secret },
        server: { type: toAAuthType(this.config.serverAuthType), name: this.config.serverId, secret: this.config.serverSecret },
      }),
    });
    try {
      const res = await tlsFetch(address, { method: 'POST', body, headers: { 'content-type': contentType }, signal: AbortSignal.timeout(5000) }, southTrust(this.config));
      await res.arrayBuffer();
      if (!res.ok) {
        this.log.warn(`bootstrap of ${deviceId} refused by the device: HTTP ${res.status}`);
        await undo();
        return res.status === 401 ? 401 : 500;
      }
      this.log.info(`bootstrapped ${deviceId} to this gateway (${rec.key})`);
      return 200;
    } catch (err) {
      this.log.warn(`bootstrap of ${deviceId} failed: ${describeError(err)}`);
      await undo();
      return 500;
    }
  }

  private async execBootstrap(data: string | Uint8Array | undefined): Promise<{ status: number }> {
    const q = new URLSearchParams(typeof data === 'string' ? data : Buffer.from(data ?? new Uint8Array()).toString('utf8'));
    const deviceId = q.get('DeviceID');
    const address = q.get('Address');
    const pin = q.get('PIN');
    if (!deviceId || !address || !pin || !/^https?:\/\//.test(address)) return { status: 400 };
    return { status: await this.bootstrapDevice(deviceId, address, pin) };
  }

  /** Forgets a device (Data = its DeviceID); it is reported detached. */
  private async execRemove(data: string | Uint8Array | undefined): Promise<{ status: number }> {
    const id = typeof data === 'string' ? data.trim() : '';
    return { status: (await this.forget(id)) ? 200 : 404 };
  }

  /** Removes an association: record, inventory and mount nodes, southbound account, actor; reports it detached. */
  async forget(deviceId: string): Promise<boolean> {
    const rec = await this.associations.remove(deviceId);
    if (!rec) return false;
    this.actor.send({ type: 'association.remove', deviceId });
    this.south.removeAccount(deviceId);
    await this.queueAlert({ items: [this.inventoryAlertItem(rec, INVENTORY_ALERTS.detached)], at: new Date().toISOString() });
    this.log.info(`removed ${deviceId} (${rec.key})`);
    return true;
  }
}

/**
 * The transparent-mode relay: forwards a device's DM message to the server byte for byte (content
 * type and HMAC header included) and the server's answer back the same way. The gateway does not
 * interpret the session; it only logs sizes (notes §2.1 step 5).
 */
async function relayHttp(
  relay: { path: string; upstream: string },
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  log: Logger,
  tls: TlsClientConfig | undefined,
): Promise<boolean> {
  if (url.pathname !== relay.path) return false;
  if (req.method !== 'POST') {
    res.writeHead(405, { allow: 'POST' }).end();
    return true;
  }
  let body: Buffer;
  try {
    body = await readBody(req, 4 * 1024 * 1024);
  } catch (err) {
    res.writeHead(413).end(describeError(err));
    return true;
  }
  const headers: Record<string, string> = {};
  for (const h of ['content-type', 'accept', HMAC_HEADER]) {
    const v = req.headers[h];
    if (typeof v === 'string') headers[h] = v;
  }
  try {
    const up = await post(relay.upstream, body, headers, 60_000, tls);
    const out: Record<string, string> = {};
    for (const h of ['content-type', HMAC_HEADER, 'cache-control']) {
      const v = up.headers.get(h);
      if (v) out[h] = v;
    }
    res.writeHead(up.status, out).end(up.body);
    log.debug(`relayed ${body.length} bytes up, ${up.body.byteLength} bytes down`);
  } catch (err) {
    log.warn(`relay to ${relay.upstream} failed: ${describeError(err)}`);
    res.writeHead(502).end();
  }
  return true;
}
