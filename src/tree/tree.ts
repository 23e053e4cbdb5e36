/**
 * The DM management tree (notes §3.3, §3.8, §5.4): nodes with their properties, ACL and DDF-style
 * AccessType enforcement, write-through persistence into a store Section, an undo log for Atomic,
 * Exec handlers, and plugins mounted at paths that serve dynamic subtrees (a gateway's end devices,
 * adapters; GwMO notes §1.8).
 *
 * Persistence: one record per node, keyed by the normalised URI (`.`, `./DevInfo/DevId`). Every
 * operation computes all of its record changes first and writes them with one `Section.batch`, so an
 * operation is one atomic write; memory is updated only after the write succeeded, so the in-memory
 * index always mirrors the store.
 */
import type { DataValue } from '../codec/model.ts';
import { DmStatusError, GwError } from '../errors.ts';
import type { Section } from '../store/store.ts';
import { type AclCommand, ROOT_DEFAULT_ACL, aclAllows, creatorAcl, removeServerFromAcl, validateAcl } from './acl.ts';
import { DEFAULT_TYPE, type NodeFormat, storedValue, valueSize, wireFormat } from './format.ts';
import {
  ROOT_URI,
  type UriLimits,
  checkUriLimits,
  childUri,
  isAtOrBelow,
  isValidNodeName,
  nameOf,
  normalizeUri,
  parentOf,
  relativeTo,
  segmentsOf,
} from './uri.ts';

export type { NodeFormat } from './format.ts';
export { parseTargetUri, normalizeUri, type TargetUri } from './uri.ts';

/** A DDF AccessType (§6.2): what a node supports, whoever asks (405 when missing, §3.4). */
export type AccessType = 'Add' | 'Copy' | 'Delete' | 'Exec' | 'Get' | 'Replace';

/** Every AccessType. */
export const ALL_ACCESS: readonly AccessType[] = ['Add', 'Copy', 'Delete', 'Exec', 'Get', 'Replace'];

/** The AccessTypes of nodes created without a DDF (server Adds, implicit ancestors): everything but Exec. */
export const DEFAULT_ACCESS: readonly AccessType[] = ['Add', 'Copy', 'Delete', 'Get', 'Replace'];

/** DDF Scope (§6.2): permanent nodes cannot be deleted (405). */
export type NodeScope = 'permanent' | 'dynamic';

/** A node property name readable with `?prop=` (§3.8). */
export type NodeProperty = 'ACL' | 'Format' | 'Name' | 'Size' | 'Title' | 'TStamp' | 'Type' | 'VerNo';

/** Every property name of §3.8. */
export const NODE_PROPERTIES: readonly NodeProperty[] = ['ACL', 'Format', 'Name', 'Size', 'Title', 'TStamp', 'Type', 'VerNo'];

/** Subtree listings supported by `list` (§3.3 Get); TNDS is not supported (406). */
export type ListKind = 'Struct' | 'StructData';

/** The persisted form of one node (JSON in the store; the name and URI are the key). */
export interface NodeRecord {
  /** `node` for interior nodes; a leaf Format otherwise (binary is `bin`, never `b64`). */
  format: Exclude<NodeFormat, 'b64'>;
  /** MIME type for leaves, MOID for interior nodes ('' when none). */
  type: string;
  /** The node's own ACL; '' inherits (§5.4). */
  acl: string;
  /** DDF AccessType set. */
  access: AccessType[];
  /** DDF Scope. */
  scope: NodeScope;
  /** ISO 8601 basic UTC time of the last change, e.g. `20261122T101500Z`. */
  tstamp: string;
  /** 16-bit change counter, wrapping at 0xFFFF (§3.8). */
  verNo: number;
  /** Creation order, so children list in the order they were added, also after a reopen. */
  seq: number;
  /** Title property (≤255 bytes). */
  title?: string;
  /** Leaf value as text (base64 for bin); absent for interior nodes. */
  data?: string;
}

/** Who performs an operation: with `serverId` the ACL and AccessType are enforced; without it the device's own code acts. */
export interface TreeContext {
  serverId?: string;
}

/** The context of a local operation by the device's own code (no ACL or AccessType checks). */
export const LOCAL: TreeContext = Object.freeze({});

/** Options of `DmTree.open`. */
export interface TreeOptions extends UriLimits {
  /** Clock for TStamp (tests pass a fixed one). */
  now?: () => Date;
}

/** The value of a node as a Get returns it. */
export interface NodeValue {
  /** Normalised URI. */
  uri: string;
  /** Meta Format to send: `node` for interior nodes, `b64` for binary leaves. */
  format: NodeFormat;
  /** Meta Type: MIME for leaves, MOID for interior nodes ('' when none). */
  type: string;
  /** Leaf value; for interior nodes the child names joined with `/` (§3.3 Get). */
  data: string;
}

/** One node of a `?list=Struct|StructData` answer. */
export interface ListEntry {
  uri: string;
  format: NodeFormat;
  type: string;
  /** Leaf value (StructData only; absent when the node does not support Get). */
  data?: string;
}

/** What Add accepts; `acl`, `access`, `scope` and `title` are honoured for local operations only (DDF-defined by the device). */
export interface AddOptions {
  format?: string;
  type?: string;
  data?: DataValue;
  acl?: string;
  access?: readonly AccessType[];
  scope?: NodeScope;
  title?: string;
}

/** What Replace accepts. */
export interface ReplaceOptions {
  format?: string;
  type?: string;
  data?: DataValue;
}

/** Arguments of an Exec. */
export interface ExecArgs {
  data?: DataValue;
  correlator?: string;
}

/** The request an Exec handler receives. */
export interface ExecRequest extends ExecArgs {
  uri: string;
  serverId?: string;
}

/** An Exec outcome: 200, or 202 when the work continues asynchronously (§3.3 Exec); data is optional output. */
export interface ExecResult {
  status: number;
  data?: string;
}

/** Code run by an Exec on a node. */
export type ExecHandler = (req: ExecRequest) => ExecResult | Promise<ExecResult>;

/** The status of a mutating operation: 200, or what a mounted plugin reports (e.g. 202 when queued). */
export interface OpResult {
  status: number;
}

/** A node as a mounted plugin describes it; binary leaves use Format `bin` with base64 data. */
export interface PluginNodeView {
  format: NodeFormat;
  type?: string;
  data?: string;
  /** ACL of this node; absent or '' inherits from above (ultimately the mount point). */
  acl?: string;
  /** AccessType; default: Get plus what the plugin's add/replace/delete methods allow (Exec must be listed). */
  access?: readonly AccessType[];
  title?: string;
  tstamp?: string;
  verNo?: number;
}

