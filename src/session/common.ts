/**
 * Pieces shared by the client and server sides of a DM session: status and alert codes, message
 * packing under MaxMsgSize (notes §3.7), large-object chunking and reassembly, CmdID numbering.
 */
import { encodeSyncML } from '../codec/syncml.ts';
import type { Command, DataValue, Encoding, Item, Meta, StatusCommand, SyncHdr, SyncMLMessage } from '../codec/model.ts';

/** Session alert codes (notes §3.5). */
export const Alert = {
  Display: '1100',
  Confirm: '1101',
  TextInput: '1102',
  SingleChoice: '1103',
  MultipleChoice: '1104',
  ServerInitiated: '1200',
  ClientInitiated: '1201',
  NextMessage: '1222',
  SessionAbort: '1223',
  ClientEvent: '1224',
  NoEndOfData: '1225',
  Generic: '1226',
} as const;

/** The VerProto values we speak; 1.3 is accepted as 1.2 (notes §3.12). */
export const SUPPORTED_PROTOCOLS = ['DM/1.2', 'DM/1.3'];

/** Smallest MaxMsgSize we honour; below this no useful message fits, so a peer asking for less gets this. */
export const MIN_MSG_SIZE = 1024;

/** A command or status waiting to be placed into a message (CmdID assigned at packing time). */
export type Outgoing = DistributiveOmit<Command, 'cmdID'>;
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** Returns a Status for the SyncHdr of `hdr` (CmdRef 0, Cmd SyncHdr; notes §3.2). */
export function hdrStatus(hdr: SyncHdr, code: number, extra: Partial<StatusCommand> = {}): Outgoing {
  return {
    kind: 'Status',
    msgRef: hdr.msgID,
    cmdRef: '0',
    cmd: 'SyncHdr',
    targetRefs: [hdr.target.locURI],
    sourceRefs: [hdr.source.locURI],
    data: String(code),
    items: [],
    ...extra,
  } as Outgoing;
}

/** Returns a Status for a received command. */
export function cmdStatus(msgRef: string, c: Command, code: number, items: Item[] = []): Outgoing {
  const targetRefs: string[] = [];
  const sourceRefs: string[] = [];
  if ('items' in c) {
    for (const it of c.items) {
      if (it.target) targetRefs.push(it.target.locURI);
      if (it.source) sourceRefs.push(it.source.locURI);
    }
  }
  const name = c.kind === 'Unsupported' ? c.name : c.kind;
  return { kind: 'Status', msgRef, cmdRef: c.cmdID, cmd: name, targetRefs, sourceRefs, data: String(code), items };
}

/** Size in bytes a value occupies as Data. */
export function dataSize(d: DataValue | undefined): number {
  if (d === undefined) return 0;
  return typeof d === 'string' ? Buffer.byteLength(d) : d.byteLength;
}

/**
 * Packs outgoing commands into one message of at most `maxMsgSize` bytes. Returns the message and
 * how many of the queued commands went in. Statuses are packed first when the caller orders them
 * first. A command that cannot fit even alone is left to the caller (who splits it as a large
 * object or reports 413/517).
 */
export function packMessage(
  hdr: SyncHdr,
  queue: Outgoing[],
  opts: { encoding: Encoding; maxMsgSize: number; final: boolean; trailer?: Outgoing[] },
): { message: SyncMLMessage; taken: number } {
  const trailer = opts.trailer ?? [];
  const build = (cmds: Outgoing[], final: boolean): SyncMLMessage => ({ hdr, body: numberCommands(cmds), final });
  const limit = Math.max(opts.maxMsgSize, MIN_MSG_SIZE);
  const fits = (cmds: Outgoing[], final: boolean): boolean => encodeSyncML(build(cmds, final), opts.encoding).byteLength <= limit;
  // Grow greedily with a size estimate, then confirm with a real encoding: exact and still cheap.
  let taken = 0;
  const base = encodeSyncML(build([...trailer], true), opts.encoding).byteLength;
  let estimate = base;
  const empty = encodeSyncML(build([], false), opts.encoding).byteLength;
  for (const c of queue) {
    const s = encodeSyncML(build([c], false), opts.encoding).byteLength - empty;
    if (estimate + s > limit) break;
    estimate += s;
    taken++;
  }
  while (taken > 0 && !fits([...queue.slice(0, taken), ...trailer], opts.final && taken === queue.length)) taken--;
  const all = taken === queue.length;
  return { message: build([...queue.slice(0, taken), ...trailer], opts.final && all), taken };
}

