/**
 * `gwmo server`, started as a real process from a config file, against an independent "standard"
 * OMA DM 1.2 client written here from the protocol notes alone: raw SyncML text (no gwmo codec),
 * fast-xml-parser to read replies, Debian's xml2wbxml/wbxml2xml for the WBXML variant, node:crypto
 * for the digests. The client behaves like the reference toolkit client: `application/vnd.syncml+xml`
 * content type, Basic credentials in every message until 212, and it requires the server to
 * authenticate with MD5, rotating the server's nonce through NextNonce every session.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { XMLParser } from 'fast-xml-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const md5 = (b: Buffer | string): Buffer => createHash('md5').update(b).digest();
const b64 = (b: Buffer): string => b.toString('base64');
/** MD5 credential of notes §5.1: B64(H(B64(H(user:password)) ":" nonce)). */
const md5Digest = (user: string, pw: string, nonce: Buffer): string =>
  b64(md5(Buffer.concat([Buffer.from(b64(md5(`${user}:${pw}`)) + ':'), nonce])));

const SERVER_ID = 'std-test-dms';
const SERVER_SECRET = 'Srv-Secret-2026';
const DEVICE_ID = 'IMEI:493005100592800';
const USER = 'stdclient';
const PASSWORD = 'Std-Client-Pw';