/** A value written through a plugin (already normalised: binary as Format `bin` + base64). */
export interface PluginWrite {
  format: Exclude<NodeFormat, 'b64'>;
  type: string;
  data?: string;
  /** For Add: the ACL the tree decided for the new node ('' = inherit). */
  acl?: string;
}

type Awaitable<T> = T | Promise<T>;
const isThenable = <T>(x: Awaitable<T>): x is Promise<T> => typeof (x as { then?: unknown } | null | undefined)?.then === 'function';

/**
 * A dynamic subtree mounted at a path: it serves every node at and below it, with paths relative to
 * the mount point ('' is the mount point itself, 'a/b' below it). The tree checks ACLs and
 * AccessTypes before calling it; a method it lacks makes that command 405. Reads may throw
 * DmStatusError (e.g. 202 when the device is asleep and the read is queued).
 */
export interface TreePlugin {
  /** The node at `path`, or undefined when it does not exist (404). */
  get(path: string, ctx: TreeContext): Awaitable<PluginNodeView | undefined>;
  /**
   * The node's metadata (format, type, access, ACL) without its value: what the tree needs for the
   * existence, AccessType and ACL checks of Replace, Delete, Exec and Add. A plugin whose `get`
   * costs a native operation (a KNX GroupValue_Read, a BLE GATT read) implements it so that a
   * write is not preceded by a read; without it the tree calls `get`.
   */
  describe?(path: string, ctx: TreeContext): Awaitable<PluginNodeView | undefined>;
  /** The child names of the interior node at `path`. */
  children(path: string, ctx: TreeContext): Awaitable<string[]>;
  add?(path: string, value: PluginWrite, ctx: TreeContext): Awaitable<OpResult | void>;
  replace?(path: string, value: PluginWrite, ctx: TreeContext): Awaitable<OpResult | void>;
  delete?(path: string, ctx: TreeContext): Awaitable<OpResult | void>;
  exec?(path: string, args: ExecArgs, ctx: TreeContext): Awaitable<ExecResult>;
  setProperty?(path: string, prop: 'ACL' | 'Name' | 'Title', value: string, ctx: TreeContext): Awaitable<OpResult | void>;
}

/** Options of `DmTree.mount` for the mount-point node when the mount creates it. */
export interface MountOptions {
  acl?: string;
  type?: string;
  title?: string;
}

/** An open Atomic transaction (§3.3 Atomic): commit keeps the changes, rollback restores memory and store. */
export interface TreeTransaction {
  /** False once committed or rolled back. */
  readonly active: boolean;
  commit(): Promise<void>;
  /** Restores every local node touched since `begin`; throws GwError 516 `TREE_ROLLBACK_FAILED` when it could not (store failure, or a mounted subtree was changed). */
  rollback(): Promise<void>;
}

/** Formats a time as ISO 8601 basic UTC, e.g. `20261122T101500Z` (§3.8 TStamp). */
export function formatTStamp(d: Date): string {
  return `${d.toISOString().slice(0, 19).replace(/[-:]/g, '')}Z`;
}

/** Internal view of any node, local or mounted, used by every check. */
interface View {
  uri: string;
  interior: boolean;
  format: Exclude<NodeFormat, 'b64'>;
  type: string;
  data: string | undefined;
  acl: string;
  access: ReadonlySet<AccessType>;
  scope: NodeScope;
  title: string | undefined;
  tstamp: string | undefined;
  verNo: number | undefined;
  mount: { entry: Mount; rel: string } | undefined;
}

interface Mount {
  path: string;
  plugin: TreePlugin;
}

type Changes = Map<string, NodeRecord | undefined>;

const notFound = (uri: string) => new DmStatusError(404, 'TREE_NOT_FOUND', `${uri} does not exist`);
const notAllowed = (uri: string, what: string) => new DmStatusError(405, 'TREE_NOT_ALLOWED', `${what} is not supported on ${uri}`);
const denied = (uri: string, cmd: string, serverId: string) =>
  new DmStatusError(425, 'TREE_ACL_DENIED', `${serverId} may not ${cmd} ${uri}`);

/**
 * The AccessType of a plugin node that declares none: what the plugin's methods can do, except
 * Exec, which (as for local nodes) a node must declare, so that an executable plugin does not make
 * every one of its nodes executable.
 */
/**
 * AccessType sets by the array (or plugin) they come from: views are built for every node a
 * command touches, and plugins return the same constant arrays, so a Set each time is waste.
 * The sets are shared: nothing mutates a view's `access`.
 */
const accessSets = new WeakMap<object, ReadonlySet<AccessType>>();
const ACCESS_BIT: Record<string, number> = { Add: 1, Copy: 2, Delete: 4, Exec: 8, Get: 16, Replace: 32 };
/** The shared set of each combination of AccessTypes, by bit mask (found with no allocation). */
const accessByMask: (ReadonlySet<AccessType> | undefined)[] = [];
function accessOf(list: readonly AccessType[]): ReadonlySet<AccessType> {
  let mask = 0;
  for (let i = 0; i < list.length; i++) {
    const b = ACCESS_BIT[list[i]!];
    if (b === undefined) return new Set(list); // not one of the six: not shared
    mask |= b;
  }
  return (accessByMask[mask] ??= new Set(list));
}
function pluginAccess(p: TreePlugin): ReadonlySet<AccessType> {
  let s = accessSets.get(p);
  if (!s) accessSets.set(p, (s = pluginAccessNew(p)));
  return s;
}
const mountAccessSets = new WeakMap<object, ReadonlySet<AccessType>>();
/** A mount point's AccessTypes when its plugin does not say: the plugin's, plus Replace (of its properties). */
function mountPointAccess(p: TreePlugin): ReadonlySet<AccessType> {
  let s = mountAccessSets.get(p);
  if (!s) mountAccessSets.set(p, (s = new Set([...pluginAccess(p), 'Replace'])));
  return s;
}
function pluginAccessNew(p: TreePlugin): Set<AccessType> {
  const s = new Set<AccessType>(['Get']);
  if (p.add) s.add('Add');
  if (p.replace) s.add('Replace').add('Copy');
  if (p.delete) s.add('Delete');
  return s;
}

class Transaction implements TreeTransaction {
  readonly undo = new Map<string, NodeRecord | undefined>();
  mountChanged = false;
  active = true;
  constructor(
    private readonly tree: DmTree,
    readonly seqAtBegin: number,
  ) {}
  commit(): Promise<void> {
    return this.tree._finish(this, false);
  }
  rollback(): Promise<void> {
    return this.tree._finish(this, true);
  }
}