/**
 * Assigns CmdIDs 1, 2, 3... in document order, descending into Atomic/Sequence, so every command
 * of a message (nested ones included) has an ID unique within the message (notes §3.2).
 */
export function numberCommands(cmds: Outgoing[]): Command[] {
  let n = 0;
  const walk = (c: Outgoing | Command): Command => {
    const cmdID = String(++n);
    if (c.kind === 'Atomic' || c.kind === 'Sequence') {
      return { ...c, cmdID, commands: c.commands.map(walk) } as Command;
    }
    return { ...c, cmdID } as Command;
  };
  return cmds.map(walk);
}

/** Splits a Data value into chunks of at most `chunk` bytes (strings split on UTF-8 boundaries safely). */
export function splitData(d: DataValue, chunk: number): DataValue[] {
  const bytes = typeof d === 'string' ? Buffer.from(d, 'utf8') : Buffer.from(d);
  const out: DataValue[] = [];
  let i = 0;
  while (i < bytes.length) {
    let end = Math.min(i + chunk, bytes.length);
    if (typeof d === 'string') {
      // Do not cut inside a UTF-8 sequence: back off to the start of a character.
      while (end < bytes.length && end > i && (bytes[end]! & 0xc0) === 0x80) end--;
      out.push(bytes.subarray(i, end).toString('utf8'));
    } else {
      out.push(new Uint8Array(bytes.subarray(i, end)));
    }
    i = end;
  }
  return out.length ? out : [d];
}

/**
 * Builds the chunk commands of a large object: the first chunk carries Meta Size (total size after
 * encoding), every chunk except the last carries MoreData (notes §3.7, "Large objects").
 */
export function largeObjectChunks<T extends { items: Item[]; meta?: Meta }>(cmd: T, chunk: number): T[] {
  const item = cmd.items[0]!;
  const parts = splitData(item.data ?? '', chunk);
  const total = dataSize(item.data);
  return parts.map((data, i) => {
    const meta: Meta = { ...(item.meta ?? {}) };
    if (i === 0) meta.size = total;
    else delete meta.size;
    const it: Item = { ...item, data, meta };
    if (i < parts.length - 1) it.moreData = true;
    else delete it.moreData;
    return { ...cmd, items: [it] };
  });
}

/**
 * Splits off the largest leading piece of a single-item command's data for which `fits(piece)`
 * holds, for a large object sent one message at a time (notes §3.7). Every piece but the last
 * carries MoreData; only the first (`first`) carries Meta Size, the total size. The rest is
 * returned whole, so the next message can split it again to whatever room it has. Sizing each
 * piece by its encoded form matters: XML escaping can make Data several times larger than the
 * raw bytes, and pieces cut by raw size alone did not fit their message. Returns undefined when
 * not even `minBytes` of data fit.
 */
/**
 * A chunk `it` of the large object `original`, with the original's Meta and Meta Size set to
 * `size` (the whole object's size, on the first chunk only) or removed.
 */
export function withChunkMeta(original: Item, it: Item, size: number | undefined): Item {
  const meta: Meta = { ...(original.meta ?? {}) };
  if (size === undefined) delete meta.size;
  else meta.size = size;
  const out: Item = { ...it };
  if (Object.keys(meta).length) out.meta = meta;
  else delete out.meta;
  return out;
}

