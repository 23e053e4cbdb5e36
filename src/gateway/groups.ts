/**
 * Device groups (GwMO-Group-001/002, notes §1.4, PROPOSED layout): the server creates, changes and
 * deletes groups on the gateway with plain Add/Replace/Delete under `./GwMO/Groups`. A member is an
 * end device or a child gateway (by DeviceID); a child gateway member means "its whole subtree", or
 * with `SubGroup` "that group on the child" (1.1 recursive groups). `Filter` adds every inventory
 * record matching a query such as `Protocol=Sim&Mod=sim-light`. Groups are kept as records in
 * LevelDB and served by a plugin, so fanout resolution and the inventory's derived `Groups` leaf
 * read an index instead of walking tree nodes.
 */
import { DmStatusError } from '../errors.ts';
import type { Section } from '../store/store.ts';
import type { PluginNodeView, PluginWrite, TreePlugin } from '../tree/tree.ts';
import { STATUS_VALUE, type AssociationRecord } from './associations.ts';
import { MODE_VALUE } from './config.ts';

/** Where groups live in the gateway's tree. */
export const GROUPS_ROOT = './GwMO/Groups';
/** MOID (PROPOSED, notes §1.1). */
export const GROUPS_MOID = 'urn:oma:mo:oma-gwmo-group:1.1';

/** One member of a group. */
export interface GroupMember {
  deviceId?: string;
  subGroup?: string;
}

/** One group. */
export interface GroupRecord {
  id: string;
  description?: string;
  filter?: string;
  members: Record<string, GroupMember>;
}

/** A resolved member: a record of this gateway, with the SubGroup to use when it is a child gateway. */
export interface ResolvedMember {
  deviceId: string;
  subGroup?: string;
}

const notFound = (p: string): DmStatusError => new DmStatusError(404, 'GW_GROUP_NOT_FOUND', `${GROUPS_ROOT}/${p} does not exist`);
const notAllowed = (p: string): DmStatusError => new DmStatusError(405, 'GW_GROUP_NOT_ALLOWED', `command not allowed on ${GROUPS_ROOT}/${p}`);
const ALL = ['Get', 'Add', 'Delete', 'Replace'] as const;
const LEAF = ['Get', 'Replace', 'Delete'] as const;

/** Values of an inventory record a Filter can match (notes §1.3 leaf names). */
function filterFields(r: AssociationRecord): Record<string, string> {
  return {
    DeviceID: r.deviceId,
    Protocol: r.protocol,
    Mode: String(MODE_VALUE[r.mode]),
    Status: String(STATUS_VALUE[r.status]),
    ComponentType: r.gateway ? '1' : '0',
    Man: r.man ?? '',
    Mod: r.mod ?? '',
    Address: r.address ?? '',
  };
}

/** Parses a Filter (`Field=value&Field=value`, all must match; `*` at the end of a value is a prefix match). */
export function parseFilter(filter: string): (r: AssociationRecord) => boolean {
  const q = new URLSearchParams(filter);
  const known = new Set(['DeviceID', 'Protocol', 'Mode', 'Status', 'ComponentType', 'Man', 'Mod', 'Address']);
  const tests: [string, string][] = [];
  for (const [k, v] of q) {
    if (!known.has(k)) throw new DmStatusError(400, 'GW_BAD_FILTER', `unknown filter field "${k}" (known: ${[...known].join(', ')})`);
    tests.push([k, v]);
  }
  return (r) => {
    const f = filterFields(r);
    return tests.every(([k, v]) => (v.endsWith('*') ? (f[k] ?? '').startsWith(v.slice(0, -1)) : f[k] === v));
  };
}

/** The groups of a gateway. */
export class GroupStore {
  private readonly groups = new Map<string, GroupRecord>();
  /** DeviceID → GroupIDs naming it as a member (filters excluded: they are evaluated on demand). */
  private index: Map<string, string[]> | undefined;

  private constructor(private readonly section: Section<GroupRecord>) {}

  /** Loads every group. */
  static async open(section: Section<GroupRecord>): Promise<GroupStore> {
    const s = new GroupStore(section);
    for (const [, g] of await section.entries()) s.groups.set(g.id, g);
    return s;
  }

  /** A group by id. */
  get(id: string): GroupRecord | undefined {
    return this.groups.get(id);
  }

  /** GroupIDs listing a device as a member. */
  groupsOf(deviceId: string): string[] {
    if (!this.index) {
      this.index = new Map();
      for (const g of this.groups.values()) {
        for (const m of Object.values(g.members)) {
          if (!m.deviceId) continue;
          const l = this.index.get(m.deviceId) ?? [];
          if (!l.includes(g.id)) l.push(g.id);
          this.index.set(m.deviceId, l);
        }
      }
    }
    return this.index.get(deviceId) ?? [];
  }

  /**
   * The members of a group among `records` (this gateway's associations), in a stable order; members
   * named by DeviceID but unknown here are returned in `unknown` (the caller may find them deeper).
   */
  resolve(id: string, records: readonly AssociationRecord[]): { members: ResolvedMember[]; unknown: string[] } {
    const g = this.groups.get(id);
    if (!g) throw new DmStatusError(404, 'GW_GROUP_NOT_FOUND', `group ${id} does not exist`);
    const known = new Set(records.map((r) => r.deviceId));
    const out = new Map<string, ResolvedMember>();
    const unknown: string[] = [];
    for (const m of Object.values(g.members)) {
      if (!m.deviceId) continue;
      if (!known.has(m.deviceId)) {
        unknown.push(m.deviceId);
        continue;
      }
      out.set(m.deviceId, { deviceId: m.deviceId, ...(m.subGroup ? { subGroup: m.subGroup } : {}) });
    }
    if (g.filter) {
      const match = parseFilter(g.filter);
      for (const r of records) if (!out.has(r.deviceId) && match(r)) out.set(r.deviceId, { deviceId: r.deviceId });
    }
    return { members: [...out.values()], unknown };
  }