/** The management tree of one DM client (or of a gateway): see the module comment. */
export class DmTree {
  private readonly nodes = new Map<string, NodeRecord>();
  private readonly kids = new Map<string, Set<string>>();
  private readonly mounts = new Map<string, Mount>();
  /** The mounts, longest path first (rebuilt after a change). */
  private mountList: Mount[] | undefined;
  private readonly execHandlers = new Map<string, ExecHandler>();
  private nextSeq = 1;
  private tx: Transaction | undefined;
  private tail: Promise<void> = Promise.resolve();
  private readonly now: () => Date;
  private readonly limits: UriLimits;

  private constructor(
    private readonly section: Section<NodeRecord>,
    options: TreeOptions,
  ) {
    this.now = options.now ?? (() => new Date());
    this.limits = { maxDepth: options.maxDepth ?? 0, maxTotLen: options.maxTotLen ?? 0, maxSegLen: options.maxSegLen ?? 0 };
  }

  /** Loads the persisted nodes of `section` (creating the root with ACL `Add=*&Get=*` on first use). */
  static async open(section: Section<NodeRecord>, options: TreeOptions = {}): Promise<DmTree> {
    const tree = new DmTree(section, options);
    const entries = await section.entries();
    entries.sort((a, b) => a[1].seq - b[1].seq);
    for (const [key, rec] of entries) {
      let norm: string;
      try {
        norm = normalizeUri(key);
      } catch {
        throw new GwError('TREE_CORRUPT', `stored node key ${JSON.stringify(key)} is not a URI`, { status: 510 });
      }
      if (norm !== key) throw new GwError('TREE_CORRUPT', `stored node key ${JSON.stringify(key)} is not normalised`, { status: 510 });
      tree.setMem(key, rec);
      tree.nextSeq = Math.max(tree.nextSeq, rec.seq + 1);
    }
    for (const key of tree.nodes.keys()) {
      const p = parentOf(key);
      if (p === undefined) continue;
      const parent = tree.nodes.get(p);
      if (!parent || parent.format !== 'node') {
        throw new GwError('TREE_CORRUPT', `stored node ${key} has no interior parent`, { status: 510 });
      }
    }
    if (!tree.nodes.has(ROOT_URI)) {
      const root: NodeRecord = {
        format: 'node',
        type: '',
        acl: ROOT_DEFAULT_ACL,
        access: ['Add', 'Get', 'Replace'],
        scope: 'permanent',
        tstamp: formatTStamp(tree.now()),
        verNo: 0,
        seq: 0,
      };
      await tree.write(new Map([[ROOT_URI, root]]));
    }
    return tree;
  }

  // ---------------------------------------------------------------- reads

  /** Get (§3.3): a leaf's value, or for an interior node Format `node` and the child names joined with `/`. */
  async get(uri: string, ctx: TreeContext): Promise<NodeValue> {
    return this.read(uri, ctx);
  }

  /**
   * `get` answered synchronously when every node on the way answers at once (a value; errors are
   * thrown), else a promise. For callers that read many nodes in a row (fanout members).
   */
  read(uri: string, ctx: TreeContext): Awaitable<NodeValue> {
    const u = this.norm(uri);
    const v = this.readable(u, ctx);
    // No closure on the synchronous path: this runs once per fanout member.
    return isThenable(v) ? v.then((x) => this.valueOf(u, x, ctx)) : this.valueOf(u, v, ctx);
  }

  private valueOf(u: string, v: View, ctx: TreeContext): Awaitable<NodeValue> {
    if (v.interior) return this.childNames(v, ctx).then((names) => ({ uri: u, format: 'node' as const, type: v.type, data: names.join('/') }));
    return { uri: u, format: wireFormat(v.format), type: v.type, data: v.data ?? '' };
  }

  /**
   * Get `?prop=` (§3.8): the property as a string. The ACL of a node with an empty ACL is '' (not
   * the inherited value, §5.4). Size of an interior node gives 405; an unknown property 406.
   */
  async getProperty(uri: string, prop: string, ctx: TreeContext): Promise<string> {
    const p = propertyName(prop);
    const u = this.norm(uri);
    // A property read is a Get on the node: same AccessType and ACL checks, so a No-Get secret
    // does not leak its Size either.
    const v = await this.readable(u, ctx);
    switch (p) {
      case 'ACL':
        return v.acl;
      case 'Format':
        return v.interior ? 'node' : v.format;
      case 'Name':
        return nameOf(u);
      case 'Type':
        return v.type;
      case 'Title':
        return v.title ?? '';
      case 'Size':
        if (v.interior) throw new DmStatusError(405, 'TREE_NOT_LEAF', `Size applies to leaves only (${u})`);
        return String(valueSize(v.format, v.data));
      case 'TStamp':
        if (v.tstamp === undefined) throw new DmStatusError(406, 'TREE_UNSUPPORTED', `${u} has no TStamp`);
        return v.tstamp;
      case 'VerNo':
        if (v.verNo === undefined) throw new DmStatusError(406, 'TREE_UNSUPPORTED', `${u} has no VerNo`);
        return String(v.verNo);
    }
  }

  /**
   * Get `?list=Struct|StructData` (§3.3): the subtree in pre-order. Nodes the server may not Get (by
   * ACL) are left out with their subtrees; StructData leaves that do not support Get (secrets) are
   * listed without data. Any other kind, TNDS included, gives 406.
   */
  async list(uri: string, kind: string, ctx: TreeContext): Promise<ListEntry[]> {
    if (kind !== 'Struct' && kind !== 'StructData') {
      throw new DmStatusError(406, 'TREE_UNSUPPORTED', `?list=${kind} is not supported`);
    }
    const u = this.norm(uri);
    const root = await this.readable(u, ctx);
    const out: ListEntry[] = [];
    const walk = async (v: View, inheritedAcl: string): Promise<void> => {
      const eff = v.acl !== '' ? v.acl : inheritedAcl;
      if (v !== root && ctx.serverId !== undefined && !aclAllows(eff, 'Get', ctx.serverId)) return;
      const e: ListEntry = { uri: v.uri, format: v.interior ? 'node' : wireFormat(v.format), type: v.type };
      if (kind === 'StructData' && !v.interior && (ctx.serverId === undefined || v.access.has('Get'))) e.data = v.data ?? '';
      out.push(e);
      if (!v.interior) return;
      // An interior node without Get support (e.g. ./Inbox, §3.8) hides its children too.
      if (v !== root && ctx.serverId !== undefined && !v.access.has('Get')) return;
      for (const name of await this.childNames(v, ctx)) {
        const c = await this.view(childUri(v.uri, name), ctx);
        if (c) await walk(c, eff);
      }
    };
    await walk(root, await this.effectiveAcl(u, ctx));
    return out;
  }

