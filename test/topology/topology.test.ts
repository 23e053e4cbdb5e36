/**
 * Topology files: validation with file/line/field messages, the generated JSON Schema kept in the
 * repository, starting a topology in-process, resuming it on the same data directory, and
 * `gwmo up` as a process (the README's main job) answering the operator CLI and stopping cleanly.
 */
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadTopology, parseTopology, startTopology, topologyJsonSchema, type RunningTopology } from '../../src/topology/index.ts';
import { memoryLogger, tempDir } from '../support/fixtures.ts';
import { gwmo, startGwmo, type GwmoProcess } from '../support/processes.ts';
import { until } from '../support/gateways.ts';

let run: RunningTopology | undefined;
let proc: GwmoProcess | undefined;
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  await run?.stop();
  run = undefined;
  await proc?.stop('SIGKILL');
  proc = undefined;
  for (const c of cleanups.splice(0)) await c();
});

const SMALL = `version: 1
name: small
server: { listen: 127.0.0.1:0 }
gateways:
  - id: gw-top
    devices:
      - { id: 'IMEI:356938035649001', mode: proxy, model: Meter }
    groups:
      - { id: all, members: [gw-child] }
    images:
      - { name: fw, size: 4096, version: '2.0' }
    gateways:
      - id: gw-child
        adapters:
          - { type: sim, devices: [{ address: l1, kind: light }, { address: t1, kind: sensor }] }
        groups:
          - { id: lights, filter: Mod=sim-light }
`;

