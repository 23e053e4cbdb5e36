/**
 * The mandatory standard objects (notes §6.1, §5.3): ./DevInfo, ./DevDetail and ./DMAcc/<x>, their
 * default ACLs, and typed readers for the session layer (accounts with credentials and nonces,
 * DevInfo values). Everything here runs as a local operation (the device's own code), so secrets
 * without Get AccessType are still readable by the client itself.
 */
import { DmStatusError } from '../errors.ts';
import { secretVerifier } from '../codec/auth.ts';
import { formatAcl, parseAcl } from './acl.ts';
import { isBase64 } from './format.ts';
import { type AccessType, type DmTree, LOCAL, type NodeScope } from './tree.ts';

/** MOID of DevInfo (§6.1). */
export const DEVINFO_MOID = 'urn:oma:mo:oma-dm-devinfo:1.0';
/** MOID of DevDetail (§6.1). */
export const DEVDETAIL_MOID = 'urn:oma:mo:oma-dm-devdetail:1.0';
/** MOID of DMAcc as the reference C client uses it (§5.3). */
export const DMACC_MOID = 'urn:oma:mo:oma-dm-dmacc:1.0';
/** The DMAcc Type used in bootstrap TNDS (§5.3); accepted as a DMAcc MOID too. */
export const DMACC_W7_TYPE = 'org.openmobilealliance/1.0/w7';

/** AAuthType values of DMAcc (§5.1). */
export type DmAuthType = 'BASIC' | 'DIGEST' | 'HMAC' | 'X509' | 'SECURID' | 'SAFEWORD' | 'DIGIPASS' | 'HTTP-BASIC' | 'HTTP-DIGEST' | 'TRANSPORT';

/** AAuthLevel values used by DM (§5.3): the client's own credentials and the server's. */
export type DmAuthLevel = 'CLCRED' | 'SRVCRED';

/** DevInfo values (§6.1). */
export interface DevInfo {
  devId: string;
  man: string;
  mod: string;
  dmV: string;
  lang: string;
}

/** DevDetail values (§6.1); the URI limits are 0 for unlimited. */
export interface DevDetailConfig {
  devTyp: string;
  oem: string;
  fwV: string;
  swV: string;
  hwV: string;
  lrgObj: boolean;
  maxDepth: number;
  maxTotLen: number;
  maxSegLen: number;
}

/** One credential of an account (an AppAuth/<x> entry); `nonce` is base64. */
export interface DmCredentialConfig {
  type: DmAuthType;
  name: string;
  secret: string;
  nonce?: string;
}

/** A DM account to install under ./DMAcc/<name> (§5.3). */
export interface DmAccountConfig {
  /** Node name `<x>` under ./DMAcc. */
  name: string;
  /** ServerID: the server's ACL identity and Package 0 name. */
  serverId: string;
  /** Optional display name (the `Name` leaf). */
  displayName?: string;
  /** Server URL (AppAddr/1/Addr, AddrType URI). */
  address: string;
  /** AAuthPref, the preferred authentication type. */
  authPref?: DmAuthType;
  /** CLCRED: how this client authenticates to the server. */
  client: DmCredentialConfig;
  /** SRVCRED: how the server authenticates to this client (also the Package 0 secret and nonce). */
  server: DmCredentialConfig;
}

/** Everything `installStandardObjects` creates. */
export interface StandardObjectsConfig {
  devInfo: DevInfo;
  devDetail: DevDetailConfig;
  accounts: DmAccountConfig[];
}

/** A credential read back from DMAcc; `type` is the stored AAuthType text, `nonce` base64. */
export interface DmCredential {
  type: string;
  name: string;
  secret: string;
  nonce: string;
}

/** A DM account read back from ./DMAcc. */
export interface DmAccount {
  /** Node name under ./DMAcc. */
  account: string;
  serverId: string;
  displayName?: string;
  /** The first AppAddr/<x>/Addr whose AddrType is URI (the reference client's choice, §5.3). */
  address?: string;
  authPref?: string;
  client?: DmCredential;
  server?: DmCredential;
}

interface Spec {
  format: string;
  data?: string;
  type?: string;
  access: AccessType[];
  scope?: NodeScope;
  acl?: string;
}

const G: AccessType[] = ['Get'];
const GR: AccessType[] = ['Get', 'Replace'];
const OPTIONAL_GR: AccessType[] = ['Add', 'Delete', 'Get', 'Replace'];
/** §5.3 "No Get": the secret and the nonce can be written but never read by a server. */
const NO_GET: AccessType[] = ['Add', 'Delete', 'Replace'];
const INTERIOR: AccessType[] = ['Add', 'Delete', 'Get', 'Replace'];