  /** The ACL that governs `uri`: its own, or the nearest ancestor's non-empty one (§5.4 inheritance). */
  async effectiveAcl(uri: string, ctx: TreeContext = LOCAL, first?: View): Promise<string> {
    return this.aclOf(this.norm(uri), ctx, first);
  }

  /**
   * `effectiveAcl` of a normalised URI, synchronously while every view on the way is (local nodes,
   * plugins answering at once): a command's checks then cost no promise per ancestor.
   */
  private aclOf(start: string | undefined, ctx: TreeContext, first?: View): Awaitable<string> {
    for (let u = start; u !== undefined; u = parentOf(u)) {
      // Only ACLs are needed: metadata views, and the node's own view when the caller has it.
      const v = first && first.uri === u ? first : this.view(u, ctx, 'meta');
      if (isThenable(v)) {
        const here = u;
        return v.then((x) => (x && x.acl !== '' ? x.acl : this.aclOf(parentOf(here), ctx)));
      }
      if (v && v.acl !== '') return v.acl;
    }
    return ROOT_DEFAULT_ACL;
  }

  /** True when a local (not mounted) node exists at `uri`. */
  hasLocal(uri: string): boolean {
    return this.nodes.has(normalizeUri(uri));
  }

  /** A deep copy of every local node record by URI (diagnostics and tests). */
  snapshot(): Map<string, NodeRecord> {
    return new Map([...this.nodes].map(([k, v]) => [k, structuredClone(v)]));
  }

  // ---------------------------------------------------------------- writes

  /**
   * Add (§3.3): creates a node; 418 when it exists, 405 under a leaf, missing interior ancestors are
   * created with empty ACLs. Format `node` creates an interior node. With a server that lacks
   * Replace on the parent, the topmost new interior node gets `Get=*&Add=id&Delete=id&Replace=id`
   * (§5.4 "New nodes"), so the creator keeps control of what it made.
   */
  async add(uri: string, value: AddOptions, ctx: TreeContext): Promise<OpResult> {
    const u = this.norm(uri);
    const m = this.mountFor(u);
    if (m) return this.addMounted(u, m, value, ctx);
    return this.exclusive(async () => {
      const { changes } = this.planLocalAdd(u, value, ctx);
      await this.write(changes);
      return { status: 200 };
    });
  }

  /** Replace of a leaf value (§3.3): 404 when missing (never creates), 405 on an interior node. */
  async replace(uri: string, value: ReplaceOptions, ctx: TreeContext): Promise<OpResult> {
    return this.replaceNode(this.norm(uri), value, ctx, false);
  }

  /** Replace with the ACL check skipped when `rightsChecked` (Copy has checked its own rules already). */
  private async replaceNode(u: string, value: ReplaceOptions, ctx: TreeContext, rightsChecked: boolean): Promise<OpResult> {
    const m = this.mountFor(u);
    const run = async (): Promise<OpResult> => {
      const v = await this.existing(u, ctx, 'meta');
      // Order: what the node supports (405), who asks (425), then the content (400/415).
      this.checkReplace(v, rightsChecked ? LOCAL : ctx);
      if (!rightsChecked) await this.authorize(u, 'Replace', ctx, v);
      const stored = storedValue(value.format, value.data, v.format);
      if (stored.format === 'node') throw new DmStatusError(405, 'TREE_NOT_LEAF', `${u} is a leaf; Format node is not allowed`);
      if (v.mount) {
        if (!v.mount.entry.plugin.replace) throw notAllowed(u, 'Replace');
        const r = await v.mount.entry.plugin.replace(v.mount.rel, { ...stored, type: value.type ?? v.type }, ctx);
        this.mountChanged();
        return { status: r?.status ?? 200 };
      }
      const rec = this.rec(u);
      await this.write(new Map([[u, this.touched({ ...rec, format: stored.format, type: value.type ?? rec.type, data: stored.data ?? '' })]]));
      return { status: 200 };
    };
    // Local nodes (and the mount point, which is local) are written under the lock; mounted nodes are the plugin's business.
    return m && u !== m.path ? run() : this.exclusive(run);
  }

  /**
   * Replace `?prop=` (§3.8, §5.4): ACL (interior: Replace on the node or its parent; leaf: only the
   * parent's Replace), Name (rename, 418 on a sibling clash), Title. Format, Type, Size, TStamp and
   * VerNo are read-only (405); unknown names 406.
   */
  async replaceProperty(uri: string, prop: string, value: string, ctx: TreeContext): Promise<OpResult> {
    const p = propertyName(prop);
    if (p !== 'ACL' && p !== 'Name' && p !== 'Title') {
      throw new DmStatusError(405, 'TREE_READ_ONLY_PROPERTY', `property ${p} cannot be replaced`);
    }
    const u = this.norm(uri);
    const m = this.mountFor(u);
    if (m && u !== m.path) {
      const v = await this.existing(u, ctx);
      await this.checkPropertyReplace(v, p, value, ctx);
      if (!m.plugin.setProperty) throw notAllowed(u, `Replace ?prop=${p}`);
      const r = await m.plugin.setProperty(relativeTo(u, m.path), p, value, ctx);
      this.mountChanged();
      return { status: r?.status ?? 200 };
    }
    return this.exclusive(async () => {
      const v = await this.existing(u, ctx);
      await this.checkPropertyReplace(v, p, value, ctx);
      const rec = this.rec(u);
      if (p === 'ACL') {
        await this.write(new Map([[u, this.touched({ ...rec, acl: value })]]));
      } else if (p === 'Title') {
        const next = this.touched({ ...rec });
        if (value === '') delete next.title;
        else next.title = value;
        await this.write(new Map([[u, next]]));
      } else {
        await this.write(this.planRename(u, value));
      }
      return { status: 200 };
    });
  }

