/**
 * Association records: one per end device or child gateway behind this gateway, durable in
 * LevelDB. They are the source of truth; association actors and the inventory nodes of the
 * gateway's tree are rebuilt from them on start.
 */
import type { AuthType } from '../codec/auth.ts';
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
  serverId?: string;
  status: AssociationStatus;
  firstSeen?: string;
  lastSeen?: string;
  createdAt: string;
}

/** The association records of a gateway. */
export class AssociationStore {
  private readonly section: Section<AssociationRecord>;
  private readonly meta: Section<number>;
  private readonly byDevice = new Map<string, AssociationRecord>();
  private next = 1;

  private constructor(store: Store) {
    this.section = store.section<AssociationRecord>('associations');
    this.meta = store.section<number>('associations-meta');
  }

  /** Loads every record. */
  static async open(store: Store): Promise<AssociationStore> {
    const s = new AssociationStore(store);
    for (const [, r] of await s.section.entries()) s.byDevice.set(r.deviceId, r);
    s.next = (await s.meta.get('next')) ?? 1;
    return s;
  }

  /** All records, in key order. */
  all(): AssociationRecord[] {
    return [...this.byDevice.values()].sort((a, b) => (a.key < b.key ? -1 : 1));
  }

  /** The record of a device. */
  get(deviceId: string): AssociationRecord | undefined {
    return this.byDevice.get(deviceId);
  }

  /** The record with a given key. */
  byKey(key: string): AssociationRecord | undefined {
    return this.all().find((r) => r.key === key);
  }

  /**
   * Creates the association of a device, or updates its settings if it exists. Returns the record
   * and whether it is new (a new device is announced to the server).
   */
  async upsert(cfg: AssociationConfig): Promise<{ record: AssociationRecord; created: boolean }> {
    const prev = this.byDevice.get(cfg.deviceId);
    const record: AssociationRecord = {
      key: prev?.key ?? `${cfg.gateway ? 'g' : 'd'}${String(this.next).padStart(4, '0')}`,
      deviceId: cfg.deviceId,
      mode: cfg.mode,
      gateway: cfg.gateway,
      protocol: cfg.gateway || cfg.mode !== 'adaptation' ? 'OMA-DM/1.2' : 'unknown',
      authType: cfg.authType,
      status: prev?.status ?? 'pending',
      createdAt: prev?.createdAt ?? new Date().toISOString(),
      ...(cfg.username ? { username: cfg.username } : {}),
      ...(cfg.secret ? { secret: cfg.secret } : {}),
      ...(cfg.notify ? { notify: cfg.notify } : prev?.notify ? { notify: prev.notify } : {}),
      ...(cfg.serverId ? { serverId: cfg.serverId } : {}),
      ...(prev?.firstSeen ? { firstSeen: prev.firstSeen } : {}),
      ...(prev?.lastSeen ? { lastSeen: prev.lastSeen } : {}),
    };
    if (!prev) {
      this.next++;
      await this.meta.put('next', this.next);
    }
    await this.section.put(record.key, record);
    this.byDevice.set(record.deviceId, record);
    return { record, created: !prev };
  }

  /** Updates fields of a record. */
  async update(deviceId: string, patch: Partial<Omit<AssociationRecord, 'key' | 'deviceId'>>): Promise<AssociationRecord | undefined> {
    const prev = this.byDevice.get(deviceId);
    if (!prev) return undefined;
    const record = { ...prev, ...patch };
    // Update memory before the write: concurrent updates each start from the latest record.
    this.byDevice.set(deviceId, record);
    await this.section.put(record.key, record);
    return record;
  }

  /** Forgets a device. */
  async remove(deviceId: string): Promise<AssociationRecord | undefined> {
    const prev = this.byDevice.get(deviceId);
    if (!prev) return undefined;
    await this.section.del(prev.key);
    this.byDevice.delete(deviceId);
    return prev;
  }
}
