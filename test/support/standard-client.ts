/**
 * An independent "standard" OMA DM 1.2 client, written from the protocol notes alone: raw SyncML
 * text (no gwmo codec), fast-xml-parser to read replies, Debian's xml2wbxml/wbxml2xml for WBXML,
 * node:crypto for the digests. It behaves like the reference toolkit client: it sends
 * `application/vnd.syncml+xml` (or `+wbxml`), Basic credentials in every message until 212, and it
 * requires the server to authenticate with MD5, handing it a fresh NextNonce every session. It
 * answers Get for the values it holds (404 otherwise) and Replace by storing the value.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { XMLParser } from 'fast-xml-parser';
import { libwbxml } from './libwbxml.ts';

const md5 = (b: Buffer | string): Buffer => createHash('md5').update(b).digest();
const b64 = (b: Buffer): string => b.toString('base64');
/** MD5 credential of notes §5.1: B64(H(B64(H(user:password)) ":" nonce)). */
export const md5Digest = (user: string, pw: string, nonce: Buffer): string =>
  b64(md5(Buffer.concat([Buffer.from(b64(md5(`${user}:${pw}`)) + ':'), nonce])));

const parser = new XMLParser({
  ignoreAttributes: true,
  parseTagValue: false,
  isArray: (name) => ['Status', 'Get', 'Item', 'Results', 'Replace', 'Alert', 'TargetRef'].includes(name),
  removeNSPrefix: true,
});

/** Who the client is and what it expects of its server. */
export interface StandardClientConfig {
  url: string;
  deviceId: string;
  user: string;
  password: string;
  serverId: string;
  serverSecret: string;
  /** The leaves it holds (Get answers 200 with the value; Replace stores). */
  values: Record<string, string>;
}

/** The client's durable state (its DMAcc): the nonce the server must use next. */
export interface StandardClientState {
  serverNonce: Buffer;
}

/** What happened in one session. */
export interface StandardSessionResult {
  executed: string[];
  /** One entry per server message that carried credentials: did they verify? */
  serverCredChecks: boolean[];
}

/** A standard DM 1.2 client. */
export class StandardClient {
  readonly state: StandardClientState = { serverNonce: Buffer.alloc(0) };
  private dir: string | undefined;

  constructor(readonly cfg: StandardClientConfig) {}

  private async tmp(): Promise<string> {
    this.dir ??= await mkdtemp(join(tmpdir(), 'gwmo-stdclient-'));
    return this.dir;
  }

  /** Converts XML to WBXML with Debian's libwbxml. */
  private async toWbxml(xml: string): Promise<Buffer> {
    const inF = join(await this.tmp(), `in-${randomBytes(4).toString('hex')}.xml`);
    const outF = inF.replace('.xml', '.wbxml');
    await writeFile(inF, xml);
    await libwbxml('xml2wbxml', ['-k', '-n', '-v', '1.2', '-o', outF, inF], await this.tmp());
    return readFile(outF);
  }

  private async fromWbxml(bytes: Buffer): Promise<string> {
    const inF = join(await this.tmp(), `in-${randomBytes(4).toString('hex')}.wbxml`);
    const outF = inF.replace('.wbxml', '.xml');
    await writeFile(inF, bytes);
    await libwbxml('wbxml2xml', ['-k', '-m', '0', '-o', outF, inF], await this.tmp());
    return (await readFile(outF, 'utf8')).replace(/<!DOCTYPE[^>]*>/, '');
  }