  /** Delete (§3.3): removes the node and its whole subtree; the root and permanent nodes give 405. */
  async delete(uri: string, ctx: TreeContext): Promise<OpResult> {
    const u = this.norm(uri);
    if (u === ROOT_URI) throw new DmStatusError(405, 'TREE_ROOT', 'the root cannot be deleted');
    const m = this.mountFor(u);
    if (m) {
      const v = await this.existing(u, ctx, 'meta');
      if (ctx.serverId !== undefined && !v.access.has('Delete')) throw notAllowed(u, 'Delete');
      if (v.scope === 'permanent') throw new DmStatusError(405, 'TREE_PERMANENT', `${u} is permanent`);
      await this.authorize(u, 'Delete', ctx, v);
      if (!m.plugin.delete) throw notAllowed(u, 'Delete');
      const r = await m.plugin.delete(relativeTo(u, m.path), ctx);
      this.mountChanged();
      if (u === m.path) {
        // The mounted thing itself is gone (e.g. a device removed): drop the mount and its node.
        this.mounts.delete(u);
        this.mountList = undefined;
        await this.exclusive(async () => {
          if (this.nodes.has(u)) await this.write(this.planDelete(u));
        });
      }
      return { status: r?.status ?? 200 };
    }
    return this.exclusive(async () => {
      const v = await this.existing(u, ctx);
      for (const d of this.subtree(u)) {
        if (this.rec(d).scope === 'permanent') throw new DmStatusError(405, 'TREE_PERMANENT', `${d} is permanent`);
        if (d !== u && this.mounts.has(d)) throw new DmStatusError(405, 'TREE_MOUNTED', `${d} is a mount point`);
      }
      if (ctx.serverId !== undefined && !v.access.has('Delete')) throw notAllowed(u, 'Delete');
      await this.authorize(u, 'Delete', ctx);
      await this.write(this.planDelete(u));
      return { status: 200 };
    });
  }

  /**
   * Copy (§3.3): leaf to leaf; the source's value, Format and Type overwrite the target, or create
   * it when missing. Needs Get on the source and Replace (or Add on the parent) for the target;
   * Copy has no ACL entry of its own. 405 for interior nodes or a source without Get support, 403
   * when the target exists but cannot be overwritten (no Copy/Replace AccessType).
   */
  async copy(targetUri: string, sourceUri: string, ctx: TreeContext): Promise<OpResult> {
    const t = this.norm(targetUri);
    const s = this.norm(sourceUri);
    const src = await this.existing(s, ctx);
    if (src.interior) throw new DmStatusError(405, 'TREE_NOT_LEAF', `Copy source ${s} is not a leaf`);
    if (ctx.serverId !== undefined && !src.access.has('Get')) throw notAllowed(s, 'Get (Copy source)');
    await this.authorize(s, 'Get', ctx);
    const value = { format: src.format, type: src.type, data: src.data ?? '' };
    const tgt = await this.view(t, ctx, 'meta');
    if (!tgt) return this.add(t, value, ctx);
    if (tgt.interior) throw new DmStatusError(405, 'TREE_NOT_LEAF', `Copy target ${t} is not a leaf`);
    if (ctx.serverId !== undefined && !tgt.access.has('Copy') && !tgt.access.has('Replace')) {
      throw new DmStatusError(403, 'TREE_COPY_TARGET', `Copy target ${t} cannot be overwritten`);
    }
    await this.authorize(t, 'Replace', ctx);
    // Rights were checked above by Copy's own rules (Copy needs Copy or Replace support, not Replace alone).
    return this.replaceNode(t, value, ctx, true);
  }

  /**
   * Exec (§3.3): runs the handler registered with `onExec` (or the mounted plugin's exec); 404 when
   * missing, 405 without Exec AccessType, 425 without the Exec ACL right, 501 when nobody handles it.
   */
  async exec(uri: string, args: ExecArgs, ctx: TreeContext): Promise<ExecResult> {
    const u = this.norm(uri);
    const v = await this.existing(u, ctx, 'meta');
    if (ctx.serverId !== undefined && !v.access.has('Exec')) throw notAllowed(u, 'Exec');
    await this.authorize(u, 'Exec', ctx, v);
    let result: ExecResult;
    if (v.mount) {
      if (!v.mount.entry.plugin.exec) throw notAllowed(u, 'Exec');
      result = await v.mount.entry.plugin.exec(v.mount.rel, args, ctx);
      this.mountChanged();
    } else {
      const h = this.execHandlers.get(u);
      if (!h) throw new DmStatusError(501, 'TREE_NO_EXEC_HANDLER', `no Exec handler for ${u}`);
      const req: ExecRequest = { uri: u, ...args };
      if (ctx.serverId !== undefined) req.serverId = ctx.serverId;
      result = await h(req);
    }
    if (!Number.isInteger(result.status)) throw new GwError('TREE_EXEC_RESULT', `Exec handler for ${u} returned no status`);
    return result;
  }

  /** Registers the code an Exec on `uri` runs; returns a function that unregisters it. */
  onExec(uri: string, handler: ExecHandler): () => void {
    const u = normalizeUri(uri);
    this.execHandlers.set(u, handler);
    return () => {
      if (this.execHandlers.get(u) === handler) this.execHandlers.delete(u);
    };
  }

  /**
   * Removes a server identity from every local ACL (§5.4 "Deleting a server identity"), e.g. when
   * its DMAcc account is deleted; a root command left without servers becomes `*`.
   */
  async removeServer(serverId: string): Promise<void> {
    await this.exclusive(async () => {
      const changes: Changes = new Map();
      for (const [u, rec] of this.nodes) {
        if (rec.acl === '') continue;
        const acl = removeServerFromAcl(rec.acl, serverId, { root: u === ROOT_URI });
        if (acl !== rec.acl) changes.set(u, this.touched({ ...rec, acl }));
      }
      if (changes.size > 0) await this.write(changes);
    });
  }

  // ---------------------------------------------------------------- transactions

  /**
   * Starts an Atomic transaction (§3.3): every local change from now until commit/rollback is
   * recorded in an undo log. One transaction at a time (Atomic cannot nest); a second begin throws
   * GwError `TREE_TX_ACTIVE` (500). Changes by other callers while it is open are recorded too.
   */
  begin(): TreeTransaction {
    if (this.tx) throw new GwError('TREE_TX_ACTIVE', 'a transaction is already open', { status: 500 });
    this.tx = new Transaction(this, this.nextSeq);
    return this.tx;
  }

