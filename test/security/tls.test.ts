/**
 * TLS on every link (issue "Security and reliability", SECCONF-001), over real HTTPS on 127.0.0.1:
 * a three-level deployment (server, two gateways, a proxy-mode device, a transparent-mode device
 * and adaptation-mode devices) started from a topology with `tls: true` runs management sessions,
 * a fanout and an image distribution with certificates from `gwmo certs init`; a client with the
 * wrong CA fails with a clear message; `clientAuth: require` refuses a client without a certificate
 * at the TLS layer; a certificate cannot speak for another device; openssl's s_client negotiates
 * TLS 1.2 or newer and cannot get TLS 1.1; basic authentication in the clear is refused.
 */
import { execFile } from 'node:child_process';
import { connect } from 'node:tls';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { SimDevice } from '../../src/device/device.ts';
import { deviceConfigSchema } from '../../src/device/config.ts';
import { serverConfigSchema } from '../../src/server/config.ts';
import { DmServer } from '../../src/server/server.ts';
import { parseTopology, startTopology, type RunningTopology } from '../../src/topology/index.ts';
import { initCerts } from '../../src/transport/certs.ts';
import { InspectionHub } from '../../src/inspect/hub.ts';
import { startVisualizer } from '../../src/inspect/server.ts';
import { basicInTheClear } from '../../src/transport/http.ts';
import { tlsFetch } from '../../src/transport/tls.ts';
import { memoryLogger, tempDir } from '../support/fixtures.ts';
import { until } from '../support/gateways.ts';
import { gwmo } from '../support/processes.ts';

const run = promisify(execFile);

let topo: RunningTopology | undefined;
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  await topo?.stop();
  topo = undefined;
  for (const c of cleanups.splice(0).reverse()) await c();
});

const SECURE = `version: 1
name: secure
tls: true
server: { listen: 127.0.0.1:0 }
gateways:
  - id: gw-top
    devices:
      - { id: 'IMEI:356938035649301', mode: proxy, model: Meter }
      - { id: 'IMEI:356938035649302', mode: transparent, model: Lock }
    groups:
      - { id: lights, members: [{ deviceId: gw-child, subGroup: lights }] }
    images:
      - { name: fw, size: 50000, version: '2.0' }
    gateways:
      - id: gw-child
        adapters:
          - { type: sim, devices: [{ address: l1, kind: light }, { address: l2, kind: light }, { address: t1, kind: sensor }] }
        groups:
          - { id: lights, filter: Mod=sim-light }
`;

/** The operator CLI against the running topology, with its CA and client certificate. */
function cli(t: RunningTopology, args: string[]): ReturnType<typeof gwmo> {
  const server = t.urls.api!.replace(/\/api$/, '');
  return gwmo(['--ca', t.tls!.ca, '--cert', t.tls!.operator.cert, '--key', t.tls!.operator.key, ...args, '--server', server]);
}

