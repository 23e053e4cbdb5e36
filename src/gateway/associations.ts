/**
 * Association records: one per end device or child gateway behind this gateway, durable in
 * LevelDB. They are the source of truth; association actors and the inventory nodes of the
 * gateway's tree are rebuilt from them on start.
 */
import type { AuthType } from '../codec/auth.ts';
import { secretVerifier } from '../codec/auth.ts';
import type { Section, Store } from '../store/store.ts';
import type { AssociationConfig, Mode } from './config.ts';

/** Status leaf values of an inventory record (notes §1.3). */
export type AssociationStatus = 'detached' | 'attached' | 'sleeping' | 'pending';
/** Status leaf encoding: 0 Detached, 1 Attached, 2 Sleeping, 3 Pending acceptance. */
export const STATUS_VALUE: Record<AssociationStatus, number> = { detached: 0, attached: 1, sleeping: 2, pending: 3 };

/** One association. */
export interface AssociationRecord {
  /** Stable gateway-assigned key, the record and mount node name (`d0001`); never the DeviceID, which may contain `/`. */
  key: string;
  deviceId: string;
  mode: Mode;
  /** A child gateway (ComponentType 1). */
  gateway: boolean;
  protocol: string;
  username?: string;
  secret?: string;
  authType: AuthType;
  notify?: string;
  /** A publicly routable notification address (configured, or reported by the device). */
  publicNotify?: string;
  /** The notification address the device reported in its last session with the gateway. */
  reportedNotify?: string;
  serverId?: string;
  status: AssociationStatus;
  /** Adaptation mode: the adapter (network) the device is on, by name. */
  network?: string;
  /** Adaptation mode: the device's address on its network (KNX `1.1.5`, ZigBee EUI-64, ...). */
  address?: string;
  /** ACL of the device's mount node `./GwMO/Devices/<key>` (PMode-004); '' or absent inherits. */
  acl?: string;
  /** Identity cached from the device (its Package 1 DevInfo, or the adapter). */
  man?: string;
  mod?: string;
  firstSeen?: string;
  lastSeen?: string;
  createdAt: string;
}

/** The association records of a gateway. */
export class AssociationStore {
  private readonly section: Section<AssociationRecord>;
  private readonly meta: Section<number>;
  private readonly byDevice = new Map<string, AssociationRecord>();
  private readonly keys = new Map<string, AssociationRecord>();
  /** Adaptation devices by `<network>\u0000<address>`. */
  private readonly addresses = new Map<string, AssociationRecord>();
  private sorted: AssociationRecord[] | undefined;
  private next = 1;
  /** Told about every record change (the visualizer's record feed). */
  onChange: ((deviceId: string) => void) | undefined;

  private constructor(store: Store) {
    this.section = store.section<AssociationRecord>('associations');
    this.meta = store.section<number>('associations-meta');
  }

  /** Loads every record. */
  static async open(store: Store): Promise<AssociationStore> {
    const s = new AssociationStore(store);
    for (const [, r] of await s.section.entries()) {
      // Records written before secrets were stored as verifiers: convert them once.
      if (r.secret && !r.secret.startsWith('$gwmo-')) {
        r.secret = secretVerifier(r.username ?? r.deviceId, r.secret, r.authType);
        await s.section.put(r.key, r);
      }
      s.remember(r);
    }
    s.next = (await s.meta.get('next')) ?? 1;
    return s;
  }

  /** All records, in key order (cached until the next change: inventories of 100,000 devices are read often). */
  all(): AssociationRecord[] {
    this.sorted ??= [...this.byDevice.values()].sort((a, b) => (a.key < b.key ? -1 : 1));
    return this.sorted;
  }

  /** How many records there are. */
  get size(): number {
    return this.byDevice.size;
  }

  private remember(r: AssociationRecord): void {
    const prev = this.byDevice.get(r.deviceId);
    if (prev && prev.key !== r.key) this.keys.delete(prev.key);
    if (prev?.network && prev.address) this.addresses.delete(`${prev.network}\u0000${prev.address}`);
    this.byDevice.set(r.deviceId, r);
    this.keys.set(r.key, r);
    if (r.network && r.address) this.addresses.set(`${r.network}\u0000${r.address}`, r);
    this.onChange?.(r.deviceId);
    if (!prev || prev.key !== r.key) this.sorted = undefined;
    else if (this.sorted) {
      // Same key: swap the record in place rather than re-sorting 100,000 of them.
      const i = this.sorted.indexOf(prev);
      if (i >= 0) this.sorted[i] = r;
      else this.sorted = undefined;
    }
  }

  /** The record of a device. */
  get(deviceId: string): AssociationRecord | undefined {
    return this.byDevice.get(deviceId);
  }

  /** The adaptation device at `address` on network `network`. */
  byAddress(network: string, address: string): AssociationRecord | undefined {
    return this.addresses.get(`${network}\u0000${address}`);
  }