  /** @internal Ends a transaction; called by TreeTransaction. */
  async _finish(t: Transaction, rollback: boolean): Promise<void> {
    if (!t.active) throw new GwError('TREE_TX_CLOSED', 'the transaction is already finished', { status: 500 });
    await this.exclusive(async () => {
      t.active = false;
      if (this.tx === t) this.tx = undefined;
      if (!rollback || t.undo.size === 0) return;
      const restore: Changes = new Map(t.undo);
      try {
        await this.section.batch([...restore]);
      } catch (err) {
        throw new GwError('TREE_ROLLBACK_FAILED', 'could not restore the store', { status: 516, cause: err });
      }
      for (const [k, v] of restore) this.setMem(k, v);
      this.nextSeq = t.seqAtBegin;
    });
    if (rollback && t.mountChanged) {
      throw new GwError('TREE_ROLLBACK_FAILED', 'changes made through a mounted subtree cannot be rolled back', { status: 516 });
    }
  }

  // ---------------------------------------------------------------- mounts

  /**
   * Mounts a plugin at `path` (GwMO notes §1.8): the plugin serves every node at and below it. The
   * mount point is also a local interior node (created if missing, with `options`), which holds the
   * ACL that nodes below inherit unless the plugin gives one, so per-device ACLs persist while the
   * device is away. Throws GwError `TREE_MOUNT_CONFLICT` when mounts overlap or local nodes exist below.
   */
  async mount(path: string, plugin: TreePlugin, options: MountOptions = {}): Promise<void> {
    const u = this.norm(path);
    if (u === ROOT_URI) throw new GwError('TREE_MOUNT_CONFLICT', 'cannot mount at the root', { status: 500 });
    for (const p of this.mounts.keys()) {
      if (isAtOrBelow(u, p) || isAtOrBelow(p, u)) throw new GwError('TREE_MOUNT_CONFLICT', `${u} overlaps the mount at ${p}`, { status: 500 });
    }
    await this.exclusive(async () => {
      const rec = this.nodes.get(u);
      if (rec && rec.format !== 'node') throw new GwError('TREE_MOUNT_CONFLICT', `${u} is a leaf`, { status: 500 });
      if (rec && this.subtree(u).length > 1) throw new GwError('TREE_MOUNT_CONFLICT', `${u} has local children`, { status: 500 });
      if (!rec) {
        const add: AddOptions = { format: 'node', type: options.type ?? '', acl: options.acl ?? '', access: ['Get', 'Replace'] };
        if (options.title !== undefined) add.title = options.title;
        await this.write(this.planLocalAdd(u, add, LOCAL).changes);
      }
      this.mounts.set(u, { path: u, plugin });
      this.mountList = undefined;
    });
  }

  /** Removes the mount at `path` (the mount-point node stays, empty); true when there was one. */
  unmount(path: string): boolean {
    this.mountList = undefined;
    return this.mounts.delete(normalizeUri(path));
  }

  // ---------------------------------------------------------------- internals: views and checks

  private norm(uri: string): string {
    const u = normalizeUri(uri);
    checkUriLimits(u, this.limits);
    return u;
  }

  private rec(u: string): NodeRecord {
    const r = this.nodes.get(u);
    if (!r) throw notFound(u);
    return r;
  }

  private mountFor(u: string): Mount | undefined {
    if (this.mounts.size === 0) return undefined;
    // A handful of mounts, longest path first: prefix tests find the innermost one with no
    // substring per ancestor (this runs for every node a command touches).
    this.mountList ??= [...this.mounts.values()].sort((a, b) => b.path.length - a.path.length);
    for (const m of this.mountList) {
      const n = m.path.length;
      if (u.length === n ? u === m.path : u.length > n && u.charCodeAt(n) === 47 && u.startsWith(m.path)) return m;
    }
    return undefined;
  }

  private localView(u: string, r: NodeRecord): View {
    return {
      uri: u,
      interior: r.format === 'node',
      format: r.format,
      type: r.type,
      data: r.data,
      acl: r.acl,
      access: accessOf(r.access),
      scope: r.scope,
      title: r.title,
      tstamp: r.tstamp,
      verNo: r.verNo,
      mount: undefined,
    };
  }

  /**
   * The internal view of a node. `meta` asks only for what the checks need (no value): a plugin's
   * `describe` answers it when present, so a write does not cost a native read first.
   */
  private view(u: string, ctx: TreeContext, purpose: 'value' | 'meta' = 'value'): Awaitable<View | undefined> {
    const m = this.mountFor(u);
    if (!m) {
      const r = this.nodes.get(u);
      return r && this.localView(u, r);
    }
    const rel = relativeTo(u, m.path);
    if (rel === '') {
      // A device that is away must not make its mount point (and the ACL it carries) unreadable.
      let pv: Awaitable<PluginNodeView | undefined>;
      try {
        pv = purpose === 'meta' && m.plugin.describe ? m.plugin.describe('', ctx) : m.plugin.get('', ctx);
      } catch {
        pv = undefined;
      }
      return isThenable(pv) ? pv.then((x) => this.mountPointView(u, m, rel, x), () => this.mountPointView(u, m, rel, undefined)) : this.mountPointView(u, m, rel, pv);
    }
    const pv = purpose === 'meta' && m.plugin.describe ? m.plugin.describe(rel, ctx) : m.plugin.get(rel, ctx);
    return isThenable(pv) ? pv.then((x) => this.pluginView(u, m, rel, x)) : this.pluginView(u, m, rel, pv);
  }

  /** The mount point: ACL, Title, TStamp, VerNo and Scope are the local node's; content is the plugin's. */
  private mountPointView(u: string, m: Mount, rel: string, pv: PluginNodeView | undefined): View | undefined {
    const r = this.nodes.get(u);
    if (!r) return undefined;
    const v = this.localView(u, r);
    v.type = pv?.type || r.type;
    v.access = pv?.access ? accessOf(pv.access) : mountPointAccess(m.plugin);
    v.mount = { entry: m, rel };
    return v;
  }

  /** A node inside a mounted plugin. */
  private pluginView(u: string, m: Mount, rel: string, pv: PluginNodeView | undefined): View | undefined {
    if (!pv) return undefined;
    const format: Exclude<NodeFormat, 'b64'> = pv.format === 'b64' ? 'bin' : pv.format;
    return {
      uri: u,
      interior: format === 'node',
      format,
      type: pv.type ?? (format === 'node' ? '' : DEFAULT_TYPE),
      data: format === 'node' ? undefined : (pv.data ?? ''),
      acl: pv.acl ?? '',
      access: pv.access ? accessOf(pv.access) : pluginAccess(m.plugin),
      scope: 'dynamic',
      title: pv.title,
      tstamp: pv.tstamp,
      verNo: pv.verNo,
      mount: { entry: m, rel },
    };
  }


