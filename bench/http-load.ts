/**
 * The load generator of bench/http.bench.ts, run as a child process (`node bin/run-ts.js
 * bench/http-load.ts <json config>`) so its CPU is not charged to the server's event loop.
 *
 * K virtual clients share an undici Pool of K keep-alive connections; each one runs requests back
 * to back, one at a time. Two modes:
 *
 * - `dm`: each virtual client is one DM device with its own MD5 account, running client-initiated
 *   DM sessions back to back: Package 1 (Alert 1201 + DevInfo, MD5 Cred over the current nonce),
 *   then for every server message with commands, a message with the header status (212 + a fresh
 *   server nonce in a Chal the first time, after checking the server's MD5 Cred), a Status and a
 *   Results per Get; a final server message without commands ends the session (the client does not
 *   answer it, notes §3.6). Nonces rotate as the real client engine rotates them (the server's Chal
 *   gives the client nonce of the next session; the client's Chal the server's).
 *   The messages are the real client engine's: Package 1 is `ClientSession.start()` output, and the
 *   replies are built with the session layer's own helpers and encoded with the real codec, once
 *   per shape, as templates whose variable parts (SessionID, MsgID, references, nonce, Cred) are
 *   filled in per message. Server messages are checked with a few regular expressions instead of a
 *   full decode, so the generator stays much cheaper than the server per message (the smoke test
 *   checks the template messages against the codec and a real server).
 * - `fixed`: the same loop posting a fixed Package 1 body and accepting any 200 answer with a body
 *   (the trivial node:http baseline).
 *
 * Every answer must be HTTP 200 with a body (a SyncML one in `dm` mode, checked as above); any other
 * answer stops the run with an error (exit 1). Only answers that arrive inside the measurement
 * window (after `warmupMs`, for `durationMs`) are counted. Prints one JSON line on stdout:
 * `{ messages, total, sessions, seconds, errors: 0, latency: { p50, p99 }, perSession, emptySessions }`.
 */
import { Pool } from 'undici';
import { md5Cred, newNonce, nonceCandidates, nonceToB64 } from '../src/codec/auth.ts';
import type { Command, SyncHdr, SyncMLMessage } from '../src/codec/model.ts';
import { CONTENT_TYPES, encodeSyncML } from '../src/codec/syncml.ts';
import { ClientSession } from '../src/session/client-session.ts';
import { cmdStatus, hdrStatus, numberCommands, type Outgoing } from '../src/session/common.ts';

/** One device account the generator speaks for. */
export interface LoadAccount {
  deviceId: string;
  username: string;
  secret: string;
  clientNonce: string;
  serverNonce: string;
}

/** What the parent passes (JSON, first argument). */
export interface LoadConfig {
  mode: 'dm' | 'fixed';
  /** The DM endpoint (or the trivial handler's URL). */
  url: string;
  connections: number;
  warmupMs: number;
  durationMs: number;
  serverId: string;
  serverSecret: string;
  /** One per virtual client in `dm` mode. */
  accounts: LoadAccount[];
  /** DevInfo of Package 1. */
  devInfo: Record<string, string>;
  /** Data the virtual devices answer to a Get, by target URI. */
  values: Record<string, string>;
  maxMsgSize: number;
}

/** What the generator reports. */
export interface LoadResult {
  messages: number;
  /** Every answered message, warm-up and stragglers included (for CPU per message). */
  total: number;
  sessions: number;
  seconds: number;
  errors: number;
  latency: { p50: number; p99: number };
  /** Messages per completed session (in the window). */
  perSession: number;
  /** Replies without any command (Package 2 of a session that found nothing queued). */
  emptySessions: number;
}

const XML = CONTENT_TYPES.xml;
const HEADERS = { 'content-type': XML, accept: XML };

/** A message as literal text with `@@NAME@@` holes. */
class Template {
  private readonly parts: string[];
  private readonly names: string[];
  constructor(text: string) {
    const split = text.split(/@@([A-Z0-9_]+)@@/);
    this.parts = split.filter((_, i) => i % 2 === 0);
    this.names = split.filter((_, i) => i % 2 === 1);
  }
  fill(v: Record<string, string>): string {
    let s = this.parts[0]!;
    for (let i = 0; i < this.names.length; i++) {
      const x = v[this.names[i]!];
      if (x === undefined) throw new Error(`template value ${this.names[i]} missing`);
      s += x + this.parts[i + 1]!;
    }
    return s;
  }
}

