/**
 * URI helpers for the management tree (notes §3.8 "URIs"): normalisation (`A/B` and `./A/B` are the
 * same node), parent/child arithmetic, the `?list=` / `?prop=` target suffixes, and the
 * MaxDepth/MaxTotLen/MaxSegLen limits that give 414.
 */
import { DmStatusError } from '../errors.ts';

/** The normalised URI of the root node. */
export const ROOT_URI = '.';

/** URI limits from `./DevDetail/URI/*` (§6.1); 0 or absent means unlimited. */
export interface UriLimits {
  maxDepth?: number;
  maxTotLen?: number;
  maxSegLen?: number;
}

/** A Target LocURI split into the node URI and an optional `?list=` or `?prop=` request (§3.3 Get). */
export interface TargetUri {
  /** The node part, as sent (not yet normalised). */
  uri: string;
  /** The value of `?list=`, e.g. `Struct`, `StructData`, `TNDS+ACL`. */
  list?: string;
  /** The value of `?prop=`, e.g. `ACL`. */
  prop?: string;
}

/**
 * Splits `uri?list=...` / `uri?prop=...`; any other query gives DmStatusError 406, because the
 * notes define no other suffix and an unknown one is an optional feature we do not support.
 */
export function parseTargetUri(raw: string): TargetUri {
  const q = raw.indexOf('?');
  if (q < 0) return { uri: raw };
  const uri = raw.slice(0, q);
  const query = raw.slice(q + 1);
  const eq = query.indexOf('=');
  const key = eq < 0 ? query : query.slice(0, eq);
  // Keep the value raw: `+` in `TNDS+ACL` is a separator of the list syntax, not an encoded space.
  const value = eq < 0 ? '' : query.slice(eq + 1);
  if (key === 'list') return { uri, list: value };
  if (key === 'prop') return { uri, prop: value };
  throw new DmStatusError(406, 'TREE_UNSUPPORTED', `unsupported URI query ${JSON.stringify(query)}`);
}

/** Formats a target URI with its `?prop=` suffix (the Source LocURI of a property Results item). */
export function propUri(uri: string, prop: string): string {
  return `${uri}?prop=${prop}`;
}

/**
 * Normalises a node URI to `.` or `./A/B` (§3.8: `./A/B` and `A/B` are equivalent). A single
 * trailing `/` is tolerated; empty, `.` and `..` segments are rejected with 400 because the tree has
 * no relative navigation.
 */
export function normalizeUri(raw: string): string {
  // Already normal (what the runtime itself builds): returned as is, with no split and join.
  if (raw.length > 2 && raw.charCodeAt(0) === 46 && raw.charCodeAt(1) === 47 && isNormalTail(raw)) return raw;
  let s = raw;
  if (s === '.' || s === './') return ROOT_URI;
  if (s.startsWith('./')) s = s.slice(2);
  if (s.endsWith('/')) s = s.slice(0, -1);
  if (s === '' || s.startsWith('/')) throw new DmStatusError(400, 'TREE_BAD_URI', `invalid URI ${JSON.stringify(raw)}`);
  const segs = s.split('/');
  for (const seg of segs) {
    if (seg === '' || seg === '.' || seg === '..' || seg.includes('?')) {
      throw new DmStatusError(400, 'TREE_BAD_URI', `invalid URI ${JSON.stringify(raw)}`);
    }
  }
  return `./${segs.join('/')}`;
}

/** Whether `./` + the rest of `u` is a normal URI: segments not empty, `.` or `..`, no `?`, no trailing `/`. */
function isNormalTail(u: string): boolean {
  let segStart = 2;
  for (let i = 2; i <= u.length; i++) {
    const c = i < u.length ? u.charCodeAt(i) : 47;
    if (c === 63) return false; // '?'
    if (c !== 47) continue;
    const len = i - segStart;
    if (len === 0) return false;
    if (u.charCodeAt(segStart) === 46 && (len === 1 || (len === 2 && u.charCodeAt(segStart + 1) === 46))) return false;
    segStart = i + 1;
  }
  return true;
}

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 127) return false;
  return true;
}

/** The segments of a normalised URI (`[]` for the root). */
export function segmentsOf(uri: string): string[] {
  return uri === ROOT_URI ? [] : uri.slice(2).split('/');
}

/** The parent of a normalised URI, or undefined for the root. */
export function parentOf(uri: string): string | undefined {
  if (uri === ROOT_URI) return undefined;
  const i = uri.lastIndexOf('/');
  return i <= 1 ? ROOT_URI : uri.slice(0, i);
}

/** The last segment of a normalised URI (`.` for the root). */
export function nameOf(uri: string): string {
  return uri === ROOT_URI ? ROOT_URI : uri.slice(uri.lastIndexOf('/') + 1);
}

/** Joins a normalised parent URI and a child name. */
export function childUri(parent: string, name: string): string {
  return parent === ROOT_URI ? `./${name}` : `${parent}/${name}`;
}

/** True when `uri` is `ancestor` itself or lies below it (both normalised). */
export function isAtOrBelow(uri: string, ancestor: string): boolean {
  if (ancestor === ROOT_URI) return true;
  return uri === ancestor || uri.startsWith(`${ancestor}/`);
}

/** The path of `uri` relative to `base` ('' when equal); both normalised and `uri` at or below `base`. */
export function relativeTo(uri: string, base: string): string {
  if (uri === base) return '';
  return base === ROOT_URI ? uri.slice(2) : uri.slice(base.length + 1);
}

/** True when `name` can be a node name: non-empty, no `/` (§3.8), not `.`/`..`, no `?` (it starts a query). */
export function isValidNodeName(name: string): boolean {
  return name !== '' && name !== '.' && name !== '..' && !name.includes('/') && !name.includes('?');
}

/**
 * Throws DmStatusError 414 when a normalised URI exceeds the limits (§3.8). Lengths are UTF-8
 * bytes; MaxTotLen counts the whole `./A/B` form, depth counts the segments below the root.
 */
export function checkUriLimits(uri: string, limits: UriLimits): void {
  const { maxDepth = 0, maxTotLen = 0, maxSegLen = 0 } = limits;
  if (maxDepth === 0 && maxTotLen === 0 && maxSegLen === 0) return;
  // The common case, checked without splitting: ASCII URIs well within every limit.
  if (maxSegLen > 0 && maxTotLen > 0 && uri.length <= Math.min(maxSegLen, maxTotLen) && (maxDepth === 0 || uri.length <= 2 * maxDepth) && isAscii(uri)) return;
  const segs = segmentsOf(uri);
  if (maxDepth > 0 && segs.length > maxDepth) {
    throw new DmStatusError(414, 'TREE_URI_TOO_LONG', `${uri}: depth ${segs.length} exceeds MaxDepth ${maxDepth}`);
  }
  if (maxTotLen > 0 && Buffer.byteLength(uri, 'utf8') > maxTotLen) {
    throw new DmStatusError(414, 'TREE_URI_TOO_LONG', `${uri}: length exceeds MaxTotLen ${maxTotLen}`);
  }
  if (maxSegLen > 0) {
    for (const s of segs) {
      if (Buffer.byteLength(s, 'utf8') > maxSegLen) {
        throw new DmStatusError(414, 'TREE_URI_TOO_LONG', `${uri}: segment ${JSON.stringify(s)} exceeds MaxSegLen ${maxSegLen}`);
      }
    }
  }
}