  // The checks below return a value when everything they read answered at once, a promise
  // otherwise, and throw (or reject) with the DM status: callers `await` them either way.

  private existing(u: string, ctx: TreeContext, purpose: 'value' | 'meta' = 'value'): Awaitable<View> {
    const v = this.view(u, ctx, purpose);
    if (isThenable(v)) {
      return v.then((x) => {
        if (!x) throw notFound(u);
        return x;
      });
    }
    if (!v) throw notFound(u);
    return v;
  }

  /** Existence, Get AccessType (405), then Get ACL (425): the order of §3.4 (what the node supports before who asks). */
  private readable(u: string, ctx: TreeContext): Awaitable<View> {
    const v = this.existing(u, ctx);
    return isThenable(v) ? v.then((x) => this.checkGet(u, ctx, x)) : this.checkGet(u, ctx, v);
  }

  private checkGet(u: string, ctx: TreeContext, v: View): Awaitable<View> {
    if (ctx.serverId !== undefined && !v.access.has('Get')) throw notAllowed(u, 'Get');
    const a = this.authorize(u, 'Get', ctx, v);
    return isThenable(a) ? a.then(() => v) : v;
  }

  private async childNames(v: View, ctx: TreeContext): Promise<string[]> {
    if (v.mount) return [...(await v.mount.entry.plugin.children(v.mount.rel, ctx))];
    const set = this.kids.get(v.uri);
    if (!set) return [];
    const names: { name: string; seq: number }[] = [];
    for (const name of set) {
      const r = this.nodes.get(childUri(v.uri, name));
      if (r) names.push({ name, seq: r.seq });
    }
    return names.sort((a, b) => a.seq - b.seq).map((n) => n.name);
  }

  private authorize(u: string, cmd: AclCommand, ctx: TreeContext, v?: View): Awaitable<void> {
    const serverId = ctx.serverId;
    if (serverId === undefined) return;
    const acl = this.aclOf(this.norm(u), ctx, v);
    if (isThenable(acl)) {
      return acl.then((a) => {
        if (!aclAllows(a, cmd, serverId)) throw denied(u, cmd, serverId);
      });
    }
    if (!aclAllows(acl, cmd, serverId)) throw denied(u, cmd, serverId);
  }

  private async allowed(u: string, cmd: AclCommand, ctx: TreeContext): Promise<boolean> {
    return ctx.serverId === undefined || aclAllows(await this.effectiveAcl(u, ctx), cmd, ctx.serverId);
  }

  private checkReplace(v: View, ctx: TreeContext): void {
    if (v.interior) throw new DmStatusError(405, 'TREE_NOT_LEAF', `${v.uri} is interior; its value cannot be replaced`);
    if (ctx.serverId !== undefined && !v.access.has('Replace')) throw notAllowed(v.uri, 'Replace');
  }

  private async checkPropertyReplace(v: View, p: 'ACL' | 'Name' | 'Title', value: string, ctx: TreeContext): Promise<void> {
    const u = v.uri;
    const parent = parentOf(u);
    if (p === 'ACL') {
      validateAcl(value);
      // The root must keep a value (§5.4).
      if (u === ROOT_URI && value === '') throw new DmStatusError(403, 'TREE_ROOT_ACL', 'the root ACL cannot be emptied');
      if (ctx.serverId === undefined) return;
      // §5.4 "Changing ACLs": interior nodes by Replace on the node or on its parent; leaves only by the parent's Replace.
      const ok = v.interior
        ? (await this.allowed(u, 'Replace', ctx)) || (parent !== undefined && (await this.allowed(parent, 'Replace', ctx)))
        : parent !== undefined && (await this.allowed(parent, 'Replace', ctx));
      if (!ok) throw denied(u, 'Replace ?prop=ACL', ctx.serverId);
      return;
    }
    if (p === 'Title') {
      if (Buffer.byteLength(value, 'utf8') > 255) throw new DmStatusError(413, 'TREE_TITLE_TOO_LONG', 'Title is limited to 255 bytes');
    } else {
      if (u === ROOT_URI) throw new DmStatusError(405, 'TREE_ROOT', 'the root cannot be renamed');
      if (v.mount?.rel === '' || (!v.mount && [...this.mounts.keys()].some((mp) => isAtOrBelow(mp, u)))) {
        throw new DmStatusError(405, 'TREE_MOUNTED', `${u} is or contains a mount point`);
      }
      if (v.scope === 'permanent') throw new DmStatusError(405, 'TREE_PERMANENT', `${u} is permanent`);
      if (!isValidNodeName(value)) throw new DmStatusError(400, 'TREE_BAD_NAME', `invalid node name ${JSON.stringify(value)}`);
    }
    if (ctx.serverId !== undefined && !v.access.has('Replace')) throw notAllowed(u, `Replace ?prop=${p}`);
    await this.authorize(u, 'Replace', ctx);
  }

  // ---------------------------------------------------------------- internals: plans and writes

  /** Computes the records an Add creates (checks included); local URIs only. */
  private planLocalAdd(u: string, value: AddOptions, ctx: TreeContext): { changes: Changes } {
    if (this.nodes.has(u)) throw new DmStatusError(418, 'TREE_EXISTS', `${u} already exists`);
    const segs = segmentsOf(u);
    let anc = ROOT_URI;
    let depth = 0;
    for (let i = 0; i < segs.length - 1; i++) {
      const next = childUri(anc, segs[i] as string);
      if (!this.nodes.has(next)) break;
      anc = next;
      depth = i + 1;
    }
    const ancRec = this.rec(anc);
    if (ancRec.format !== 'node') throw new DmStatusError(405, 'TREE_PARENT_IS_LEAF', `${anc} is a leaf; nothing can be added below it`);
    const server = ctx.serverId;
    if (server !== undefined) {
      if (!ancRec.access.includes('Add')) throw notAllowed(anc, 'Add below');
      if (!aclAllows(this.localEffectiveAcl(anc), 'Add', server)) throw denied(anc, 'Add', server);
    }
    const stored = storedValue(value.format, value.data, 'chr');
    const local = server === undefined;
    if (local && value.acl !== undefined) validateAcl(value.acl);
    const lacksReplace = server !== undefined && !aclAllows(this.localEffectiveAcl(anc), 'Replace', server);
    const changes: Changes = new Map();
    const tstamp = formatTStamp(this.now());
    let seq = this.nextSeq;
    let cur = anc;
    for (let i = depth; i < segs.length; i++) {
      cur = childUri(cur, segs[i] as string);
      const last = i === segs.length - 1;
      const interior = !last || stored.format === 'node';
      const rec: NodeRecord = {
        format: interior ? 'node' : stored.format,
        type: last ? (value.type ?? (interior ? '' : DEFAULT_TYPE)) : '',
        // §5.4: new nodes inherit (empty ACL), except the topmost new interior node of a creator without Replace on its parent.
        acl: i === depth && interior && lacksReplace && server !== undefined ? creatorAcl(server) : '',
        access: [...DEFAULT_ACCESS],
        scope: 'dynamic',
        tstamp,
        verNo: 0,
        seq: seq++,
      };
      if (last && local) {
        if (value.acl !== undefined) rec.acl = value.acl;
        if (value.access !== undefined) rec.access = [...value.access];
        if (value.scope !== undefined) rec.scope = value.scope;
        if (value.title !== undefined) rec.title = value.title;
      }
      if (!interior) rec.data = stored.data ?? '';
      changes.set(cur, rec);
    }
    // The parent's value (its child list) changed.
    changes.set(anc, this.touched(ancRec));
    return { changes };
  }