describe('HTTPS on every link (topology tls: true)', () => {
  it('runs sessions, a fanout and an image distribution through two gateways over HTTPS with mutual TLS', async () => {
    const tmp = await tempDir('gwmo-tls-');
    cleanups.push(tmp.cleanup);
    const mem = memoryLogger('tls');
    topo = await startTopology(parseTopology(SECURE, 'secure.yaml'), { dataDir: tmp.dir, logger: mem.logger });
    expect(topo.urls.dm).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/dm$/);
    for (const g of topo.parts.values()) expect(g.southUrl).toMatch(/^https:/);
    expect([...topo.devices.values()].every((d) => d.notifyUrl.startsWith('https:'))).toBe(true);

    // Proxy-mode device (through gw-top), transparent-mode device (Package 0 relayed by gw-top over
    // HTTPS, its own session with the server over HTTPS), adaptation device two gateways down.
    await until(async () => (await topo!.server!.route('urn:dev:sim:l1')) !== undefined, 'the route to l1', 20_000);
    const meter = await cli(topo, ['get', 'IMEI:356938035649301', './DevInfo/Mod']);
    expect(meter.stdout, meter.stderr).toContain('./DevInfo/Mod = Meter');
    const lock = await cli(topo, ['get', 'IMEI:356938035649302', './DevInfo/Mod']);
    expect(lock.stdout, lock.stderr).toMatch(/transparent via gw-top[\s\S]*= Lock/);
    const light = await cli(topo, ['replace', 'urn:dev:sim:l1', './Point/Value', 'on']);
    expect(light.code, light.stderr).toBe(0);

    // The image goes server-less from gw-top's store to gw-child's (HTTPS, gw-child's certificate)
    // and from there to each light (HTTPS): every light reports the image's hash.
    const dist = await cli(topo, ['fanout', 'gw-top', '--group', 'lights', '--cmd', 'Replace ./FwUpdate/PkgURL ${ImageURL:fw}', '--cmd', 'Exec ./FwUpdate/DownloadAndUpdate', '--json']);
    expect(dist.code, dist.stderr + dist.stdout).toBe(0);
    const check = JSON.parse((await cli(topo, ['fanout', 'gw-top', '--group', 'lights', '--cmd', 'Get ./FwUpdate/LastHash', '--json'])).stdout) as { members: { deviceId: string; commands: { data?: string }[] }[] };
    expect(check.members.map((m) => m.deviceId).sort()).toEqual(['urn:dev:sim:l1', 'urn:dev:sim:l2']);
    const hashes = new Set(check.members.map((m) => m.commands[0]!.data));
    expect(hashes.size).toBe(1);
    expect([...hashes][0]).toMatch(/^sha256:[0-9a-f]{64}$/);

    // The counters an operator watches, scraped over mutual TLS: the server's sessions, the
    // building gateway's fanout members and outbox.
    const scrape = async (base: string): Promise<string> => (await tlsFetch(new URL('/metrics', base), {}, { ca: topo!.tls!.ca, ...topo!.tls!.operator })).text();
    expect(await scrape(topo.urls.dm)).toMatch(/^gwmo_dm_sessions_total\{outcome="completed"\} [1-9]/m);
    const gwMetrics = await scrape(topo.parts.get('gw-top')!.southUrl);
    expect(gwMetrics).toMatch(/^gwmo_fanout_members_total\{result="ok",gateway="gw-top"\} [1-9]/m);
    expect(gwMetrics).toMatch(/^gwmo_gateway_outbox_depth\{gateway="gw-top"\} \d+/m);
    expect(gwMetrics).toMatch(/^gwmo_gateway_associations\{status="attached",gateway="gw-top"\} [1-9]/m);

    // openssl s_client negotiates TLS 1.2+ with a verified chain; TLS 1.1 is refused.
    const port = new URL(topo.urls.dm).port;
    // stdin at EOF: s_client ends right after the handshake instead of waiting for input.
    const sClient = (extra: string[]): Promise<string> =>
      new Promise((resolve) => {
        const p = execFile('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-CAfile', topo!.tls!.ca, '-cert', topo!.tls!.operator.cert, '-key', topo!.tls!.operator.key, ...extra], { timeout: 10_000 }, (_err, stdout, stderr) => resolve(`${stdout}${stderr}`));
        p.stdin?.end();
      });
    const ok = await sClient(['-brief']);
    expect(ok).toMatch(/Protocol version: TLSv1\.[23]/);
    expect(ok).toMatch(/Verification: OK/);
    const old = await sClient(['-tls1_1', '-brief']);
    expect(old).not.toMatch(/Protocol version: TLSv1\.1/);
    expect(old).toMatch(/alert|error|no protocols available|unsupported protocol/i);

    // No account secret reached the logs.
    expect(mem.lines.join('\n')).not.toMatch(/BEGIN [A-Z ]*PRIVATE KEY/);
  }, 90_000);

  it('a client with the wrong CA fails with a clear message; a listener with clientAuth require refuses a client without a certificate at the TLS layer', async () => {
    const tmp = await tempDir('gwmo-tls-neg-');
    cleanups.push(tmp.cleanup);
    const good = await initCerts(join(tmp.dir, 'good'), { names: ['IMEI:356938035649401', 'IMEI:356938035649402'] });
    const other = await initCerts(join(tmp.dir, 'other'), {});
    const cert = (n: string): { cert: string; key: string } => good.certs.find((c) => c.name === n)!;
    const server = await DmServer.create({
      config: serverConfigSchema.parse({
        listen: '127.0.0.1:0',
        tls: { ...cert('server'), ca: good.ca, clientAuth: 'require' },
        serverId: 'dms',
        serverSecret: 'server-secret',
        accounts: [
          { deviceId: 'IMEI:356938035649401', username: 'a', secret: 'secret-a', authType: 'md5' },
          { deviceId: 'IMEI:356938035649402', username: 'b', secret: 'secret-b', authType: 'md5' },
        ],
      }),
      dataDir: join(tmp.dir, 'server'),
      logger: memoryLogger('s').logger,
    });
    await server.start();
    cleanups.push(() => server.stop());
    const device = async (id: string, user: string, secret: string, tls: Record<string, string>): Promise<SimDevice> => {
      const d = await SimDevice.create({
        config: deviceConfigSchema.parse({ deviceId: id, server: { serverId: 'dms', url: server.dmUrl, username: user, secret, authType: 'md5', serverSecret: 'server-secret', serverAuthType: 'md5', ...tls } }),
        logger: memoryLogger(id).logger,
      });
      await d.start();
      cleanups.push(() => d.stop());
      return d;
    };
    // The right CA and its own certificate: a session completes.
    const a = await device('IMEI:356938035649401', 'a', 'secret-a', { ca: good.ca, ...cert('IMEI:356938035649401') });
    const okSession = await a.connect();
    expect(okSession.ok, okSession.reason).toBe(true);
    // The wrong CA: refused, and the reason says to check the CA.
    const wrong = await device('IMEI:356938035649402', 'b', 'secret-b', { ca: other.ca, ...cert('IMEI:356938035649402') });
    const bad = await wrong.connect();
    expect(bad.ok).toBe(false);
    expect(bad.reason).toMatch(/TLS_PEER_UNTRUSTED.*not .*trust|TLS_PEER_UNTRUSTED.*check `ca`/);
    const cliWrong = await gwmo(['--ca', other.ca, 'devices', '--server', server.url]);
    expect(cliWrong.code).toBe(1);
    expect(cliWrong.stderr).toMatch(/TLS_PEER_UNTRUSTED: TLS: .*\(check `ca`\)/);
    // Another device's certificate cannot open a session as this device (CN = DevId).
    const impostor = await device('IMEI:356938035649402', 'b', 'secret-b', { ca: good.ca, ...cert('IMEI:356938035649401') });
    const forged = await impostor.connect();
    expect(forged.ok).toBe(false);
    expect(forged.reason).toMatch(/403/);

    // At the TLS layer, with no HTTP at all: no client certificate, no connection.
    const { port } = new URL(server.url);
    const noCert = (): Promise<string> =>
      new Promise((resolve) => {
        const s = connect({ host: '127.0.0.1', port: Number(port), rejectUnauthorized: false });
        s.on('secureConnect', () => s.write('GET /api/devices HTTP/1.1\r\nHost: x\r\n\r\n'));
        s.on('data', (d) => {
          resolve(`data:${String(d).split('\r\n')[0]}`);
          s.destroy();
        });
        s.on('error', (err: NodeJS.ErrnoException) => resolve(`error:${err.code ?? err.message}`));
        s.on('close', () => resolve('closed'));
      });
    expect(await noCert()).toMatch(/error:ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED|error:ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE/);
    const pem = async (p: string): Promise<string> => readFile(p, 'utf8');
    const withCert = await new Promise<string>((resolve) => {
      void (async () => {
        const s = connect({ host: '127.0.0.1', port: Number(port), ca: await pem(good.ca), cert: await pem(cert('IMEI:356938035649401').cert), key: await pem(cert('IMEI:356938035649401').key), servername: 'localhost' });
        s.on('secureConnect', () => s.write('GET /api/devices HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
        s.on('data', (d) => {
          resolve(String(d).split('\r\n')[0]!);
          s.destroy();
        });
        s.on('error', (err) => resolve(`error:${err.message}`));
      })();
    });
    expect(withCert).toBe('HTTP/1.1 200 OK');
    // An https URL with the wrong CA is a TLS error, not "unreachable".
    await expect(tlsFetch(`${server.url}/api/devices`, {}, { ca: other.ca })).rejects.toMatchObject({ code: 'TLS_PEER_UNTRUSTED' });
  });

  it('gwmo certs init creates a CA and certificates that verify, and adds names on a second run', async () => {
    const tmp = await tempDir('gwmo-certs-');
    cleanups.push(tmp.cleanup);
    const first = await gwmo(['certs', 'init', tmp.dir, '--names', 'gw-a,IMEI:356938035649501', '--json']);
    expect(first.code, first.stderr).toBe(0);
    const r = JSON.parse(first.stdout) as { ca: string; caCreated: boolean; certs: { name: string; cert: string; key: string; created: boolean }[] };
    expect(r.caCreated).toBe(true);
    expect(r.certs.map((c) => c.name)).toEqual(['server', 'gw-a', 'IMEI:356938035649501']);
    for (const c of r.certs) {
      const v = await run('openssl', ['verify', '-CAfile', r.ca, c.cert]);
      expect(v.stdout).toContain(': OK');
      const text = (await run('openssl', ['x509', '-in', c.cert, '-noout', '-subject', '-ext', 'subjectAltName,extendedKeyUsage'])).stdout;
      expect(text).toContain(`CN = ${c.name}`);
      expect(text).toMatch(/IP Address:127\.0\.0\.1/);
      expect(text).toMatch(/TLS Web Server Authentication, TLS Web Client Authentication/);
    }
    const caBefore = await readFile(r.ca, 'utf8');
    const second = await gwmo(['certs', 'init', tmp.dir, '--names', 'gw-b', '--json']);
    const r2 = JSON.parse(second.stdout) as { caCreated: boolean; certs: { name: string; created: boolean }[] };
    expect(r2.caCreated).toBe(false);
    expect(await readFile(r.ca, 'utf8')).toBe(caBefore);
    expect(r2.certs).toEqual([expect.objectContaining({ name: 'server', created: false }), expect.objectContaining({ name: 'gw-b', created: true })]);
  });

  it('the live visualizer serves its page and model over HTTPS when given a tls block', async () => {
    const tmp = await tempDir('gwmo-viz-tls-');
    cleanups.push(tmp.cleanup);
    const certs = await initCerts(tmp.dir, {});
    const server = certs.certs.find((c) => c.name === 'server')!;
    const viz = await startVisualizer({ hub: new InspectionHub(), tls: { cert: server.cert, key: server.key, clientAuth: 'none' } });
    cleanups.push(() => viz.close());
    expect(viz.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/$/);
    expect((await tlsFetch(viz.url, {}, { ca: certs.ca })).status).toBe(200);
    expect((await tlsFetch(new URL('/api/model', viz.url), {}, { ca: certs.ca })).status).toBe(200);
  });

  it('refuses syncml:auth-basic in the clear to anything but loopback, unless allowed', async () => {
    expect(basicInTheClear('http://192.0.2.10:8080/dm', 'syncml:auth-basic')).toMatch(/readable/);
    expect(basicInTheClear('https://192.0.2.10:8443/dm', 'syncml:auth-basic')).toBeUndefined();
    expect(basicInTheClear('http://127.0.0.1:8080/dm', 'syncml:auth-basic')).toBeUndefined();
    expect(basicInTheClear('http://[::1]:8080/dm', 'syncml:auth-basic')).toBeUndefined();
    expect(basicInTheClear('http://192.0.2.10:8080/dm', 'syncml:auth-md5')).toBeUndefined();
    // A server configured to listen on a non-loopback address without TLS, with a basic account:
    // refused before it binds anything (192.0.2.0/24 is TEST-NET; nothing is ever sent there).
    const mem = memoryLogger('basic');
    const tmp = await tempDir('gwmo-basic-');
    cleanups.push(tmp.cleanup);
    const server = await DmServer.create({
      dataDir: tmp.dir,
      config: serverConfigSchema.parse({ listen: '192.0.2.10:0', serverId: 'dms', serverSecret: 's3cret', accounts: [{ deviceId: 'IMEI:1', username: 'u', secret: 'p', authType: 'basic' }] }),
      logger: mem.logger,
    });
    await expect(server.start()).rejects.toMatchObject({ code: 'CONFIG_BASIC_CLEARTEXT' });
    await server.stop().catch(() => undefined);
    // A device with such an account refuses to send its credentials, before any connection
    // (0.0.0.0 is not loopback by name, yet a connection there would stay on this machine).
    const dev = await SimDevice.create({
      config: deviceConfigSchema.parse({ deviceId: 'IMEI:2', server: { serverId: 'dms', url: 'http://0.0.0.0:9/dm', username: 'u', secret: 'p', authType: 'basic', serverSecret: 's', serverAuthType: 'basic' } }),
      logger: memoryLogger('d').logger,
    });
    await expect(dev.connect()).rejects.toMatchObject({ code: 'DEVICE_BASIC_CLEARTEXT' });
    await dev.stop();
  });
});