  private async save(g: GroupRecord): Promise<void> {
    this.groups.set(g.id, g);
    this.index = undefined;
    await this.section.put(g.id, g);
  }

  /** The plugin serving `./GwMO/Groups`; `count` gives a group's resolved size (its Count leaf). */
  plugin(count: (id: string) => number): TreePlugin {
    const parts = (path: string): string[] => (path === '' ? [] : path.split('/'));
    const group = (id: string, path: string): GroupRecord => {
      const g = this.groups.get(id);
      if (!g) throw notFound(path);
      return g;
    };
    /** Sets a leaf; interior nodes on the way are created implicitly (as the tree does for Add). */
    const write = async (path: string, value: PluginWrite, adding: boolean): Promise<{ status: number }> => {
      const p = parts(path);
      const id = p[0]!;
      if (p.length === 1) {
        if (!adding || value.format !== 'node') throw notAllowed(path);
        if (this.groups.has(id)) throw new DmStatusError(418, 'GW_GROUP_EXISTS', `group ${id} already exists`);
        await this.save({ id, members: {} });
        return { status: 200 };
      }
      const g = adding && !this.groups.has(id) ? { id, members: {} } : group(id, path);
      const data = (value.data ?? '').trim();
      const leaf = p.slice(1).join('/');
      if (leaf === 'Description' && value.format !== 'node') g.description = value.data ?? '';
      else if (leaf === 'Filter' && value.format !== 'node') {
        if (data) parseFilter(data);
        g.filter = data;
      } else if (leaf === 'Members' && adding && value.format === 'node') {
        /* implicit interior node */
      } else if (p[1] === 'Members' && p.length >= 3) {
        const m = (g.members[p[2]!] ??= {});
        if (p.length === 3) {
          if (!adding || value.format !== 'node') throw notAllowed(path);
        } else if (p[3] === 'DeviceID' && p.length === 4) m.deviceId = data;
        else if (p[3] === 'SubGroup' && p.length === 4) m.subGroup = data;
        else throw notAllowed(path);
      } else throw notAllowed(path);
      await this.save(g);
      return { status: 200 };
    };
    return {
      get: (path): PluginNodeView | undefined => {
        const p = parts(path);
        if (p.length === 0) return { format: 'node', type: GROUPS_MOID, access: ['Get', 'Add'] };
        const g = this.groups.get(p[0]!);
        if (!g) return undefined;
        const leaf = p.slice(1).join('/');
        if (leaf === '') return { format: 'node', access: ALL };
        if (leaf === 'Description') return g.description === undefined ? undefined : { format: 'chr', data: g.description, access: LEAF };
        if (leaf === 'Filter') return g.filter === undefined ? undefined : { format: 'chr', data: g.filter, access: LEAF };
        if (leaf === 'Count') return { format: 'int', data: String(count(g.id)), access: ['Get'] };
        if (leaf === 'Members') return { format: 'node', access: ['Get', 'Add'] };
        const m = p[1] === 'Members' ? g.members[p[2] ?? ''] : undefined;
        if (!m) return undefined;
        if (p.length === 3) return { format: 'node', access: ALL };
        if (p.length === 4 && p[3] === 'DeviceID' && m.deviceId !== undefined) return { format: 'chr', data: m.deviceId, access: LEAF };
        if (p.length === 4 && p[3] === 'SubGroup' && m.subGroup !== undefined) return { format: 'chr', data: m.subGroup, access: LEAF };
        return undefined;
      },
      children: (path): string[] => {
        const p = parts(path);
        if (p.length === 0) return [...this.groups.keys()];
        const g = this.groups.get(p[0]!);
        if (!g) return [];
        if (p.length === 1) return [...(g.description !== undefined ? ['Description'] : []), 'Members', ...(g.filter !== undefined ? ['Filter'] : []), 'Count'];
        if (p.length === 2 && p[1] === 'Members') return Object.keys(g.members);
        const m = p[1] === 'Members' && p.length === 3 ? g.members[p[2]!] : undefined;
        return m ? [...(m.deviceId !== undefined ? ['DeviceID'] : []), ...(m.subGroup !== undefined ? ['SubGroup'] : [])] : [];
      },
      add: (path, value) => write(path, value, true),
      replace: (path, value) => write(path, value, false),
      delete: async (path) => {
        const p = parts(path);
        const g = group(p[0]!, path);
        if (p.length === 1) {
          this.groups.delete(g.id);
          this.index = undefined;
          await this.section.del(g.id);
          return { status: 200 };
        }
        const leaf = p.slice(1).join('/');
        if (leaf === 'Description' && g.description !== undefined) delete g.description;
        else if (leaf === 'Filter' && g.filter !== undefined) delete g.filter;
        else if (p[1] === 'Members' && p.length === 2) g.members = {};
        else if (p[1] === 'Members' && p.length === 3 && g.members[p[2]!]) delete g.members[p[2]!];
        else if (p[1] === 'Members' && p.length === 4 && g.members[p[2]!]) {
          const m = g.members[p[2]!]!;
          if (p[3] === 'DeviceID') delete m.deviceId;
          else if (p[3] === 'SubGroup') delete m.subGroup;
          else throw notFound(path);
        } else throw notFound(path);
        await this.save(g);
        return { status: 200 };
      },
    };
  }
}