describe('topology files', () => {
  it('name the file, line and field of every error', () => {
    const messageOf = (text: string): string => {
      try {
        parseTopology(text, 'site.yaml');
      } catch (err) {
        return String((err as Error).message);
      }
      return '';
    };
    const msg = messageOf(`version: 1
gateways:
  - id: gw-a
    devices:
      - { id: 'IMEI:1', mode: proxyy }
    adapters:
      - { type: knx, physAddr: nope }
`);
    expect(msg).toMatch(/site\.yaml:5: gateways\.0\.devices\.0\.mode: /);
    expect(msg).toMatch(/site\.yaml:7: gateways\.0\.adapters\.0(\.physAddr)?: /);
    // DevIds are unique across the tree (checked once the file is otherwise valid).
    const dup = messageOf(`version: 1
gateways:
  - id: gw-a
    devices:
      - { id: 'IMEI:1' }
      - { id: 'IMEI:1' }
    gateways:
      - id: gw-a
`);
    expect(dup).toMatch(/site\.yaml:6: gateways\.0\.devices\.1\.id: IMEI:1 is already used/);
    expect(dup).toMatch(/site\.yaml:8: gateways\.0\.gateways\.0\.id: gw-a is already used/);
    expect(() => parseTopology('version: 2\ngateways: []\n', 'v.yaml')).toThrow(/v\.yaml:1: version: /);
    expect(() => parseTopology('version: 1\ngateways: [ {id: a\n', 'y.yaml')).toThrow(/y\.yaml:\d+:\d+: /);
    // Secrets from the environment: an unset variable is an error that names it.
    delete process.env['GWMO_TEST_UNSET'];
    expect(() => parseTopology('version: 1\nsecret: ${GWMO_TEST_UNSET}\ngateways: [{ id: a }]\n', 'e.yaml')).toThrow(/GWMO_TEST_UNSET/);
    process.env['GWMO_TEST_SECRET'] = 'from-the-environment';
    expect(parseTopology('version: 1\nsecret: ${GWMO_TEST_SECRET}\ngateways: [{ id: a }]\n', 'e.yaml').secret).toBe('from-the-environment');
  });

  it('the demo building is valid and the committed JSON Schema is the generated one', async () => {
    const t = await loadTopology('topologies/building.yaml');
    expect(t.gateways[0]!.gateways.map((g) => g.id)).toEqual(['gw-floor1', 'gw-floor2', 'gw-floor3']);
    const committed = JSON.parse(await readFile('topologies/topology.schema.json', 'utf8'));
    expect(committed).toEqual(topologyJsonSchema());
  });

  it('starts in-process, and started again on the same data directory shows the same inventory', async () => {
    const tmp = await tempDir('gwmo-topo-');
    cleanups.push(tmp.cleanup);
    const topo = parseTopology(SMALL, 'small.yaml');
    const steps: string[] = [];
    run = await startTopology(topo, { dataDir: tmp.dir, logger: memoryLogger('t').logger, onProgress: (d, n, w) => steps.push(`${d}/${n} ${w}`) });
    expect(steps.at(-1)).toMatch(/^(\d+)\/\1 /);
    const top = run.gateways.get('gw-top')!;
    const child = run.gateways.get('gw-child')!;
    await until(async () => ['urn:dev:sim:l1', 'urn:dev:sim:t1'].every((id) => child.associations.get(id)?.status === 'attached'), 'the sim devices');
    await until(async () => top.associations.get('IMEI:356938035649001')?.status === 'attached', 'the DM device');
    // The server routes to a device two levels down by its id alone.
    await until(async () => (await run!.server!.route('urn:dev:sim:l1')) !== undefined, 'the route to l1');
    const res = await fetch(`${run.urls.api}/devices/${encodeURIComponent('urn:dev:sim:l1')}/commands`, { method: 'POST', body: JSON.stringify({ cmd: 'Get', uri: './DevInfo/Mod', timeout: 20 }), headers: { 'content-type': 'application/json' } });
    expect(((await res.json()) as { results: { data: string }[] }).results[0]!.data).toBe('sim-light');
    expect(top.groups.get('all')?.members).toEqual({ m1: { deviceId: 'gw-child' } });
    expect(child.groups.resolve('lights', child.associations.all()).members.map((m) => m.deviceId)).toEqual(['urn:dev:sim:l1']);
    expect(top.images.get('fw')?.version).toBe('2.0');
    const inventory = (): string[] => [...run!.gateways.values()].flatMap((g) => g.associations.all().map((r) => `${g.config.id}/${r.key}=${r.deviceId}`)).sort();
    const before = inventory();
    const imageHash = top.images.get('fw')!.hash;
    await run.stop();

    run = await startTopology(topo, { dataDir: tmp.dir, logger: memoryLogger('t2').logger });
    expect(inventory()).toEqual(before);
    expect(run.gateways.get('gw-top')!.images.get('fw')!.hash).toBe(imageHash);
    expect(Object.keys(run.gateways.get('gw-top')!.groups.get('all')!.members)).toEqual(['m1']); // not provisioned twice
    // The server and the gateways listen on new ports now: the chain still reaches a device two levels down
    // (each gateway follows its parent's new address from the config, not the stale one in its DMAcc).
    await until(async () => (await run!.server!.route('urn:dev:sim:t1')) !== undefined, 'the route to t1');
    const again = await fetch(`${run.urls.api}/devices/${encodeURIComponent('urn:dev:sim:t1')}/commands`, { method: 'POST', body: JSON.stringify({ cmd: 'Get', uri: './DevInfo/Mod', timeout: 20 }), headers: { 'content-type': 'application/json' } });
    expect(((await again.json()) as { results: { data: string }[] }).results[0]!.data).toBe('sim-sensor');
  });

  it('reloading a changed topology restarts only the changed subtrees, on the same data', async () => {
    const tmp = await tempDir('gwmo-reload-');
    cleanups.push(tmp.cleanup);
    run = await startTopology(parseTopology(SMALL, 'small.yaml'), { dataDir: tmp.dir, logger: memoryLogger('r').logger });
    const top = run.gateways.get('gw-top')!;
    const childBefore = run.gateways.get('gw-child')!;
    await until(async () => childBefore.associations.get('urn:dev:sim:l1')?.status === 'attached', 'l1');
    // The child gets a third sim device; a new gateway appears under gw-top.
    const changed = SMALL.replace("{ address: t1, kind: sensor }]", "{ address: t1, kind: sensor }, { address: l2, kind: light }]") + `      - id: gw-extra
        adapters:
          - { type: sim, name: sim, devices: [{ address: x1, kind: thermostat }] }
`;
    const r = await run.reload(parseTopology(changed, 'small.yaml'));
    expect(r).toEqual({ restarted: ['gw-child', 'gw-extra'], added: ['gw-extra'], removed: [] });
    expect(run.gateways.get('gw-top')).toBe(top); // untouched
    const child = run.gateways.get('gw-child')!;
    expect(child).not.toBe(childBefore);
    await until(async () => ['urn:dev:sim:l1', 'urn:dev:sim:l2'].every((id) => child.associations.get(id)?.status === 'attached'), 'l1 and l2 after the reload');
    expect(child.associations.get('urn:dev:sim:l1')!.key).toBe(childBefore.associations.get('urn:dev:sim:l1')!.key); // same data
    await until(async () => top.associations.get('gw-extra')?.status === 'attached', 'the new gateway to attach to gw-top');
    await until(async () => run!.gateways.get('gw-extra')!.associations.get('urn:dev:sim:x1')?.status === 'attached', 'x1');
    // Removing it again: stopped, and forgotten by its parent; gw-child is not touched.
    const again = await run.reload(parseTopology(SMALL, 'small.yaml'));
    expect(again).toEqual({ restarted: ['gw-child'], added: [], removed: ['gw-extra'] });
    expect(run.gateways.has('gw-extra')).toBe(false);
    expect(top.associations.get('gw-extra')).toBeUndefined();
    await expect(run.reload(parseTopology(SMALL.replace('name: small', 'name: other'), 'small.yaml'))).rejects.toThrow(/server, secret, name or tls/);
  });

  it('the embedding example runs the building inside its own process (import from "gwmo")', async () => {
    const { execFile } = await import('node:child_process');
    const out = await new Promise<string>((resolve, reject) =>
      execFile(process.execPath, ['bin/run-ts.js', 'examples/embed.ts'], { timeout: 60_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout))),
    );
    expect(out).toMatch(/floor 2 has \d+ devices/);
    expect(out).toMatch(/r201-light is a sim-light, reached by (adaptation|proxy) via gw-building/); // proxy while the server has not read the Mode yet
  });

  it('gwmo up runs the demo building as a process: the CLI reaches its devices, Ctrl-C stops it', async () => {
    const tmp = await tempDir('gwmo-up-');
    cleanups.push(tmp.cleanup);
    proc = await startGwmo(['up', 'topologies/building.yaml', '--listen', '127.0.0.1:0', '--data', join(tmp.dir, 'data')], /API\s+(http:\/\/\S+)\/api/, 60_000);
    const server = proc.match[1]!;
    // The live visualizer's page is served (offline) and its model already holds the gateways' actors.
    const viz = /visualizer\s+(http:\/\/\S+)/.exec(proc.output())?.[1];
    expect(viz, proc.output()).toBeDefined();
    expect((await fetch(viz!)).status).toBe(200);
    const model = (await (await fetch(new URL('/api/model', viz!))).json()) as { actors?: unknown[] };
    expect(JSON.stringify(model)).toContain('gw-floor2');
    const devices = await gwmo(['devices', '--server', server, '--json']);
    expect(devices.code, devices.stderr).toBe(0);
    const ids = (JSON.parse(devices.stdout) as { devices: { deviceId: string }[] }).devices.map((d) => d.deviceId);
    expect(ids).toEqual(expect.arrayContaining(['gw-building', 'gw-floor1', 'gw-floor2', 'gw-floor3']));
    // Devices of the floors are reached by id, through two gateways.
    let get = { code: 1, stdout: '', stderr: '' };
    for (let i = 0; i < 50 && get.code !== 0; i++) {
      get = await gwmo(['get', 'urn:dev:sim:r201-light', './DevInfo/Mod', '--server', server]);
      if (get.code !== 0) await new Promise((r) => setTimeout(r, 200));
    }
    expect(get.stdout, get.stderr).toContain('./DevInfo/Mod = sim-light');
    expect(get.stdout).toMatch(/\[route: (adaptation|proxy) via gw-building\]/); // proxy until the server has read the record's Mode
    // The README's operator commands: an inventory query and a fanout over the whole building.
    const inv = await gwmo(['inventory', 'gw-floor2', '--server', server, '--json']);
    expect(inv.code, inv.stderr).toBe(0);
    const records = (JSON.parse(inv.stdout) as { records: { deviceId: string; protocol: string }[] }).records;
    expect(records.map((r) => r.protocol)).toEqual(expect.arrayContaining(['OMA-DM/1.2', 'Sim', 'ZigBee']));
    const fan = await gwmo(['fanout', 'gw-building', '--group', 'all-lights', '--cmd', 'Replace ./Point/Value on', '--server', server, '--json']);
    expect(fan.code, fan.stderr).toBe(0);
    const job = JSON.parse(fan.stdout) as { state: string; Total: number; Succeeded: number; members: { deviceId: string; status: number }[] };
    expect(job.state).toBe('completed');
    expect(job.members.map((m) => m.deviceId).sort()).toEqual(['r101-light', 'r102-light', 'r201-light', 'r202-light', 'r301-light', 'r302-light'].map((a) => `urn:dev:sim:${a}`));
    expect(job.members.every((m) => m.status === 200)).toBe(true);
    const table = await gwmo(['fanout', 'gw-building', '--group', 'floor-2', '--cmd', 'Get ./DevInfo/Mod', '--server', server]);
    expect(table.stdout).toMatch(/urn:dev:sim:r201-light\s+200 OK\s+sim-light/);
    expect(table.stdout).toMatch(/job cli-\S+ on gw-building: completed — (\d+) of \1 succeeded, 0 failed/);
    // Groups, and an image stored from a local file then distributed: every light downloads it
    // from its own floor gateway and reports the file's hash.
    const grp = await gwmo(['group', 'set', 'gw-floor1', 'knx', '--filter', 'Protocol=KNX', '--server', server, '--json']);
    expect(grp.code, grp.stderr).toBe(0);
    const groups = JSON.parse((await gwmo(['groups', 'gw-floor1', '--server', server, '--json'])).stdout) as { groups: { id: string; filter?: string }[] };
    expect(groups.groups.map((g) => g.id).sort()).toEqual(['knx', 'lights']);
    const fw = join(tmp.dir, 'fw.bin');
    const bytes = Buffer.alloc(200_000, 7);
    await writeFile(fw, bytes);
    const put = await gwmo(['image', 'put', 'gw-building', 'fw-test', fw, '--image-version', '9.9', '--server', server, '--json']);
    expect(put.code, put.stderr).toBe(0);
    const img = JSON.parse(put.stdout) as { state: string; size: number; hash: string; bytesServed: number };
    const sha = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    expect(img).toMatchObject({ state: 'stored', size: 200_000, hash: sha, bytesServed: 200_000 });
    const dist = await gwmo(['fanout', 'gw-building', '--group', 'all-lights', '--cmd', 'Replace ./FwUpdate/PkgURL ${ImageURL:fw-test}', '--cmd', 'Exec ./FwUpdate/DownloadAndUpdate', '--server', server, '--json']);
    expect(dist.code, dist.stderr + dist.stdout).toBe(0);
    const check = JSON.parse((await gwmo(['fanout', 'gw-building', '--group', 'all-lights', '--cmd', 'Get ./FwUpdate/LastHash', '--server', server, '--json'])).stdout) as { members: { commands: { data?: string }[] }[] };
    expect(check.members).toHaveLength(6);
    expect(check.members.every((m) => m.commands[0]!.data === sha)).toBe(true);

    const exited = new Promise<number | null>((resolve) => proc!.proc.once('exit', (code) => resolve(code)));
    proc.proc.kill('SIGINT');
    expect(await exited, proc.output()).toBe(0);
  }, 120_000);
});