const dec = new TextDecoder();
const text = (m: SyncMLMessage): string => dec.decode(encodeSyncML(m, 'xml'));
const escapeXml = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** Builds the templates of one device (its ids baked in). */
export function deviceTemplates(cfg: Pick<LoadConfig, 'url' | 'serverId' | 'devInfo' | 'maxMsgSize'>, acct: LoadAccount) {
  // Package 1 exactly as the real client engine writes it; Cred and SessionID become holes.
  const probeNonce = nonceToB64(newNonce());
  const client = new ClientSession('@@SID@@', 'client', {
    deviceId: acct.deviceId,
    serverUri: cfg.url,
    serverId: cfg.serverId,
    client: { type: 'syncml:auth-md5', name: acct.username, secret: acct.secret, nonce: probeNonce },
    server: { type: 'syncml:auth-md5', name: cfg.serverId, secret: 'unused', nonce: '' },
    devInfo: { ...cfg.devInfo, DevId: acct.deviceId },
    encoding: 'xml',
    maxMsgSize: cfg.maxMsgSize,
    execute: async () => [],
    storeNonce: async () => {},
    log: () => {},
  });
  const cred = md5Cred(acct.username, acct.secret, nonceCandidates(probeNonce)[0]!);
  const p1text = dec.decode(client.start().body);
  if (!p1text.includes(cred)) throw new Error('Package 1 has no Cred where expected');
  const p1 = new Template(p1text.split(cred).join('@@CRED@@'));

  // Replies to a server message with n Gets, built as ClientSession builds them (header status,
  // then each Get's Status and Results in order), encoded once by the real codec.
  const replies = new Map<string, Template>();
  const reply = (n: number, withChal: boolean): Template => {
    const key = `${n}:${withChal}`;
    let t = replies.get(key);
    if (t) return t;
    const serverHdr: SyncHdr = {
      verDTD: '1.2',
      verProto: 'DM/1.2',
      sessionID: '@@SID@@',
      msgID: '@@MSGREF@@',
      target: { locURI: acct.deviceId },
      source: { locURI: cfg.serverId },
    };
    const out: Outgoing[] = [
      hdrStatus(serverHdr, withChal ? 212 : 200, withChal ? { chal: { meta: { type: 'syncml:auth-md5', format: 'b64', nextNonce: '@@NONCE@@' } } } : {}),
    ];
    for (let i = 0; i < n; i++) {
      const get = { kind: 'Get', cmdID: `@@REF${i}@@`, items: [{ target: { locURI: `@@URI${i}@@` } }] } as Command;
      out.push(cmdStatus('@@MSGREF@@', get, 200));
      out.push({ kind: 'Results', msgRef: '@@MSGREF@@', cmdRef: `@@REF${i}@@`, items: [{ source: { locURI: `@@URI${i}@@` }, data: `@@VAL${i}@@` }] });
    }
    const hdr: SyncHdr = {
      verDTD: '1.2',
      verProto: 'DM/1.2',
      sessionID: '@@SID@@',
      msgID: '@@MID@@',
      target: { locURI: cfg.url },
      source: { locURI: acct.deviceId, locName: acct.username },
      meta: { maxMsgSize: cfg.maxMsgSize },
    };
    t = new Template(text({ hdr, body: numberCommands(out), final: true }));
    replies.set(key, t);
    return t;
  };
  return { p1, reply };
}

// --- reading server messages (regular expressions; tolerant of namespace prefixes and attributes)

const tag = (name: string): string => `<(?:\\w+:)?${name}(?:\\s[^>]*)?>`;
const close = (name: string): string => `</(?:\\w+:)?${name}>`;
const grab = (name: string): RegExp => new RegExp(`${tag(name)}([^<]*)${close(name)}`);
const RE_HDR = new RegExp(`${tag('SyncHdr')}([\\s\\S]*?)${close('SyncHdr')}`);
const RE_MSGID = grab('MsgID');
const RE_SESSIONID = grab('SessionID');
const RE_CRED = new RegExp(`${tag('Cred')}[\\s\\S]*?${tag('Data')}([^<]*)${close('Data')}[\\s\\S]*?${close('Cred')}`);
const RE_STATUS = new RegExp(`${tag('Status')}([\\s\\S]*?)${close('Status')}`, 'g');
const RE_CMDREF = grab('CmdRef');
const RE_DATA = grab('Data');
const RE_NONCE = grab('NextNonce');
const RE_GET = new RegExp(`${tag('Get')}([\\s\\S]*?)${close('Get')}`, 'g');
const RE_CMDID = grab('CmdID');
const RE_LOCURI = grab('LocURI');
const RE_FINAL = new RegExp(`<(?:\\w+:)?Final\\s*/>|${tag('Final')}${close('Final')}`);
const RE_OTHER_CMD = new RegExp(`${tag('(?:Add|Replace|Delete|Exec|Copy|Atomic|Sequence|Alert)')}`);
const unescapeXml = (s: string): string => s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, '&');