/** Creates `uri` when missing; when `update` is set, also brings an existing leaf to `spec.data`. Returns true when created. */
async function ensure(tree: DmTree, uri: string, spec: Spec, update = false): Promise<boolean> {
  if (!tree.hasLocal(uri)) {
    const add: Parameters<DmTree['add']>[1] = { format: spec.format, access: spec.access, scope: spec.scope ?? 'dynamic' };
    if (spec.data !== undefined) add.data = spec.data;
    if (spec.type !== undefined) add.type = spec.type;
    if (spec.acl !== undefined) add.acl = spec.acl;
    await tree.add(uri, add, LOCAL);
    return true;
  }
  if (update && spec.format !== 'node' && spec.data !== undefined) {
    const cur = await tree.get(uri, LOCAL);
    if (cur.data !== spec.data) await tree.replace(uri, { format: spec.format, data: spec.data }, LOCAL);
  }
  return false;
}

function ownAcl(serverId: string): string {
  return formatAcl([
    { cmd: 'Get', servers: [serverId] },
    { cmd: 'Add', servers: [serverId] },
    { cmd: 'Delete', servers: [serverId] },
    { cmd: 'Replace', servers: [serverId] },
  ]);
}

/**
 * Installs ./DevInfo, ./DevDetail and ./DMAcc/<name> (§6.1, §5.3). Idempotent: missing nodes are
 * created; DevInfo/DevDetail values are brought up to date (they describe the running device, e.g.
 * a new FwV), while existing DMAcc values are left alone, because a server may have rotated
 * secrets and the client stores nonces there. Default ACLs: DevInfo and DevDetail `Get=*` (every
 * authenticated server, so each configured ServerID can read them); each account
 * `Get/Add/Delete/Replace=<its ServerID>`; ./DMAcc lets configured servers Get and Add (a server
 * adding an account without Replace on ./DMAcc gets the creator ACL of §5.4).
 */
export async function installStandardObjects(tree: DmTree, config: StandardObjectsConfig): Promise<void> {
  const { devInfo: di, devDetail: dd } = config;
  await ensure(tree, './DevInfo', { format: 'node', type: DEVINFO_MOID, access: G, scope: 'permanent', acl: 'Get=*' });
  const leaf = (data: string, format = 'chr'): Spec => ({ format, data, access: G, scope: 'permanent' });
  await ensure(tree, './DevInfo/DevId', leaf(di.devId), true);
  await ensure(tree, './DevInfo/Man', leaf(di.man), true);
  await ensure(tree, './DevInfo/Mod', leaf(di.mod), true);
  await ensure(tree, './DevInfo/DmV', leaf(di.dmV), true);
  await ensure(tree, './DevInfo/Lang', leaf(di.lang), true);

  await ensure(tree, './DevDetail', { format: 'node', type: DEVDETAIL_MOID, access: G, scope: 'permanent', acl: 'Get=*' });
  await ensure(tree, './DevDetail/DevTyp', leaf(dd.devTyp), true);
  await ensure(tree, './DevDetail/OEM', leaf(dd.oem), true);
  await ensure(tree, './DevDetail/FwV', leaf(dd.fwV), true);
  await ensure(tree, './DevDetail/SwV', leaf(dd.swV), true);
  await ensure(tree, './DevDetail/HwV', leaf(dd.hwV), true);
  await ensure(tree, './DevDetail/LrgObj', leaf(String(dd.lrgObj), 'bool'), true);
  await ensure(tree, './DevDetail/URI', { format: 'node', access: G, scope: 'permanent' });
  // §6.1: 16-bit numeric strings, 0 = unlimited.
  await ensure(tree, './DevDetail/URI/MaxDepth', leaf(String(dd.maxDepth)), true);
  await ensure(tree, './DevDetail/URI/MaxTotLen', leaf(String(dd.maxTotLen)), true);
  await ensure(tree, './DevDetail/URI/MaxSegLen', leaf(String(dd.maxSegLen)), true);

  const ids = config.accounts.map((a) => a.serverId);
  const dmaccAcl = ids.length ? formatAcl([{ cmd: 'Get', servers: ids }, { cmd: 'Add', servers: ids }]) : '';
  await ensure(tree, './DMAcc', { format: 'node', access: ['Add', 'Get'], scope: 'permanent', acl: dmaccAcl });
  const newIds: string[] = [];
  for (const a of config.accounts) {
    if (await installAccount(tree, a)) newIds.push(a.serverId);
  }
  if (newIds.length > 0) await grantDmAcc(tree, newIds);
}

/** Adds newly installed server ids to ./DMAcc's Get and Add entries (an existing tree keeps its other entries). */
async function grantDmAcc(tree: DmTree, ids: string[]): Promise<void> {
  const current = await tree.getProperty('./DMAcc', 'ACL', LOCAL);
  if (current === '') return; // inherits; nothing to extend
  const entries = parseAcl(current);
  for (const cmd of ['Get', 'Add'] as const) {
    const e = entries.find((x) => x.cmd === cmd);
    if (!e) entries.push({ cmd, servers: [...ids] });
    else if (!e.servers.includes('*')) for (const id of ids) if (!e.servers.includes(id)) e.servers.push(id);
  }
  const next = formatAcl(entries);
  if (next !== current) await tree.replaceProperty('./DMAcc', 'ACL', next, LOCAL);
}

