/**
 * The device inventory and the device mount points as views of the association records (notes
 * §1.3 and §1.8). The records in LevelDB are the truth; these plugins serve them as DM nodes
 * without copying them into the tree, so an inventory of 100,000 devices costs no tree nodes and a
 * record change is visible at once:
 * - `./GwMO/DeviceInventory/Records/<key>/...` (DeviceID, ComponentType, Mode, Protocol, Address,
 *   Man, Mod, Status, FirstSeen, LastSeen, ServerID, TreeURI, Groups; Mode is replaceable: MOO-001);
 * - `./GwMO/DeviceInventory/Summary/{Total,Attached,Detached,ChildGateways}`;
 * - `./GwMO/Devices/<key>`: the mount node of each proxy or adaptation device, whose ACL (stored in
 *   the record) governs what the server may do to the device (PMode-004); below it, an adaptation
 *   device's subtree comes from its adapter, and a proxy device's commands never reach the tree
 *   (the gateway executor forwards them).
 */
import { DmStatusError } from '../errors.ts';
import type { AccessType, ExecArgs, PluginNodeView, PluginWrite, TreePlugin } from '../tree/tree.ts';
import type { Adapter } from '../../adapters/contract.ts';
import { STATUS_VALUE, type AssociationRecord, type AssociationStore } from './associations.ts';
import { MODE_VALUE } from './config.ts';

/** Inventory records (notes §1.3). */
export const RECORDS_ROOT = './GwMO/DeviceInventory/Records';
/** Inventory summary counters (notes §1.3). */
export const SUMMARY_ROOT = './GwMO/DeviceInventory/Summary';
/** Where devices are mounted in the gateway's tree (notes §1.8). */
export const DEVICES_ROOT = './GwMO/Devices';

const GET = ['Get'] as const;
/** AccessTypes of a device's mount node (its ACL is replaceable); one shared array (the tree caches per array). */
const MOUNT_ACCESS: readonly AccessType[] = ['Get', 'Replace'];
const RECORD_LEAVES = ['DeviceID', 'ComponentType', 'Mode', 'Protocol', 'Address', 'NotifyAddress', 'PublicAddress', 'Man', 'Mod', 'Status', 'FirstSeen', 'LastSeen', 'ServerID', 'TreeURI', 'Groups'] as const;

/** ISO 8601 basic UTC (TStamp style, notes §3.8). */
export function tstamp(iso: string): string {
  return iso.replace(/[-:]/g, '').replace(/\.\d+/, '');
}

const split = (path: string): [string, string] => {
  const i = path.indexOf('/');
  return i < 0 ? [path, ''] : [path.slice(0, i), path.slice(i + 1)];
};

/** A record's leaf value, or undefined when the record has no such leaf. */
function recordLeaf(rec: AssociationRecord, leaf: string, groups: (deviceId: string) => string[]): PluginNodeView | undefined {
  const chr = (data: string | undefined): PluginNodeView | undefined => (data === undefined ? undefined : { format: 'chr', data, access: GET });
  switch (leaf) {
    case 'DeviceID':
      return chr(rec.deviceId);
    case 'ComponentType':
      return { format: 'int', data: rec.gateway ? '1' : '0', access: GET };
    case 'Mode':
      return { format: 'int', data: String(MODE_VALUE[rec.mode]), access: ['Get', 'Replace'] };
    case 'Protocol':
      return chr(rec.protocol);
    case 'Address':
      return chr(rec.address);
    case 'NotifyAddress':
      // Where Package 0 reaches the device on the gateway's network (configured, or reported).
      return chr(rec.notify ?? rec.reportedNotify);
    case 'PublicAddress':
      // A publicly routable notification address: the server may push Package 0 there directly.
      return chr(rec.publicNotify);
    case 'Man':
      return chr(rec.man);
    case 'Mod':
      return chr(rec.mod);
    case 'Status':
      return { format: 'int', data: String(STATUS_VALUE[rec.status]), access: GET };
    case 'FirstSeen':
      return chr(rec.firstSeen && tstamp(rec.firstSeen));
    case 'LastSeen':
      return chr(rec.lastSeen && tstamp(rec.lastSeen));
    case 'ServerID':
      return chr(rec.serverId);
    case 'TreeURI':
      return rec.mode === 'transparent' ? undefined : chr(`${DEVICES_ROOT}/${rec.key}`);
    case 'Groups': {
      const g = groups(rec.deviceId);
      return g.length ? chr(g.join('/')) : undefined;
    }
    default:
      return undefined;
  }
}