/** What the generator needs from a server message. */
export interface ServerMessage {
  msgID: string;
  sessionID: string;
  cred: string | undefined;
  hdrStatus: string | undefined;
  nextNonce: string | undefined;
  gets: { cmdID: string; target: string }[];
  final: boolean;
  otherCommands: boolean;
}

/** Reads a server message (XML) with regular expressions. */
export function readServerMessage(xml: string): ServerMessage {
  const hdr = RE_HDR.exec(xml)?.[1];
  if (hdr === undefined || !/<\/(?:\w+:)?SyncML>\s*$/.test(xml)) throw new Error('not a SyncML message');
  const body = xml.slice(xml.indexOf('</SyncHdr>') >= 0 ? xml.indexOf('</SyncHdr>') : 0);
  let hdrStatus: string | undefined;
  let nextNonce: string | undefined;
  for (const m of body.matchAll(RE_STATUS)) {
    if (RE_CMDREF.exec(m[1]!)?.[1] === '0') {
      hdrStatus = RE_DATA.exec(m[1]!)?.[1];
      nextNonce = RE_NONCE.exec(m[1]!)?.[1];
    }
  }
  const gets: ServerMessage['gets'] = [];
  for (const m of body.matchAll(RE_GET)) gets.push({ cmdID: RE_CMDID.exec(m[1]!)?.[1] ?? '', target: unescapeXml(RE_LOCURI.exec(m[1]!)?.[1] ?? '') });
  return {
    msgID: RE_MSGID.exec(hdr)?.[1] ?? '',
    sessionID: RE_SESSIONID.exec(hdr)?.[1] ?? '',
    cred: RE_CRED.exec(hdr)?.[1],
    hdrStatus,
    nextNonce,
    gets,
    final: RE_FINAL.test(body),
    otherCommands: RE_OTHER_CMD.test(body),
  };
}

class LoadError extends Error {}