async function installAccount(tree: DmTree, a: DmAccountConfig): Promise<boolean> {
  const base = `./DMAcc/${a.name}`;
  const created = await ensure(tree, base, { format: 'node', type: DMACC_MOID, access: INTERIOR, acl: ownAcl(a.serverId) });
  const leaf = (data: string, access: AccessType[] = GR, format = 'chr'): Spec => ({ format, data, access });
  await ensure(tree, `${base}/AppID`, leaf('w7', G));
  await ensure(tree, `${base}/ServerID`, leaf(a.serverId, G));
  if (a.displayName !== undefined) await ensure(tree, `${base}/Name`, leaf(a.displayName, OPTIONAL_GR));
  await ensure(tree, `${base}/AppAddr`, { format: 'node', access: INTERIOR });
  await ensure(tree, `${base}/AppAddr/1`, { format: 'node', access: INTERIOR });
  await ensure(tree, `${base}/AppAddr/1/Addr`, leaf(a.address));
  await ensure(tree, `${base}/AppAddr/1/AddrType`, leaf('URI'));
  if (a.authPref !== undefined) await ensure(tree, `${base}/AAuthPref`, leaf(a.authPref, OPTIONAL_GR));
  await ensure(tree, `${base}/AppAuth`, { format: 'node', access: INTERIOR });
  for (const [level, c] of [['CLCRED', a.client], ['SRVCRED', a.server]] as const) {
    const auth = `${base}/AppAuth/${level}`;
    await ensure(tree, auth, { format: 'node', access: INTERIOR });
    await ensure(tree, `${auth}/AAuthLevel`, leaf(level));
    await ensure(tree, `${auth}/AAuthType`, leaf(c.type));
    await ensure(tree, `${auth}/AAuthName`, leaf(c.name, OPTIONAL_GR));
    // At rest only what the scheme needs (issue "Security and reliability"): DIGEST, HMAC and every
    // server credential need just B64(H(name:secret)); a BASIC client credential must send the
    // password itself and is the one secret kept as given.
    const stored = storedSecret(level, c.type, c.name, c.secret);
    if (!(await ensure(tree, `${auth}/AAuthSecret`, leaf(stored, NO_GET)))) {
      const cur = await leafValue(tree, `${auth}/AAuthSecret`);
      // A tree written before verifiers: convert its plaintext once (same name, same secret).
      if (cur !== undefined && cur === c.secret && stored !== c.secret) await tree.replace(`${auth}/AAuthSecret`, { data: stored }, LOCAL);
    }
    // Created only when missing: a nonce already persisted is never clobbered by the config's.
    await ensure(tree, `${auth}/AAuthData`, { format: 'b64', data: c.nonce ?? '', access: NO_GET, type: 'application/octet-stream' });
  }
  return created;
}

/** What an AAuthSecret leaf holds for a credential (see installAccount). */
function storedSecret(level: 'CLCRED' | 'SRVCRED', type: string, name: string, secret: string): string {
  // The server's credential also keys Package 0 digests, which need B64(H(serverId:password)):
  // whatever its type, the MD5 verifier serves both (a BASIC one is checked against it).
  if (level === 'SRVCRED' || type === 'DIGEST' || type === 'HMAC') return secretVerifier(name, secret, 'syncml:auth-md5');
  return secret;
}

async function leafValue(tree: DmTree, uri: string): Promise<string | undefined> {
  if (!tree.hasLocal(uri)) return undefined;
  const v = await tree.get(uri, LOCAL);
  return v.format === 'node' ? undefined : v.data;
}

async function childNames(tree: DmTree, uri: string): Promise<string[]> {
  if (!tree.hasLocal(uri)) return [];
  const v = await tree.get(uri, LOCAL);
  return v.format === 'node' && v.data !== '' ? v.data.split('/') : [];
}

async function readCredential(tree: DmTree, auth: string): Promise<DmCredential> {
  return {
    type: (await leafValue(tree, `${auth}/AAuthType`)) ?? '',
    name: (await leafValue(tree, `${auth}/AAuthName`)) ?? '',
    secret: (await leafValue(tree, `${auth}/AAuthSecret`)) ?? '',
    nonce: (await leafValue(tree, `${auth}/AAuthData`)) ?? '',
  };
}