  private localEffectiveAcl(u: string): string {
    for (let p: string | undefined = u; p !== undefined; p = parentOf(p)) {
      const r = this.nodes.get(p);
      if (r && r.acl !== '') return r.acl;
    }
    return ROOT_DEFAULT_ACL;
  }

  private async addMounted(u: string, m: Mount, value: AddOptions, ctx: TreeContext): Promise<OpResult> {
    if (await this.view(u, ctx, 'meta')) throw new DmStatusError(418, 'TREE_EXISTS', `${u} already exists`);
    // The nearest existing ancestor inside the mount (the mount point always exists).
    let anc = parentOf(u) as string;
    let ancView = await this.view(anc, ctx, 'meta');
    while (!ancView && anc !== m.path) {
      anc = parentOf(anc) as string;
      ancView = await this.view(anc, ctx, 'meta');
    }
    if (!ancView) throw notFound(anc);
    if (!ancView.interior) throw new DmStatusError(405, 'TREE_PARENT_IS_LEAF', `${anc} is a leaf; nothing can be added below it`);
    if (ctx.serverId !== undefined && !ancView.access.has('Add')) throw notAllowed(anc, 'Add below');
    await this.authorize(anc, 'Add', ctx, ancView);
    if (!m.plugin.add) throw notAllowed(anc, 'Add below');
    const stored = storedValue(value.format, value.data, 'chr');
    const interior = stored.format === 'node';
    const write: PluginWrite = { format: stored.format, type: value.type ?? (interior ? '' : DEFAULT_TYPE), acl: '' };
    if (!interior) write.data = stored.data ?? '';
    // §5.4 "New nodes" when the node is created directly below an existing one; implicit
    // intermediate nodes are created by the plugin, which decides their ACL.
    if (ctx.serverId !== undefined && interior && parentOf(u) === anc && !(await this.allowed(anc, 'Replace', ctx))) {
      write.acl = creatorAcl(ctx.serverId);
    }
    const r = await m.plugin.add(relativeTo(u, m.path), write, ctx);
    this.mountChanged();
    return { status: r?.status ?? 200 };
  }

  private subtree(u: string): string[] {
    const out: string[] = [];
    const walk = (x: string): void => {
      out.push(x);
      for (const name of this.kids.get(x) ?? []) {
        const c = childUri(x, name);
        if (this.nodes.has(c)) walk(c);
      }
    };
    walk(u);
    return out;
  }

  private planDelete(u: string): Changes {
    const changes: Changes = new Map();
    for (const d of this.subtree(u)) changes.set(d, undefined);
    const p = parentOf(u);
    if (p !== undefined) changes.set(p, this.touched(this.rec(p)));
    return changes;
  }

  private planRename(u: string, name: string): Changes {
    const p = parentOf(u) as string;
    const target = childUri(p, name);
    const changes: Changes = new Map();
    if (target === u) return changes;
    if (this.nodes.has(target)) throw new DmStatusError(418, 'TREE_EXISTS', `${target} already exists`);
    const moved = this.subtree(u);
    for (const d of moved) checkUriLimits(target + d.slice(u.length), this.limits);
    for (const d of moved) changes.set(d, undefined);
    for (const d of moved) {
      const rec = this.rec(d);
      changes.set(target + d.slice(u.length), d === u ? this.touched(rec) : rec);
    }
    changes.set(p, this.touched(this.rec(p)));
    return changes;
  }

  private touched(rec: NodeRecord): NodeRecord {
    // §3.8: TStamp is the time of the last change; VerNo is 16-bit and wraps.
    return { ...rec, tstamp: formatTStamp(this.now()), verNo: (rec.verNo + 1) & 0xffff };
  }

  private mountChanged(): void {
    if (this.tx) this.tx.mountChanged = true;
  }

  /** Writes one operation's changes as one batch, then mirrors them in memory and the undo log. */
  private async write(changes: Changes): Promise<void> {
    if (changes.size === 0) return;
    try {
      await this.section.batch([...changes]);
    } catch (err) {
      throw new GwError('TREE_STORE_WRITE', 'the tree store rejected a write', { status: 510, cause: err });
    }
    for (const [k, v] of changes) {
      if (this.tx && !this.tx.undo.has(k)) this.tx.undo.set(k, this.nodes.get(k));
      this.setMem(k, v);
      if (v) this.nextSeq = Math.max(this.nextSeq, v.seq + 1);
    }
  }

  private setMem(k: string, v: NodeRecord | undefined): void {
    const p = parentOf(k);
    const name = nameOf(k);
    if (v) {
      this.nodes.set(k, v);
      if (p !== undefined) {
        let s = this.kids.get(p);
        if (!s) this.kids.set(p, (s = new Set()));
        s.add(name);
      }
    } else {
      this.nodes.delete(k);
      if (p !== undefined) {
        const s = this.kids.get(p);
        s?.delete(name);
        if (s && s.size === 0) this.kids.delete(p);
      }
    }
  }

  /** Serialises local mutations so check-then-write stays atomic against concurrent callers. */
  private async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const prev = this.tail;
    let release!: () => void;
    this.tail = new Promise<void>((r) => (release = r));
    await prev;
    try {
      return await fn();
    } finally {
      release();
    }
  }
}

function propertyName(prop: string): NodeProperty {
  const p = NODE_PROPERTIES.find((n) => n === prop);
  if (!p) throw new DmStatusError(406, 'TREE_UNSUPPORTED', `unknown property ${JSON.stringify(prop)}`);
  return p;
}