/** What the inventory plugin needs from the gateway. */
export interface InventoryDeps {
  associations: AssociationStore;
  /** GroupIDs a device belongs to (the derived Groups leaf). */
  groupsOf(deviceId: string): string[];
  /** Applies `Replace Records/<key>/Mode` (MOO-001); returns the DM status. */
  switchMode(rec: AssociationRecord, value: string): Promise<number>;
  /** Forgets a device (`Exec Records/<key>/Operations/Remove`). */
  remove(rec: AssociationRecord): Promise<boolean>;
}

/** The plugin serving `./GwMO/DeviceInventory/Records`. */
export function createRecordsPlugin(deps: InventoryDeps): TreePlugin {
  const { associations } = deps;
  const record = (key: string): AssociationRecord => {
    const rec = associations.byKey(key);
    if (!rec) throw new DmStatusError(404, 'GW_UNKNOWN_RECORD', `${RECORDS_ROOT}/${key} does not exist`);
    return rec;
  };
  return {
    get(path): PluginNodeView | undefined {
      if (path === '') return { format: 'node', access: GET };
      const [key, leaf] = split(path);
      const rec = associations.byKey(key);
      if (!rec) return undefined;
      if (leaf === '') return { format: 'node', access: GET };
      if (leaf === 'Operations') return { format: 'node', access: GET };
      if (leaf === 'Operations/Remove') return { format: 'null', access: ['Exec'] };
      return recordLeaf(rec, leaf, deps.groupsOf);
    },
    children(path): string[] {
      if (path === '') return associations.all().map((r) => r.key);
      const [key, leaf] = split(path);
      const rec = associations.byKey(key);
      if (!rec) return [];
      if (leaf === 'Operations') return ['Remove'];
      if (leaf !== '') return [];
      return [...RECORD_LEAVES.filter((l) => recordLeaf(rec, l, deps.groupsOf) !== undefined), 'Operations'];
    },
    async replace(path, value: PluginWrite) {
      const [key, leaf] = split(path);
      const rec = record(key);
      if (leaf !== 'Mode') throw new DmStatusError(405, 'GW_READ_ONLY', `${RECORDS_ROOT}/${path} is read-only`);
      return { status: await deps.switchMode(rec, (value.data ?? '').trim()) };
    },
    async exec(path, _args: ExecArgs) {
      const [key, leaf] = split(path);
      const rec = record(key);
      if (leaf !== 'Operations/Remove') throw new DmStatusError(405, 'GW_NOT_EXECUTABLE', `${RECORDS_ROOT}/${path} cannot be executed`);
      return { status: (await deps.remove(rec)) ? 200 : 404 };
    },
  };
}

/** The plugin serving `./GwMO/DeviceInventory/Summary` (DI "summary of all devices"). */
export function createSummaryPlugin(associations: AssociationStore): TreePlugin {
  const counters = (): Record<string, number> => {
    let attached = 0;
    let detached = 0;
    let gateways = 0;
    for (const r of associations.all()) {
      if (r.status === 'attached') attached++;
      else if (r.status === 'detached') detached++;
      if (r.gateway) gateways++;
    }
    return { Total: associations.size, Attached: attached, Detached: detached, ChildGateways: gateways };
  };
  return {
    get(path): PluginNodeView | undefined {
      if (path === '') return { format: 'node', access: GET };
      const n = counters()[path];
      return n === undefined ? undefined : { format: 'int', data: String(n), access: GET };
    },
    children: (path) => (path === '' ? ['Total', 'Attached', 'Detached', 'ChildGateways'] : []),
  };
}

/** What the devices plugin needs from the gateway. */
export interface DevicesDeps {
  associations: AssociationStore;
  /** The adapter of an adaptation-mode device's network. */
  adapter(rec: AssociationRecord): Adapter | undefined;
  /** Stores a mount node's ACL (Replace `./GwMO/Devices/<key>?prop=ACL`). */
  setAcl(rec: AssociationRecord, acl: string): Promise<void>;
}