  /**
   * Creates many associations in one write (an adapter reporting a whole network at start).
   * Devices already known are skipped. Returns the new records.
   */
  async addMany(items: { cfg: AssociationConfig; protocol?: string; man?: string; mod?: string; status?: AssociationStatus }[]): Promise<AssociationRecord[]> {
    const now = new Date().toISOString();
    const created: AssociationRecord[] = [];
    for (const { cfg, protocol, man, mod, status } of items) {
      if (this.byDevice.has(cfg.deviceId)) continue;
      const record: AssociationRecord = {
        key: `${cfg.gateway ? 'g' : 'd'}${String(this.next++).padStart(4, '0')}`,
        deviceId: cfg.deviceId,
        mode: cfg.mode,
        gateway: cfg.gateway,
        protocol: cfg.gateway || cfg.mode !== 'adaptation' ? 'OMA-DM/1.2' : (protocol ?? cfg.protocol ?? 'unknown'),
        authType: cfg.authType,
        status: status ?? 'pending',
        createdAt: now,
        ...(status === 'attached' ? { firstSeen: now, lastSeen: now } : {}),
        ...(cfg.protocol && cfg.mode === 'adaptation' ? { network: cfg.protocol } : {}),
        ...(cfg.address ? { address: cfg.address } : {}),
        ...(man ? { man } : {}),
        ...(mod ? { mod } : {}),
      };
      this.remember(record);
      created.push(record);
    }
    if (created.length) {
      await this.section.batch(created.map((r) => [r.key, r]));
      await this.meta.put('next', this.next);
    }
    return created;
  }

  /** The record with a given key. */
  byKey(key: string): AssociationRecord | undefined {
    return this.keys.get(key);
  }

  /**
   * Creates the association of a device, or updates its settings if it exists. Returns the record
   * and whether it is new (a new device is announced to the server).
   */
  async upsert(cfg: AssociationConfig, opts: { protocol?: string } = {}): Promise<{ record: AssociationRecord; created: boolean }> {
    const prev = this.byDevice.get(cfg.deviceId);
    const record: AssociationRecord = {
      key: prev?.key ?? `${cfg.gateway ? 'g' : 'd'}${String(this.next).padStart(4, '0')}`,
      deviceId: cfg.deviceId,
      mode: cfg.mode,
      gateway: cfg.gateway,
      protocol: cfg.gateway || cfg.mode !== 'adaptation' ? 'OMA-DM/1.2' : (opts.protocol ?? cfg.protocol ?? 'unknown'),
      authType: cfg.authType,
      status: prev?.status ?? 'pending',
      createdAt: prev?.createdAt ?? new Date().toISOString(),
      ...(cfg.username ? { username: cfg.username } : {}),
      // Kept as a verifier, never as given: MD5/HMAC need only B64(H(user:password)), basic a slow hash.
      ...(cfg.secret ? { secret: secretVerifier(cfg.username ?? cfg.deviceId, cfg.secret, cfg.authType) } : {}),
      ...(cfg.notify ? { notify: cfg.notify } : prev?.notify ? { notify: prev.notify } : {}),
      ...(cfg.publicNotify ? { publicNotify: cfg.publicNotify } : prev?.publicNotify ? { publicNotify: prev.publicNotify } : {}),
      ...(prev?.reportedNotify ? { reportedNotify: prev.reportedNotify } : {}),
      ...(cfg.serverId ? { serverId: cfg.serverId } : {}),
      ...(cfg.protocol && cfg.mode === 'adaptation' ? { network: cfg.protocol } : {}),
      ...(cfg.address ? { address: cfg.address } : prev?.address ? { address: prev.address } : {}),
      ...(prev?.acl ? { acl: prev.acl } : {}),
      ...(prev?.man ? { man: prev.man } : {}),
      ...(prev?.mod ? { mod: prev.mod } : {}),
      ...(prev?.firstSeen ? { firstSeen: prev.firstSeen } : {}),
      ...(prev?.lastSeen ? { lastSeen: prev.lastSeen } : {}),
    };
    if (!prev) {
      this.next++;
      await this.meta.put('next', this.next);
    }
    this.remember(record);
    await this.section.put(record.key, record);
    return { record, created: !prev };
  }

  /** Updates fields of a record. */
  async update(deviceId: string, patch: Partial<Omit<AssociationRecord, 'key' | 'deviceId'>>): Promise<AssociationRecord | undefined> {
    const prev = this.byDevice.get(deviceId);
    if (!prev) return undefined;
    const record = { ...prev, ...patch };
    if (patch.secret) record.secret = secretVerifier(record.username ?? record.deviceId, patch.secret, record.authType);
    // Update memory before the write: concurrent updates each start from the latest record.
    this.remember(record);
    await this.section.put(record.key, record);
    return record;
  }

  /** Forgets a device. */
  async remove(deviceId: string): Promise<AssociationRecord | undefined> {
    const prev = this.byDevice.get(deviceId);
    if (!prev) return undefined;
    this.byDevice.delete(deviceId);
    this.keys.delete(prev.key);
    if (prev.network && prev.address) this.addresses.delete(`${prev.network}\u0000${prev.address}`);
    this.sorted = undefined;
    this.onChange?.(deviceId);
    await this.section.del(prev.key);
    return prev;
  }
}