export function splitLargeObject<T extends { items: Item[] }>(
  cmd: T,
  opts: { first: boolean; fits: (piece: T) => boolean; minBytes?: number; maxBytes?: number },
): { piece: T; rest: T } | undefined {
  const item = cmd.items[0]!;
  const data = item.data ?? '';
  const text = typeof data === 'string';
  const bytes = text ? Buffer.from(data, 'utf8') : Buffer.from(data);
  if (bytes.length < 2) return undefined;
  const slice = (from: number, to: number): DataValue => (text ? bytes.subarray(from, to).toString('utf8') : new Uint8Array(bytes.subarray(from, to)));
  // Never cut inside a UTF-8 sequence.
  const boundary = (n: number): number => {
    if (!text) return n;
    while (n > 0 && n < bytes.length && (bytes[n]! & 0xc0) === 0x80) n--;
    return n;
  };
  const withMeta = (it: Item, size: number | undefined): Item => withChunkMeta(item, it, size);
  const pieceOf = (n: number): T =>
    ({ ...cmd, items: [withMeta({ ...item, data: slice(0, n), moreData: true }, opts.first ? bytes.length : undefined)] }) as T;
  let lo = 0;
  // Leave at least one byte for the rest; and a piece never holds more raw bytes than the message
  // may (encoding only adds), so the search starts there, not at the whole object: starting at the
  // whole object made cutting a large object into N pieces encode O(N) halves of it per piece.
  let hi = Math.min(bytes.length - 1, opts.maxBytes ?? Number.POSITIVE_INFINITY);
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    const n = boundary(mid);
    if (n > 0 && opts.fits(pieceOf(n))) lo = mid;
    else hi = mid - 1;
  }
  const n = boundary(lo);
  if (n < (opts.minBytes ?? 1)) return undefined;
  const restItem: Item = withMeta({ ...item, data: slice(n, bytes.length) }, undefined);
  delete restItem.moreData;
  return { piece: pieceOf(n), rest: { ...cmd, items: [restItem] } as T };
}

/** Reassembles large objects arriving as MoreData chunks; one pending object at a time (notes §3.7). */
export class LargeObjectBuffer {
  private pending: { key: string; parts: DataValue[]; size: number | undefined; first: Item } | undefined;

  /** True while a chunked object is being received. */
  get active(): boolean {
    return this.pending !== undefined;
  }

  /** The key (target or source URI) of the object being received. */
  get key(): string | undefined {
    return this.pending?.key;
  }

  /**
   * Feeds one item. Returns `{ state: 'partial' }` for a chunk (answer 213), `{ state: 'complete', item }`
   * with the reassembled item, or `{ state: 'mismatch' }` when the size differs (answer 424).
   */
  feed(key: string, item: Item): { state: 'partial' } | { state: 'complete'; item: Item } | { state: 'mismatch'; expected: number; got: number } {
    if (!this.pending) {
      if (!item.moreData) return { state: 'complete', item };
      this.pending = { key, parts: [item.data ?? ''], size: item.meta?.size, first: item };
      return { state: 'partial' };
    }
    this.pending.parts.push(item.data ?? '');
    if (item.moreData) return { state: 'partial' };
    const { parts, size, first } = this.pending;
    this.pending = undefined;
    const binary = parts.some((p) => typeof p !== 'string');
    const joined: DataValue = binary
      ? new Uint8Array(Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p)))))
      : (parts as string[]).join('');
    const got = dataSize(joined);
    if (size !== undefined && size !== got) return { state: 'mismatch', expected: size, got };
    const meta = { ...(first.meta ?? {}) };
    delete meta.size;
    const out: Item = { ...first, data: joined };
    delete out.moreData;
    if (Object.keys(meta).length) out.meta = meta;
    else delete out.meta;
    return { state: 'complete', item: out };
  }

  /** Drops a pending object (a new command interrupted it: the caller answers 1225). */
  abandon(): Item | undefined {
    const first = this.pending?.first;
    this.pending = undefined;
    return first;
  }
}

/** True when a status code means success (2xx). */
export function isSuccess(code: number): boolean {
  return code >= 200 && code < 300;
}

/** The alert code of an Alert command as a string ('' when absent). */
export function alertCode(c: Command): string {
  return c.kind === 'Alert' ? (c.data ?? '').trim() : '';
}