/** Runs the load; resolves with the counts. */
export async function runLoad(cfg: LoadConfig): Promise<LoadResult> {
  const url = new URL(cfg.url);
  const pool = new Pool(url.origin, { connections: cfg.connections, pipelining: 1, keepAliveTimeout: 60_000 });
  const path = url.pathname + url.search;
  const t0 = performance.now();
  const measureFrom = t0 + cfg.warmupMs;
  const stopAt = measureFrom + cfg.durationMs;
  let messages = 0;
  let total = 0;
  let sessions = 0;
  let emptySessions = 0;
  let sessionMessages = 0;
  const latencies: number[] = [];
  let failed: unknown;

  const post = async (body: string): Promise<{ text: string; ms: number; at: number }> => {
    const start = performance.now();
    const res = await pool.request({ path, method: 'POST', headers: HEADERS, body });
    const buf = Buffer.from(await res.body.arrayBuffer());
    const at = performance.now();
    if (res.statusCode !== 200) throw new LoadError(`HTTP ${res.statusCode}: ${buf.toString('utf8').slice(0, 300)}`);
    if (buf.length === 0) throw new LoadError('HTTP 200 without a body');
    if (cfg.mode === 'dm' && !String(res.headers['content-type'] ?? '').startsWith(XML)) throw new LoadError(`content-type ${String(res.headers['content-type'])}`);
    return { text: cfg.mode === 'dm' ? buf.toString('utf8') : '', ms: at - start, at };
  };
  const count = (r: { ms: number; at: number }): boolean => {
    total++;
    if (r.at < measureFrom || r.at > stopAt) return false;
    messages++;
    latencies.push(r.ms);
    return true;
  };

  const fixedClient = async (body: string): Promise<void> => {
    while (performance.now() < stopAt && failed === undefined) count(await post(body));
  };

  const dmClient = async (acct: LoadAccount, index: number): Promise<void> => {
    const t = deviceTemplates(cfg, acct);
    let clientNonce = acct.clientNonce;
    let serverNonce = acct.serverNonce;
    let sid = (index * 7919) % 0xfff0; // distinct per device only; any 16-bit value is fine
    while (performance.now() < stopAt && failed === undefined) {
      sid = (sid % 0xfffe) + 1;
      const SID = sid.toString(16).toUpperCase();
      const cred = md5Cred(acct.username, acct.secret, nonceCandidates(clientNonce)[0] ?? new Uint8Array());
      let r = await post(t.p1.fill({ SID, CRED: cred }));
      let inWindow = count(r);
      let n = 1;
      let msgId = 1;
      let serverAuthenticated = false;
      for (;;) {
        const m = readServerMessage(r.text);
        if (m.sessionID !== SID) throw new LoadError(`reply for session ${m.sessionID}, expected ${SID}`);
        const expected = serverAuthenticated ? '200' : '212';
        if (m.hdrStatus !== expected) throw new LoadError(`header status ${String(m.hdrStatus)} (expected ${expected}) in ${r.text.slice(0, 600)}`);
        let chal = false;
        if (!serverAuthenticated) {
          // The client authenticates the server before answering anything (notes §5.2).
          if (m.cred !== md5Cred(cfg.serverId, cfg.serverSecret, nonceCandidates(serverNonce)[0] ?? new Uint8Array())) throw new LoadError('server MD5 Cred does not match');
          if (!m.nextNonce) throw new LoadError('212 without a NextNonce');
          clientNonce = m.nextNonce; // the server is authenticated: its nonce may be stored
          serverAuthenticated = true;
          chal = true;
        }
        if (m.otherCommands) throw new LoadError(`unexpected command in ${r.text.slice(0, 600)}`);
        if (m.gets.length === 0) {
          if (!m.final) throw new LoadError('server message without commands and without Final');
          if (chal && !m.otherCommands) emptySessions++;
          break; // the session is over; the client does not answer (notes §3.6)
        }
        if (!m.final) throw new LoadError('multi-message server package (not expected at this size)');
        const v: Record<string, string> = { SID, MID: String(++msgId), MSGREF: m.msgID };
        if (chal) {
          serverNonce = nonceToB64(newNonce());
          v.NONCE = serverNonce;
        }
        m.gets.forEach((g, i) => {
          const value = cfg.values[g.target];
          if (value === undefined) throw new LoadError(`Get of unexpected ${g.target}`);
          v[`REF${i}`] = g.cmdID;
          v[`URI${i}`] = escapeXml(g.target);
          v[`VAL${i}`] = escapeXml(value);
        });
        r = await post(t.reply(m.gets.length, chal).fill(v));
        inWindow = count(r) && inWindow;
        n++;
      }
      if (inWindow) {
        sessions++;
        sessionMessages += n;
      }
    }
  };

  const tasks: Promise<void>[] = [];
  for (let i = 0; i < cfg.connections; i++) {
    const p =
      cfg.mode === 'dm'
        ? dmClient(cfg.accounts[i]!, i)
        : fixedClient(deviceTemplates(cfg, cfg.accounts[i % cfg.accounts.length]!).p1.fill({ SID: '1', CRED: 'x' }));
    tasks.push(
      p.catch((err: unknown) => {
        failed ??= err;
      }),
    );
  }
  await Promise.all(tasks);
  await pool.close();
  if (failed !== undefined) throw failed;
  latencies.sort((a, b) => a - b);
  const q = (p: number): number => Number((latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? 0).toFixed(2));
  return {
    messages,
    total,
    sessions,
    seconds: cfg.durationMs / 1000,
    errors: 0,
    latency: { p50: q(0.5), p99: q(0.99) },
    perSession: sessions ? Number((sessionMessages / sessions).toFixed(2)) : 0,
    emptySessions,
  };
}

// Child-process entry: config as JSON in argv[2], result as one JSON line on stdout.
if (process.argv[1] && /http-load\.ts$/.test(process.argv[1]) && process.argv[2]) {
  try {
    const result = await runLoad(JSON.parse(process.argv[2]) as LoadConfig);
    process.stdout.write(JSON.stringify(result) + '\n');
    process.exit(0);
  } catch (err) {
    process.stderr.write(`load generator failed: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  }
}
