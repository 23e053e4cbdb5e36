/**
 * OMA DM bootstrap messages (OMA-TS-DM_Bootstrap, notes §2.5): a WBXML SyncML DM message that Adds
 * a DM account (and possibly other nodes) to a device, sent outside any session, with no Status in
 * reply. It is protected by an HMAC-SHA1 over the WBXML bytes, carried in the Content-Type:
 * `application/vnd.syncml.dm+wbxml; SEC=USERPIN; MAC=<hex>`; with SEC=USERPIN the key is the PIN
 * (with USERPIN_NETWORKID it is `PIN:secret`, notes §2.5). Pure: no I/O.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { CodecError } from '../errors.ts';
import type { Item, SyncMLMessage } from './model.ts';
import { decodeSyncML, encodeSyncML } from './syncml.ts';

/** Security methods of a bootstrap message. */
export type BootstrapSec = 'NETWPIN' | 'USERPIN' | 'USERNETWPIN' | 'USERPINMAC';

/** One node a bootstrap message adds. */
export interface BootstrapNode {
  uri: string;
  format?: string;
  data?: string;
}

/** The DM account a bootstrap installs. */
export interface BootstrapAccount {
  /** Node name under ./DMAcc. */
  name: string;
  serverId: string;
  address: string;
  client: { type: string; name: string; secret: string };
  server: { type: string; name: string; secret: string };
}

/** The nodes of a DMAcc entry (notes §5.3), in Add order. */
export function accountNodes(a: BootstrapAccount): BootstrapNode[] {
  const base = `./DMAcc/${a.name}`;
  return [
    { uri: base, format: 'node' },
    { uri: `${base}/AppID`, data: 'w7' },
    { uri: `${base}/ServerID`, data: a.serverId },
    { uri: `${base}/AppAddr`, format: 'node' },
    { uri: `${base}/AppAddr/1`, format: 'node' },
    { uri: `${base}/AppAddr/1/Addr`, data: a.address },
    { uri: `${base}/AppAddr/1/AddrType`, data: 'URI' },
    { uri: `${base}/AAuthPref`, data: a.client.type },
    { uri: `${base}/AppAuth`, format: 'node' },
    { uri: `${base}/AppAuth/CLCRED`, format: 'node' },
    { uri: `${base}/AppAuth/CLCRED/AAuthLevel`, data: 'CLCRED' },
    { uri: `${base}/AppAuth/CLCRED/AAuthType`, data: a.client.type },
    { uri: `${base}/AppAuth/CLCRED/AAuthName`, data: a.client.name },
    { uri: `${base}/AppAuth/CLCRED/AAuthSecret`, data: a.client.secret },
    { uri: `${base}/AppAuth/SRVCRED`, format: 'node' },
    { uri: `${base}/AppAuth/SRVCRED/AAuthLevel`, data: 'SRVCRED' },
    { uri: `${base}/AppAuth/SRVCRED/AAuthType`, data: a.server.type },
    { uri: `${base}/AppAuth/SRVCRED/AAuthName`, data: a.server.name },
    { uri: `${base}/AppAuth/SRVCRED/AAuthSecret`, data: a.server.secret },
  ];
}

/** HMAC-SHA1 of the message bytes, upper-case hex, as the MAC parameter carries it. */
export function bootstrapMac(key: string, body: Uint8Array): string {
  return createHmac('sha1', key).update(body).digest('hex').toUpperCase();
}

/** Builds a bootstrap message: WBXML bytes and the Content-Type that carries its MAC. */
export function encodeBootstrap(opts: { deviceId: string; serverId: string; nodes: BootstrapNode[]; pin: string; sec?: BootstrapSec }): {
  body: Uint8Array;
  contentType: string;
} {
  const msg: SyncMLMessage = {
    hdr: {
      verDTD: '1.2',
      verProto: 'DM/1.2',
      sessionID: '0',
      msgID: '1',
      target: { locURI: opts.deviceId },
      source: { locURI: opts.serverId },
    },
    body: opts.nodes.map((n, i) => ({
      kind: 'Add' as const,
      cmdID: String(i + 1),
      items: [{ target: { locURI: n.uri }, ...(n.format && n.format !== 'chr' ? { meta: { format: n.format } } : {}), ...(n.data !== undefined ? { data: n.data } : {}) }],
    })),
    final: true,
  };
  const body = encodeSyncML(msg, 'wbxml');
  const sec = opts.sec ?? 'USERPIN';
  return { body, contentType: `application/vnd.syncml.dm+wbxml; SEC=${sec}; MAC=${bootstrapMac(opts.pin, body)}` };
}

/** Parses the SEC and MAC parameters of a bootstrap Content-Type. */
export function bootstrapParams(contentType: string): { sec?: string; mac?: string } {
  const out: { sec?: string; mac?: string } = {};
  for (const part of contentType.split(';').slice(1)) {
    const [k, v] = part.split('=').map((x) => x.trim());
    if (!k || v === undefined) continue;
    if (k.toUpperCase() === 'SEC') out.sec = v.toUpperCase();
    if (k.toUpperCase() === 'MAC') out.mac = v;
  }
  return out;
}

/**
 * Verifies and decodes a bootstrap message. Throws CodecError (401 for a missing or wrong MAC, 400
 * for anything malformed). Returns the nodes to add, in order.
 */
export function decodeBootstrap(body: Uint8Array, contentType: string, pin: string): { serverId: string; nodes: BootstrapNode[] } {
  const { mac } = bootstrapParams(contentType);
  if (!mac) throw new CodecError('CODEC_BOOTSTRAP_MAC', 'bootstrap message without MAC', 401);
  const expected = Buffer.from(bootstrapMac(pin, body), 'hex');
  const got = Buffer.from(/^[0-9a-fA-F]+$/.test(mac) ? mac : '', 'hex');
  if (got.length !== expected.length || !timingSafeEqual(got, expected)) {
    throw new CodecError('CODEC_BOOTSTRAP_MAC', 'bootstrap MAC does not verify', 401);
  }
  const msg = decodeSyncML(body, 'wbxml');
  const nodes: BootstrapNode[] = [];
  for (const c of msg.body) {
    if (c.kind !== 'Add' && c.kind !== 'Replace') throw new CodecError('CODEC_BOOTSTRAP_CMD', `a bootstrap message may only Add or Replace, not ${c.kind}`);
    for (const it of c.items as Item[]) {
      const uri = it.target?.locURI;
      if (!uri) throw new CodecError('CODEC_BOOTSTRAP_CMD', 'bootstrap item without a target');
      const format = it.meta?.format ?? c.meta?.format;
      const data = it.data === undefined ? undefined : typeof it.data === 'string' ? it.data : Buffer.from(it.data).toString('utf8');
      nodes.push({ uri, ...(format ? { format } : {}), ...(data !== undefined ? { data } : {}) });
    }
  }
  return { serverId: msg.hdr.source.locURI, nodes };
}
