/**
 * Node formats and values (notes §3.8 "Meta"): which Format names exist, how an incoming Data value
 * becomes the stored text of a leaf, and the checks that keep a leaf's value consistent with its
 * Format. Binary values are stored as base64 text with Format `bin`, because XML carries binary as
 * b64 and the store is JSON.
 */
import type { DataValue } from '../codec/model.ts';
import { DmStatusError } from '../errors.ts';

/** A node Format (§3.8); `node` marks an interior node. `b64` is a wire format only: it is stored as `bin`. */
export type NodeFormat = 'node' | 'chr' | 'int' | 'bool' | 'bin' | 'b64' | 'xml' | 'date' | 'time' | 'float' | 'null';

/** Every Format name the tree accepts. */
export const NODE_FORMATS: readonly NodeFormat[] = ['node', 'chr', 'int', 'bool', 'bin', 'b64', 'xml', 'date', 'time', 'float', 'null'];

/** Default Meta Format of a leaf (§3.8). */
export const DEFAULT_FORMAT = 'chr';

/** Default Meta Type of a leaf (§3.8). */
export const DEFAULT_TYPE = 'text/plain';

const FORMATS = new Set<string>(NODE_FORMATS);

/** True for a Format name of §3.8 (compared in lower case, as the spec spells them). */
export function isNodeFormat(s: string): s is NodeFormat {
  return FORMATS.has(s);
}

const B64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const INT = /^[+-]?\d+$/;
const FLOAT = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/** True when `s` is canonical padded base64 (whitespace not allowed). */
export function isBase64(s: string): boolean {
  return B64.test(s);
}

/** A leaf value as the tree stores it: a concrete Format (never `b64` or `node`) and text. */
export interface StoredValue {
  format: Exclude<NodeFormat, 'b64'>;
  data: string | undefined;
}

/**
 * Turns an incoming Format and Data into what the tree stores. `fallback` is the Format used when
 * none is given (chr for Add; the node's current Format for Replace, so a server that omits Meta on
 * Replace does not silently turn an int into chr). Raw bytes without a text Format become `bin`;
 * Format `b64` is decoded only as far as its storage: the b64 text itself is kept, with Format `bin`
 * (§3.8 "Binary data over XML must use Meta Format b64 and is stored as bin").
 * Throws 415 for an unknown Format and 400 for a value that does not fit its Format.
 */
export function storedValue(format: string | undefined, data: DataValue | undefined, fallback: Exclude<NodeFormat, 'b64'>): StoredValue {
  const f = format === undefined || format === '' ? undefined : format.toLowerCase();
  if (f !== undefined && !isNodeFormat(f)) {
    throw new DmStatusError(415, 'TREE_BAD_FORMAT', `unsupported Format ${JSON.stringify(format)}`);
  }
  if (f === 'node') return { format: 'node', data: undefined };
  let out: StoredValue;
  if (data instanceof Uint8Array) {
    if (f === undefined || f === 'bin') out = { format: 'bin', data: Buffer.from(data).toString('base64') };
    // WBXML may carry b64 text as OPAQUE: the bytes are then the b64 characters.
    else if (f === 'b64') out = { format: 'bin', data: stripSpace(Buffer.from(data).toString('latin1')) };
    else out = { format: f, data: Buffer.from(data).toString('utf8') };
  } else if (f === 'b64') {
    out = { format: 'bin', data: stripSpace(data ?? '') };
  } else {
    const g = f ?? fallback;
    out = { format: g, data: g === 'bin' ? stripSpace(data ?? '') : (data ?? '') };
  }
  checkValue(out.format, out.data ?? '');
  return out;
}

function stripSpace(s: string): string {
  // b64 in XML may be wrapped over lines.
  return s.replace(/\s+/g, '');
}

/** Throws DmStatusError 400 `TREE_BAD_VALUE` when `data` is not a valid value of `format`; '' (a cleared value) is always accepted. */
export function checkValue(format: NodeFormat, data: string): void {
  if (data === '') return;
  let ok = true;
  switch (format) {
    case 'int': {
      // §3.8: int is 32-bit signed.
      ok = INT.test(data) && Number(data) >= -2147483648 && Number(data) <= 2147483647;
      break;
    }
    case 'bool':
      ok = /^(true|false)$/i.test(data);
      break;
    case 'float':
      ok = FLOAT.test(data) && Number.isFinite(Number(data));
      break;
    case 'bin':
    case 'b64':
      ok = isBase64(data);
      break;
    case 'null':
      ok = false;
      break;
    default:
      ok = true;
  }
  if (!ok) throw new DmStatusError(400, 'TREE_BAD_VALUE', `value ${JSON.stringify(data.slice(0, 40))} is not a valid ${format}`);
}

/** The Size property of a leaf: bytes of the value (decoded bytes for bin). */
export function valueSize(format: NodeFormat, data: string | undefined): number {
  if (data === undefined) return 0;
  if (format === 'bin') return Buffer.from(data, 'base64').length;
  return Buffer.byteLength(data, 'utf8');
}

/** The Meta Format a stored Format travels with: bin goes out as b64 (§3.8, XML carries binary as b64). */
export function wireFormat(format: NodeFormat): NodeFormat {
  return format === 'bin' ? 'b64' : format;
}