/** Finds the AppAuth/<x> entry of an account with the given AAuthLevel (by value, not by node name, §5.3). */
async function findAuth(tree: DmTree, base: string, level: string): Promise<string | undefined> {
  for (const x of await childNames(tree, `${base}/AppAuth`)) {
    const auth = `${base}/AppAuth/${x}`;
    if ((await leafValue(tree, `${auth}/AAuthLevel`)) === level) return auth;
  }
  return undefined;
}

/**
 * Replaces AAuthSecret leaves that hold a password where a verifier suffices (see installAccount):
 * secrets a server wrote with Replace, or a bootstrap installed. Returns how many were converted.
 */
export async function protectSecrets(tree: DmTree): Promise<number> {
  let n = 0;
  for (const account of await childNames(tree, './DMAcc')) {
    for (const x of await childNames(tree, `./DMAcc/${account}/AppAuth`)) {
      const auth = `./DMAcc/${account}/AppAuth/${x}`;
      const level = await leafValue(tree, `${auth}/AAuthLevel`);
      const secret = await leafValue(tree, `${auth}/AAuthSecret`);
      if (!secret || secret.startsWith('$gwmo-') || (level !== 'CLCRED' && level !== 'SRVCRED')) continue;
      const stored = storedSecret(level, (await leafValue(tree, `${auth}/AAuthType`)) ?? '', (await leafValue(tree, `${auth}/AAuthName`)) ?? '', secret);
      if (stored === secret) continue;
      await tree.replace(`${auth}/AAuthSecret`, { data: stored }, LOCAL);
      n++;
    }
  }
  return n;
}

/** Reads every account under ./DMAcc (any child with a ServerID leaf, whoever created it). */
export async function readAccounts(tree: DmTree): Promise<DmAccount[]> {
  const out: DmAccount[] = [];
  for (const name of await childNames(tree, './DMAcc')) {
    const base = `./DMAcc/${name}`;
    const serverId = await leafValue(tree, `${base}/ServerID`);
    if (serverId === undefined) continue;
    const acc: DmAccount = { account: name, serverId };
    const displayName = await leafValue(tree, `${base}/Name`);
    if (displayName !== undefined) acc.displayName = displayName;
    for (const x of await childNames(tree, `${base}/AppAddr`)) {
      const addr = await leafValue(tree, `${base}/AppAddr/${x}/Addr`);
      const type = (await leafValue(tree, `${base}/AppAddr/${x}/AddrType`)) ?? 'URI'; // URI is the default (§5.3)
      if (addr !== undefined && type === 'URI') {
        acc.address = addr;
        break;
      }
    }
    const pref = await leafValue(tree, `${base}/AAuthPref`);
    if (pref !== undefined) acc.authPref = pref;
    const cl = await findAuth(tree, base, 'CLCRED');
    if (cl) acc.client = await readCredential(tree, cl);
    const srv = await findAuth(tree, base, 'SRVCRED');
    if (srv) acc.server = await readCredential(tree, srv);
    out.push(acc);
  }
  return out;
}

async function accountBase(tree: DmTree, serverId: string): Promise<string | undefined> {
  for (const name of await childNames(tree, './DMAcc')) {
    const base = `./DMAcc/${name}`;
    if ((await leafValue(tree, `${base}/ServerID`)) === serverId) return base;
  }
  return undefined;
}

/**
 * Stores a nonce (base64) in the AAuthData of the account's CLCRED or SRVCRED entry, as a local
 * operation (§5.2: each NextNonce received is kept). 404 `TREE_NOT_FOUND` when the account or
 * credential entry is missing; 400 when the nonce is not base64.
 */
export async function storeNonce(tree: DmTree, serverId: string, level: DmAuthLevel, nonceB64: string): Promise<void> {
  if (!isBase64(nonceB64)) throw new DmStatusError(400, 'TREE_BAD_VALUE', 'the nonce is not base64');
  const base = await accountBase(tree, serverId);
  if (!base) throw new DmStatusError(404, 'TREE_NOT_FOUND', `no DMAcc account for ${serverId}`);
  const auth = await findAuth(tree, base, level);
  if (!auth) throw new DmStatusError(404, 'TREE_NOT_FOUND', `account ${serverId} has no ${level} credentials`);
  const uri = `${auth}/AAuthData`;
  if (tree.hasLocal(uri)) await tree.replace(uri, { format: 'b64', data: nonceB64 }, LOCAL);
  else await tree.add(uri, { format: 'b64', data: nonceB64, access: NO_GET, type: 'application/octet-stream' }, LOCAL);
}

/** Reads the DevInfo values (§6.1), e.g. for the Replace items of Package 1. */
export async function readDevInfo(tree: DmTree): Promise<DevInfo> {
  const v = async (n: string): Promise<string> => (await leafValue(tree, `./DevInfo/${n}`)) ?? '';
  return { devId: await v('DevId'), man: await v('Man'), mod: await v('Mod'), dmV: await v('DmV'), lang: await v('Lang') };
}
