/**
 * The ACL property grammar and decisions of OMA DM (notes §5.4). Pure functions: parsing,
 * formatting, validation, the permission check and the removal of a server identity. Inheritance
 * (an empty ACL takes the nearest ancestor's whole ACL) is resolved by the tree, which then asks
 * `aclAllows` about the one effective ACL string.
 */
import { DmStatusError } from '../errors.ts';

/** The commands an ACL entry can name; there is no Copy entry (§5.4). */
export type AclCommand = 'Add' | 'Delete' | 'Exec' | 'Get' | 'Replace';

/** Every ACL command, in the order `formatAcl` never reorders but documentation lists them. */
export const ACL_COMMANDS: readonly AclCommand[] = ['Add', 'Delete', 'Exec', 'Get', 'Replace'];

/** One `cmd=server+server` entry of an ACL. */
export interface AclEntry {
  cmd: AclCommand;
  servers: string[];
}

/** The root's default ACL; the root's `Add=*` should stay (§5.4). */
export const ROOT_DEFAULT_ACL = 'Add=*&Get=*';

/** The wildcard server: any authenticated server, overriding named ids for that command. */
export const ACL_ANY = '*';

const COMMANDS = new Set<string>(ACL_COMMANDS);

/** True for a command name the grammar accepts (case-sensitive, as in the spec's ABNF). */
export function isAclCommand(s: string): s is AclCommand {
  return COMMANDS.has(s);
}

/**
 * True when `s` is a valid server identity in an ACL: one or more printable, non-space characters
 * other than `=`, `&`, `*`, `+` (§5.4 grammar). `*` alone is the wildcard, not an identity.
 */
export function isAclServerId(s: string): boolean {
  if (s.length === 0) return false;
  for (const ch of s) {
    const c = ch.codePointAt(0) ?? 0;
    // Control characters, space and DEL are not "printable, non-space"; other Unicode is allowed.
    if (c <= 0x20 || c === 0x7f || (c >= 0x80 && c <= 0x9f) || /\s/u.test(ch)) return false;
    if (ch === '=' || ch === '&' || ch === '*' || ch === '+') return false;
  }
  return true;
}

function syntax(acl: string, why: string): DmStatusError {
  // 400: a malformed property value is a bad request, not a permission problem.
  return new DmStatusError(400, 'TREE_ACL_SYNTAX', `invalid ACL ${JSON.stringify(acl)}: ${why}`);
}

/** Parsed ACLs by string: a gateway checks the same few ACLs for every member of a fanout. */
const parsed = new Map<string, readonly AclEntry[]>();
const PARSED_MAX = 4096;

/**
 * The entries of an ACL, parsed once per distinct string (read-only, shared: callers that change
 * entries copy them). Throws like `parseAcl`.
 */
export function aclEntries(acl: string): readonly AclEntry[] {
  let e = parsed.get(acl);
  if (e) return e;
  e = Object.freeze(parseAcl(acl));
  if (parsed.size >= PARSED_MAX) parsed.clear();
  parsed.set(acl, e);
  return e;
}

/** Parses an ACL string into its entries (order kept); throws DmStatusError 400 `TREE_ACL_SYNTAX` when invalid. */
export function parseAcl(acl: string): AclEntry[] {
  if (acl === '') return [];
  const entries: AclEntry[] = [];
  for (const part of acl.split('&')) {
    if (part === '') throw syntax(acl, 'empty entry');
    const eq = part.indexOf('=');
    if (eq < 0) throw syntax(acl, `entry ${JSON.stringify(part)} has no "="`);
    const cmd = part.slice(0, eq);
    if (!isAclCommand(cmd)) throw syntax(acl, `unknown command ${JSON.stringify(cmd)}`);
    const list = part.slice(eq + 1);
    // "A command must not appear without at least one server" (§5.4).
    if (list === '') throw syntax(acl, `${cmd} has no server`);
    const servers = list.split('+');
    for (const s of servers) {
      if (s !== ACL_ANY && !isAclServerId(s)) throw syntax(acl, `bad server id ${JSON.stringify(s)} for ${cmd}`);
    }
    entries.push({ cmd, servers });
  }
  return entries;
}

/** Formats entries back into an ACL string; entries without servers are dropped (they would be invalid). */
export function formatAcl(entries: readonly AclEntry[]): string {
  return entries
    .filter((e) => e.servers.length > 0)
    .map((e) => `${e.cmd}=${e.servers.join('+')}`)
    .join('&');
}

/** True when `acl` follows the §5.4 grammar. */
export function isValidAcl(acl: string): boolean {
  try {
    parseAcl(acl);
    return true;
  } catch {
    return false;
  }
}

/** Throws DmStatusError 400 `TREE_ACL_SYNTAX` unless `acl` follows the §5.4 grammar; returns it unchanged. */
export function validateAcl(acl: string): string {
  parseAcl(acl);
  return acl;
}

/**
 * True when the (already resolved, i.e. inherited) ACL lets `serverId` run `cmd`: some entry for
 * `cmd` lists `*` or exactly `serverId` (§5.4 "Checking"). Repeated entries for one command are
 * all consulted. An empty ACL allows nothing, because inheritance has been resolved by the caller.
 */
export function aclAllows(acl: string | readonly AclEntry[], cmd: AclCommand, serverId: string): boolean {
  const entries = typeof acl === 'string' ? aclEntries(acl) : acl;
  for (const e of entries) {
    if (e.cmd !== cmd) continue;
    for (const s of e.servers) if (s === ACL_ANY || s === serverId) return true;
  }
  return false;
}

/**
 * Removes a server identity from an ACL (§5.4 "Deleting a server identity"): the id disappears
 * from every entry and entries left without servers are dropped, so an ACL left empty becomes
 * inherited. For the root (`root: true`) an entry left without servers becomes `*` instead,
 * because the root must keep a value.
 */
export function removeServerFromAcl(acl: string, serverId: string, options: { root?: boolean } = {}): string {
  const out: AclEntry[] = [];
  for (const e of parseAcl(acl)) {
    const servers = e.servers.filter((s) => s !== serverId);
    if (servers.length > 0) out.push({ cmd: e.cmd, servers });
    else if (options.root) out.push({ cmd: e.cmd, servers: [ACL_ANY] });
  }
  const text = formatAcl(out);
  return options.root && text === '' ? ROOT_DEFAULT_ACL : text;
}

/**
 * The ACL the device gives a new interior node when its creator lacks Replace on the parent
 * (§5.4 "New nodes"); written in the reference C client's order `Get=*&Add=id&Delete=id&Replace=id`.
 */
export function creatorAcl(serverId: string): string {
  return `Get=*&Add=${serverId}&Delete=${serverId}&Replace=${serverId}`;
}