let dir: string;
let proc: ChildProcess;
let base: string;
let output = '';

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gwmo-std-'));
  await writeFile(
    join(dir, 'server.yaml'),
    [
      'listen: 127.0.0.1:0',
      'path: /dm',
      `serverId: ${SERVER_ID}`,
      `serverSecret: ${SERVER_SECRET}`,
      'serverAuthType: md5',
      'accounts:',
      `  - deviceId: "${DEVICE_ID}"`,
      `    username: ${USER}`,
      `    secret: ${PASSWORD}`,
      '    authType: basic',
      '',
    ].join('\n'),
  );
  proc = spawn(process.execPath, ['bin/gwmo.js', 'server', '--config', join(dir, 'server.yaml'), '--data', join(dir, 'data')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  proc.stderr!.on('data', (d) => (output += d));
  base = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${output}`)), 20_000);
    proc.stdout!.on('data', (d: Buffer) => {
      output += d;
      const m = /DM endpoint (http:\/\/\S+)\/dm/.exec(output);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    proc.on('exit', (code) => reject(new Error(`server exited with ${code}:\n${output}`)));
  });
});

afterAll(async () => {
  proc?.kill('SIGTERM');
  await new Promise((r) => proc?.once('exit', r));
  await rm(dir, { recursive: true, force: true });
});

const parser = new XMLParser({ ignoreAttributes: true, parseTagValue: false, isArray: (name) => ['Status', 'Get', 'Item', 'Results', 'Replace', 'Alert', 'TargetRef'].includes(name), removeNSPrefix: true });

/** Converts XML to WBXML and back with Debian's libwbxml (independent of gwmo's codec). */
async function toWbxml(xml: string): Promise<Buffer> {
  const inF = join(dir, `in-${randomBytes(4).toString('hex')}.xml`);
  const outF = inF.replace('.xml', '.wbxml');
  await writeFile(inF, xml);
  execFileSync('xml2wbxml', ['-k', '-n', '-v', '1.2', '-o', outF, inF], { stdio: 'pipe' });
  return readFile(outF);
}
async function fromWbxml(bytes: Buffer): Promise<string> {
  const inF = join(dir, `in-${randomBytes(4).toString('hex')}.wbxml`);
  const outF = inF.replace('.wbxml', '.xml');
  await writeFile(inF, bytes);
  execFileSync('wbxml2xml', ['-k', '-m', '0', '-o', outF, inF], { stdio: 'pipe' });
  return (await readFile(outF, 'utf8')).replace(/<!DOCTYPE[^>]*>/, '');
}

interface ClientState {
  /** The nonce the server must use in its MD5 credentials (we issue it). */
  serverNonce: Buffer;
}

/** One whole client-initiated session of the standard client; returns what the server asked and how it authenticated. */
async function runSession(state: ClientState, encoding: 'xml' | 'wbxml', sessionId: string) {
  let msgId = 0;
  let authed = false;
  const executed: string[] = [];
  const serverCredChecks: boolean[] = [];
  const send = async (body: string): Promise<any> => {
    msgId++;
    const cred = authed
      ? ''
      : `<Cred><Meta><Format xmlns="syncml:metinf">b64</Format><Type xmlns="syncml:metinf">syncml:auth-basic</Type></Meta><Data>${b64(Buffer.from(`${USER}:${PASSWORD}`))}</Data></Cred>`;
    const xml =
      `<?xml version="1.0" encoding="UTF-8"?><SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto>` +
      `<SessionID>${sessionId}</SessionID><MsgID>${msgId}</MsgID><Target><LocURI>${base}/dm</LocURI></Target>` +
      `<Source><LocURI>${DEVICE_ID}</LocURI><LocName>${USER}</LocName></Source>${cred}` +
      `<Meta><MaxMsgSize xmlns="syncml:metinf">16384</MaxMsgSize></Meta></SyncHdr><SyncBody>${body}<Final/></SyncBody></SyncML>`;
    const payload = encoding === 'xml' ? Buffer.from(xml) : await toWbxml(xml);
    const res = await fetch(`${base}/dm`, {
      method: 'POST',
      body: payload,
      headers: { 'content-type': `application/vnd.syncml+${encoding}` },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe(`application/vnd.syncml.dm+${encoding}`);
    const raw = Buffer.from(await res.arrayBuffer());
    const text = encoding === 'xml' ? raw.toString('utf8') : await fromWbxml(raw);
    return parser.parse(text).SyncML;
  };
  let reply = await send(
    `<Alert><CmdID>1</CmdID><Data>1201</Data></Alert><Replace><CmdID>2</CmdID>` +
      ['DevId', 'Man', 'Mod', 'DmV', 'Lang']
        .map((n, i) => `<Item><Source><LocURI>./DevInfo/${n}</LocURI></Source><Data>${[DEVICE_ID, 'StdCorp', 'RefClient', '1.2', 'en-US'][i]}</Data></Item>`)
        .join('') +
      `</Replace>`,
  );
  for (let round = 0; round < 10; round++) {
    const hdr = reply.SyncHdr;
    const statuses: any[] = reply.SyncBody.Status ?? [];
    const hdrStatus = statuses.find((s) => String(s.CmdRef) === '0');
    if (hdrStatus && String(hdrStatus.Data) === '212') authed = true;
    // Verify the server's MD5 credentials against the nonce we issued.
    let serverOk = authedServer;
    if (hdr.Cred) {
      const expected = md5Digest(SERVER_ID, SERVER_SECRET, state.serverNonce);
      serverOk = String(hdr.Cred.Meta.Type) === 'syncml:auth-md5' && String(hdr.Cred.Data) === expected;
      serverCredChecks.push(serverOk);
    }
    const gets: any[] = reply.SyncBody.Get ?? [];
    if (gets.length === 0 && reply.SyncBody.Final !== undefined) break;
    // Answer: SyncHdr status (212 + a fresh nonce for the server's next session), then each command.
    const next = randomBytes(16);
    let body = `<Status><CmdID>1</CmdID><MsgRef>${hdr.MsgID}</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><TargetRef>${DEVICE_ID}</TargetRef><SourceRef>${SERVER_ID}</SourceRef>`;
    body += serverOk
      ? `<Chal><Meta><Type xmlns="syncml:metinf">syncml:auth-md5</Type><Format xmlns="syncml:metinf">b64</Format><NextNonce xmlns="syncml:metinf">${b64(next)}</NextNonce></Meta></Chal><Data>212</Data></Status>`
      : `<Data>401</Data></Status>`;
    let id = 2;
    for (const g of gets) {
      const uri = String(g.Item[0].Target.LocURI);
      const value = uri === './DevInfo/Mod' ? 'RefClient' : uri === './DevInfo/Man' ? 'StdCorp' : undefined;
      const code = serverOk ? (value ? 200 : 404) : 401;
      body += `<Status><CmdID>${id++}</CmdID><MsgRef>${hdr.MsgID}</MsgRef><CmdRef>${g.CmdID}</CmdRef><Cmd>Get</Cmd><TargetRef>${uri}</TargetRef><Data>${code}</Data></Status>`;
      if (code === 200) {
        body += `<Results><CmdID>${id++}</CmdID><MsgRef>${hdr.MsgID}</MsgRef><CmdRef>${g.CmdID}</CmdRef><Item><Source><LocURI>${uri}</LocURI></Source><Data>${value}</Data></Item></Results>`;
        executed.push(uri);
      }
    }
    if (serverOk) {
      state.serverNonce = next;
      authedServer = true;
    }
    reply = await send(body);
  }
  return { executed, serverCredChecks };
}
let authedServer = false;
/** The client's durable state (its DMAcc), shared by both encodings since they use one account. */
const state: ClientState = { serverNonce: Buffer.alloc(0) };

async function queueGet(uri: string): Promise<string> {
  const res = await fetch(`${base}/api/devices/${encodeURIComponent(DEVICE_ID)}/commands`, {
    method: 'POST',
    body: JSON.stringify({ cmd: 'Get', uri, wait: false, notify: false }),
    headers: { 'content-type': 'application/json' },
  });
  expect(res.status).toBe(202);
  return ((await res.json()) as { id: string }).id;
}

async function result(id: string): Promise<any> {
  const res = await fetch(`${base}/api/devices/${encodeURIComponent(DEVICE_ID)}/commands/${id}`);
  return res.json();
}

describe.each(['xml', 'wbxml'] as const)('gwmo server with a standard DM 1.2 client (%s)', (encoding) => {
  it('authenticates both ways (client Basic, server MD5 with NextNonce rotation) and delivers queued commands', async () => {
    // One account for both encodings: the nonce state carries over from the previous block.
    authedServer = false;
    const id1 = await queueGet('./DevInfo/Mod');
    const s1 = await runSession(state, encoding, encoding === 'xml' ? '1' : 'A1');
    expect(s1.serverCredChecks[0]).toBe(true);
    expect(s1.executed).toContain('./DevInfo/Mod');
    const r1 = await result(id1);
    expect(r1.status).toBe(200);
    expect(r1.results[0].data).toBe('RefClient');

    // Second session: the server must now use the nonce we handed over in the first one.
    authedServer = false;
    const id2 = await queueGet('./DevInfo/Man');
    const before = Buffer.from(state.serverNonce);
    const s2 = await runSession(state, encoding, encoding === 'xml' ? '2' : 'A2');
    expect(before.length).toBe(16);
    expect(s2.serverCredChecks.length).toBeGreaterThan(0);
    expect(s2.serverCredChecks[0]).toBe(true);
    expect((await result(id2)).results[0].data).toBe('StdCorp');
  });
});