  /** Runs one whole client-initiated session. */
  async session(encoding: 'xml' | 'wbxml', sessionId: string): Promise<StandardSessionResult> {
    const { url, deviceId, user, password, serverId, serverSecret } = this.cfg;
    let msgId = 0;
    let authed = false;
    let serverAuthed = false;
    const executed: string[] = [];
    const serverCredChecks: boolean[] = [];
    const send = async (body: string): Promise<any> => {
      msgId++;
      const cred = authed
        ? ''
        : `<Cred><Meta><Format xmlns="syncml:metinf">b64</Format><Type xmlns="syncml:metinf">syncml:auth-basic</Type></Meta><Data>${b64(Buffer.from(`${user}:${password}`))}</Data></Cred>`;
      const xml =
        `<?xml version="1.0" encoding="UTF-8"?><SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto>` +
        `<SessionID>${sessionId}</SessionID><MsgID>${msgId}</MsgID><Target><LocURI>${url}</LocURI></Target>` +
        `<Source><LocURI>${deviceId}</LocURI><LocName>${user}</LocName></Source>${cred}` +
        `<Meta><MaxMsgSize xmlns="syncml:metinf">16384</MaxMsgSize></Meta></SyncHdr><SyncBody>${body}<Final/></SyncBody></SyncML>`;
      const payload = encoding === 'xml' ? Buffer.from(xml) : await this.toWbxml(xml);
      const res = await fetch(url, { method: 'POST', body: payload, headers: { 'content-type': `application/vnd.syncml+${encoding}` } });
      if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
      const ct = res.headers.get('content-type');
      if (ct !== `application/vnd.syncml.dm+${encoding}`) throw new Error(`unexpected content type ${ct}`);
      const raw = Buffer.from(await res.arrayBuffer());
      const text = encoding === 'xml' ? raw.toString('utf8') : await this.fromWbxml(raw);
      return parser.parse(text).SyncML;
    };
    const devInfo = { DevId: deviceId, Man: 'StdCorp', Mod: 'RefClient', DmV: '1.2', Lang: 'en-US' };
    let reply = await send(
      `<Alert><CmdID>1</CmdID><Data>1201</Data></Alert><Replace><CmdID>2</CmdID>` +
        Object.entries(devInfo)
          .map(([n, v]) => `<Item><Source><LocURI>./DevInfo/${n}</LocURI></Source><Data>${v}</Data></Item>`)
          .join('') +
        `</Replace>`,
    );
    for (let round = 0; round < 10; round++) {
      const hdr = reply.SyncHdr;
      const statuses: any[] = reply.SyncBody.Status ?? [];
      const hdrStatus = statuses.find((s) => String(s.CmdRef) === '0');
      if (hdrStatus && String(hdrStatus.Data) === '212') authed = true;
      // Verify the server's MD5 credentials against the nonce we issued.
      let serverOk = serverAuthed;
      if (hdr.Cred) {
        const expected = md5Digest(serverId, serverSecret, this.state.serverNonce);
        serverOk = String(hdr.Cred.Meta.Type) === 'syncml:auth-md5' && String(hdr.Cred.Data) === expected;
        serverCredChecks.push(serverOk);
      }
      const gets: any[] = reply.SyncBody.Get ?? [];
      const replaces: any[] = reply.SyncBody.Replace ?? [];
      if (gets.length === 0 && replaces.length === 0 && reply.SyncBody.Final !== undefined) break;
      // Answer: SyncHdr status (212 + a fresh nonce for the server's next session), then each command.
      const next = randomBytes(16);
      let body = `<Status><CmdID>1</CmdID><MsgRef>${hdr.MsgID}</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><TargetRef>${deviceId}</TargetRef><SourceRef>${serverId}</SourceRef>`;
      body += serverOk
        ? `<Chal><Meta><Type xmlns="syncml:metinf">syncml:auth-md5</Type><Format xmlns="syncml:metinf">b64</Format><NextNonce xmlns="syncml:metinf">${b64(next)}</NextNonce></Meta></Chal><Data>212</Data></Status>`
        : `<Data>401</Data></Status>`;
      let id = 2;
      for (const g of gets) {
        const uri = String(g.Item[0].Target.LocURI);
        const value = this.cfg.values[uri];
        const code = serverOk ? (value !== undefined ? 200 : 404) : 401;
        body += `<Status><CmdID>${id++}</CmdID><MsgRef>${hdr.MsgID}</MsgRef><CmdRef>${g.CmdID}</CmdRef><Cmd>Get</Cmd><TargetRef>${uri}</TargetRef><Data>${code}</Data></Status>`;
        if (code === 200) {
          body += `<Results><CmdID>${id++}</CmdID><MsgRef>${hdr.MsgID}</MsgRef><CmdRef>${g.CmdID}</CmdRef><Item><Source><LocURI>${uri}</LocURI></Source><Data>${value}</Data></Item></Results>`;
          executed.push(`Get ${uri}`);
        }
      }
      for (const r of replaces) {
        const uri = String(r.Item[0].Target.LocURI);
        const code = serverOk ? (uri in this.cfg.values ? 200 : 404) : 401;
        if (code === 200) {
          this.cfg.values[uri] = String(r.Item[0].Data ?? '');
          executed.push(`Replace ${uri}`);
        }
        body += `<Status><CmdID>${id++}</CmdID><MsgRef>${hdr.MsgID}</MsgRef><CmdRef>${r.CmdID}</CmdRef><Cmd>Replace</Cmd><TargetRef>${uri}</TargetRef><Data>${code}</Data></Status>`;
      }
      if (serverOk) {
        this.state.serverNonce = next;
        serverAuthed = true;
      }
      reply = await send(body);
    }
    return { executed, serverCredChecks };
  }
}
