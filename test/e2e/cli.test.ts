/**
 * The `gwmo` command line as a user runs it: real processes, a server from a config file, a device
 * process, operator commands with --json, help texts and configuration errors.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const gwmo = (args: string[], env: Record<string, string> = {}) =>
  run(process.execPath, ['bin/gwmo.js', ...args], { env: { ...process.env, ...env }, timeout: 60_000 });

/** Runs gwmo and returns its exit code and output even when it fails. */
async function gwmoStatus(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await gwmo(args);
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

function startProcess(args: string[], ready: RegExp): Promise<{ proc: ChildProcess; match: RegExpExecArray; output: () => string }> {
  const proc = spawn(process.execPath, ['bin/gwmo.js', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stderr!.on('data', (d) => (out += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`not ready: ${out}`)), 20_000);
    proc.stdout!.on('data', (d) => {
      out += d;
      const m = ready.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ proc, match: m, output: () => out });
      }
    });
    proc.on('exit', (code) => reject(new Error(`exited ${code}: ${out}`)));
  });
}

describe('gwmo --help', () => {
  it('lists the commands with examples', async () => {
    const { stdout } = await gwmo(['--help']);
    for (const c of ['server', 'device', 'get', 'replace', 'add', 'delete', 'exec', 'copy', 'results', 'devices', 'demo', 'up', 'inventory', 'fanout', 'groups', 'group', 'image', 'topology']) expect(stdout).toContain(c);
    expect(stdout).toContain('Examples:');
  });
  it('has help with an example on every subcommand', { timeout: 90_000 }, async () => {
    for (const c of [['server'], ['device'], ['get'], ['replace'], ['results'], ['up'], ['inventory'], ['fanout'], ['groups'], ['group', 'set'], ['group', 'delete'], ['image', 'put'], ['topology', 'check'], ['topology', 'schema'], ['certs', 'init']]) {
      const { stdout } = await gwmo([...c, '--help']);
      expect(stdout).toContain('Example');
      expect(stdout).toContain('Usage: gwmo');
    }
  });
});

describe('configuration errors', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gwmo-cli-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('names the file, line and field of an invalid server config', async () => {
    const f = join(dir, 'bad.yaml');
    await writeFile(f, 'listen: 127.0.0.1:0\nserverId: x\nserverSecret: y\nserverAuthType: kerberos\naccounts: []\n');
    const r = await gwmoStatus(['server', '--config', f]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${f}:4: serverAuthType: unknown auth type "kerberos"`);
  });
  it('reports a missing config file clearly', async () => {
    const r = await gwmoStatus(['server', '--config', join(dir, 'nope.yaml')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/cannot read .*nope\.yaml/);
  });
  it('takes secrets from the environment and says which variable is missing', async () => {
    const f = join(dir, 'env.yaml');
    await writeFile(f, 'serverId: x\nserverSecret: ${GWMO_TEST_UNSET_SECRET}\n');
    const r = await gwmoStatus(['server', '--config', f]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('GWMO_TEST_UNSET_SECRET');
  });
  it('explains an unreachable server API', async () => {
    const r = await gwmoStatus(['get', 'IMEI:1', './DevInfo/Mod', '--server', 'http://127.0.0.1:9']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('cannot reach the server API');
  });
});

describe('server, device and operator commands as processes', () => {
  let dir: string;
  let server: { proc: ChildProcess; match: RegExpExecArray };
  let device: { proc: ChildProcess; match: RegExpExecArray } | undefined;
  let api: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gwmo-cli-'));
    await writeFile(
      join(dir, 'server.yaml'),
      `listen: 127.0.0.1:0\npath: /dm\nserverId: cli-dms\nserverSecret: cli-srv\nserverAuthType: md5\naccounts:\n  - { deviceId: "IMEI:42", username: u42, secret: p42, authType: md5 }\n`,
    );
    server = await startProcess(['server', '--config', join(dir, 'server.yaml'), '--data', join(dir, 'srv')], /Operator API (http:\/\/\S+)\/api/);
    api = server.match[1]!;
    await writeFile(
      join(dir, 'device.yaml'),
      [
        'deviceId: "IMEI:42"',
        'encoding: wbxml',
        'server:',
        '  serverId: cli-dms',
        `  url: ${api}/dm`,
        '  username: u42',
        '  secret: p42',
        '  authType: md5',
        '  serverSecret: cli-srv',
        '  serverAuthType: md5',
        'nodes:',
        "  - { uri: ./Vendor, format: node, acl: 'Add=cli-dms&Delete=cli-dms&Get=*&Replace=cli-dms&Exec=cli-dms' }",
        '  - { uri: ./Vendor/Name, value: hall }',
        '',
      ].join('\n'),
    );
    device = await startProcess(['device', '--config', join(dir, 'device.yaml'), '--data', join(dir, 'dev'), '--connect'], /Package 0 listener (\S+)/);
    // Wait until the device's first session has registered it.
    for (let i = 0; i < 100; i++) {
      const r = await fetch(`${api}/api/devices/${encodeURIComponent('IMEI:42')}`).then((x) => x.json() as Promise<{ sessions?: number }>);
      if (r.sessions) break;
      await new Promise((res) => setTimeout(res, 100));
    }
  });
  afterAll(async () => {
    for (const p of [device?.proc, server?.proc]) {
      if (!p || p.exitCode !== null) continue;
      p.kill('SIGINT');
      await new Promise((r) => p.once('exit', r));
    }
    await rm(dir, { recursive: true, force: true });
  });

  it('gets, replaces and lists results with --json', async () => {
    const get = JSON.parse((await gwmo(['get', 'IMEI:42', './Vendor/Name', '--json', '--server', api])).stdout);
    expect(get.status).toBe(200);
    expect(get.results[0].data).toBe('hall');
    const rep = await gwmo(['replace', 'IMEI:42', './Vendor/Name', 'lobby', '--server', api]);
    expect(rep.stdout).toContain('Replace ./Vendor/Name: 200 OK  [route: its own address]');
    const again = await gwmo(['get', 'IMEI:42', './Vendor/Name', '--server', api]);
    expect(again.stdout).toContain('./Vendor/Name = lobby');
    const results = JSON.parse((await gwmo(['results', 'IMEI:42', '--json', '--server', api])).stdout);
    expect(results.commands.map((c: { cmd: string; status: number }) => `${c.cmd}:${c.status}`)).toEqual(['Get:200', 'Replace:200', 'Get:200']);
    const table = (await gwmo(['results', 'IMEI:42', '--server', api])).stdout;
    expect(table).toMatch(/Replace\s+\.\/Vendor\/Name\s+done\s+200 OK\s+its own address/);
  });

  it('exits 1 and prints the DM status when the device refuses', async () => {
    const r = await gwmoStatus(['delete', 'IMEI:42', './DevInfo', '--server', api]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/Delete \.\/DevInfo: 4\d\d/);
  });

  it('queues with --no-wait and the device gets it in its next session', async () => {
    const q = JSON.parse((await gwmo(['replace', 'IMEI:42', './Vendor/Name', 'queued', '--no-wait', '--no-notify', '--json', '--server', api])).stdout);
    expect(q.state).toBe('queued');
    const r = JSON.parse((await gwmo(['get', 'IMEI:42', './Vendor/Name', '--json', '--server', api])).stdout);
    expect(r.results[0].data).toBe('queued');
  });
});