/** The plugin serving `./GwMO/Devices`: mount nodes, and adaptation devices' subtrees. */
export function createDevicesPlugin(deps: DevicesDeps): TreePlugin {
  const { associations } = deps;
  /** The adapter subtree of an adaptation device, or a 404/462 error. */
  const subtree = (key: string, path: string, known?: AssociationRecord): TreePlugin => {
    const rec = known ?? associations.byKey(key);
    if (!rec || rec.mode === 'transparent') throw new DmStatusError(404, 'GW_UNKNOWN_DEVICE', `${DEVICES_ROOT}/${path} does not exist`);
    const plugin = rec.mode === 'adaptation' && rec.address ? deps.adapter(rec)?.device(rec.address) : undefined;
    // GwMO 462: no adaptation mapping (no adapter for this device, or a proxy device reached here).
    if (!plugin) throw new DmStatusError(462, 'GW_NO_MAPPING', `no adaptation mapping for ${rec.deviceId}`);
    return plugin;
  };
  return {
    get(path, ctx): PluginNodeView | undefined | Promise<PluginNodeView | undefined> {
      if (path === '') return { format: 'node', access: GET };
      const [key, rest] = split(path);
      const rec = associations.byKey(key);
      if (!rec || rec.mode === 'transparent') return undefined;
      if (rest === '') return { format: 'node', acl: rec.acl ?? '', access: MOUNT_ACCESS };
      return subtree(key, path, rec).get(rest, ctx);
    },
    describe(path, ctx): PluginNodeView | undefined | Promise<PluginNodeView | undefined> {
      if (path === '') return { format: 'node', access: GET };
      const [key, rest] = split(path);
      const rec = associations.byKey(key);
      if (!rec || rec.mode === 'transparent') return undefined;
      if (rest === '') return { format: 'node', acl: rec.acl ?? '', access: MOUNT_ACCESS };
      // Metadata only: a write to an adapted device must not cost a native read first.
      const p = subtree(key, path, rec);
      return p.describe ? p.describe(rest, ctx) : p.get(rest, ctx);
    },
    children(path, ctx): string[] | Promise<string[]> {
      if (path === '') return associations.all().filter((r) => r.mode !== 'transparent').map((r) => r.key);
      const [key, rest] = split(path);
      const rec = associations.byKey(key);
      if (!rec || (rec.mode !== 'adaptation' && rest === '')) return [];
      return subtree(key, path).children(rest, ctx);
    },
    replace(path, value, ctx) {
      const [key, rest] = split(path);
      const p = subtree(key, path);
      if (!p.replace) throw new DmStatusError(405, 'GW_NOT_ALLOWED', `Replace not allowed on ${DEVICES_ROOT}/${path}`);
      return p.replace(rest, value, ctx);
    },
    add(path, value, ctx) {
      const [key, rest] = split(path);
      const p = subtree(key, path);
      if (!p.add || rest === '') throw new DmStatusError(405, 'GW_NOT_ALLOWED', `Add not allowed on ${DEVICES_ROOT}/${path}`);
      return p.add(rest, value, ctx);
    },
    delete(path, ctx) {
      const [key, rest] = split(path);
      const p = subtree(key, path);
      if (!p.delete || rest === '') throw new DmStatusError(405, 'GW_NOT_ALLOWED', `Delete not allowed on ${DEVICES_ROOT}/${path}`);
      return p.delete(rest, ctx);
    },
    exec(path, args, ctx) {
      const [key, rest] = split(path);
      const p = subtree(key, path);
      if (!p.exec) throw new DmStatusError(405, 'GW_NOT_ALLOWED', `Exec not allowed on ${DEVICES_ROOT}/${path}`);
      return p.exec(rest, args, ctx);
    },
    async setProperty(path, prop, value) {
      const [key, rest] = split(path);
      const rec = associations.byKey(key);
      if (!rec || rest !== '' || prop !== 'ACL') throw new DmStatusError(405, 'GW_NOT_ALLOWED', `only the ACL of ${DEVICES_ROOT}/<x> can be set`);
      await deps.setAcl(rec, value);
      return { status: 200 };
    },
  };
}
