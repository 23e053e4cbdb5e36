/**
 * Use case "command fanout and response aggregation" (GwMO-FORA-001/002, notes §1.5): the server
 * starts one job on a building gateway with plain DM commands; the gateway partitions the members,
 * delegates each floor to its floor gateway (recursive aggregation), and returns one consolidated
 * result with a status per member. Also: members that are unreachable, slow, detached or unknown
 * are reported with their own status, never dropped; cancellation; restart mid-job.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { SimAdapter } from '../../adapters/sim.ts';
import { Gateway } from '../../src/gateway/gateway.ts';
import { memoryLogger } from '../support/fixtures.ts';
import { addDevice, addGateway, operate, proxyAssociation, startDeployment, until, type Deployment } from '../support/gateways.ts';
import { completion, readLeaf, readResults, startJob } from '../support/fanout.ts';
import { join } from 'node:path';

let d: Deployment | undefined;
afterEach(async () => {
  await d?.close();
  d = undefined;
});

const simNet = (floor: number, latencyMs = 0) => ({
  type: 'sim',
  devices: [
    { address: `${floor}.1.1`, kind: 'light' },
    { address: `${floor}.1.2`, kind: 'sensor' },
    { address: `${floor}.1.3`, kind: 'thermostat' },
  ],
  latencyMs,
});

describe('fanout and aggregation', () => {
  it('runs a diagnostic on every device of a three-floor building through floor gateways, with one consolidated result', async () => {
    d = await startDeployment([{ deviceId: 'gw-building', username: 'gw-building-user', secret: 'gw-building-secret' }]);
    const floors = ['gw-floor1', 'gw-floor2', 'gw-floor3'];
    const building = await addGateway(d, 'gw-building', { kind: 'server', server: d.server }, floors.map((f) => proxyAssociation(f, { gateway: true })));
    for (const [i, f] of floors.entries()) {
      const dev = `IMEI:35000000000000${i + 1}`;
      const gw = await addGateway(d, f, { kind: 'gateway', gateway: building }, [proxyAssociation(dev)], { adapters: [simNet(i + 1)] });
      await (await addDevice(d, dev, { kind: 'gateway', gateway: gw })).connect();
    }
    // The floors announce their devices to the building gateway, which learns who is behind whom.
    await until(async () => floors.every((f) => building.associations.get(f)?.status === 'attached'), 'the floor gateways to attach');

    // A group on the building gateway: every floor (a child gateway as member = its whole subtree).
    const g = './GwMO/Groups/building';
    const make = await operate(d.server, 'gw-building', {
      cmd: 'Sequence',
      commands: [
        { cmd: 'Add', uri: g, format: 'node' },
        ...floors.map((f, i) => ({ cmd: 'Add', uri: `${g}/Members/m${i + 1}/DeviceID`, value: f })),
      ],
    });
    expect(make.status).toBe(200);
    expect(await readLeaf(d.server, 'gw-building', `${g}/Count`)).toBe('3');

    const start = await startJob(
      d.server,
      'gw-building',
      'diag1',
      { groupId: 'building', commands: [{ cmd: 'Get', uri: './DevInfo/Mod' }, { cmd: 'Get', uri: './DevDetail/FwV' }] },
      'c-diag1',
    );
    expect(start.status, JSON.stringify(start)).toBe(200);
    expect(start.statuses?.at(-1)?.status ?? 202).toBe(202);

    const done = await completion(d.server, 'gw-building', 'c-diag1');
    expect(done.source).toBe('./GwMO/Fanout/diag1');
    expect(done.data).toContain('<State>30</State>');
    expect(done.data).toContain('<Total>12</Total>');

    const results = await readResults(d.server, 'gw-building', 'diag1');
    const rows = Object.values(results);
    expect(rows).toHaveLength(12); // 3 floors × (1 DM device + 3 adaptation devices)
    expect(rows.every((r) => r.status === 200)).toBe(true);
    const mods = rows.map((r) => r.cmds['1']?.data).sort();
    expect(mods.filter((m) => m === 'SimDevice')).toHaveLength(3);
    expect(mods.filter((m) => m?.startsWith('sim-'))).toHaveLength(9);
    expect(new Set(rows.map((r) => r.deviceId)).size).toBe(12);
    expect(rows.find((r) => r.deviceId === 'urn:dev:sim:2.1.3')?.cmds['1']?.data).toBe('sim-thermostat');
    expect(await readLeaf(d.server, 'gw-building', './GwMO/Fanout/diag1/State')).toBe('30');
    expect(await readLeaf(d.server, 'gw-building', './GwMO/Fanout/diag1/Progress/Succeeded')).toBe('12');

    // The server only ever talked to the building gateway: the floors and devices never reached it.
    const serverLines = d.logs.server!.join('\n');
    for (const id of [...floors, 'IMEI:350000000000001', 'urn:dev:sim:1.1.1']) expect(serverLines).not.toContain(`session with ${id}`);
    // Sub-jobs were cleaned from the floor gateways after merging.
    for (const f of floors) expect(d.gateways.find((x) => x.config.id === f)!.fanout.job(`diag1.g000${floors.indexOf(f) + 1}`)).toBeUndefined();
  });

  it('marks unreachable, slow, detached and unknown members with their own status and keeps the rest', async () => {
    d = await startDeployment([{ deviceId: 'gw-f', username: 'gw-f-user', secret: 'gw-f-secret' }]);
    const gw = await addGateway(d, 'gw-f', { kind: 'server', server: d.server }, [proxyAssociation('IMEI:351000000000009')], {
      adapters: [{ type: 'sim', generate: { count: 6, prefix: 's', kind: 'sensor' } }],
    });
    const sim = gw.adapters.get('sim') as SimAdapter;
    await until(async () => gw.associations.all().length === 7, 'the sim devices to associate');
    sim.behave('s2', { unreachable: true });
    sim.behave('s3', { latencyMs: 3000 }); // slower than the job's 1 s timeout
    sim.behave('s4', { failWith: 500 });
    sim.leave('s5'); // gone from the network
    const ids = ['urn:dev:sim:s1', 'urn:dev:sim:s2', 'urn:dev:sim:s3', 'urn:dev:sim:s4', 'urn:dev:sim:s5', 'urn:dev:sim:s6', 'IMEI:351000000000009', 'urn:dev:sim:nowhere'];
    const start = await startJob(d.server, 'gw-f', 'read1', { deviceIds: ids, commands: [{ cmd: 'Get', uri: './Point/Value' }], policy: { timeout: 1 } }, 'c-read1');
    expect(start.status).toBe(200);
    const done = await completion(d.server, 'gw-f', 'c-read1');
    expect(done.data).toContain('<State>40</State>');
    const byId = Object.fromEntries(Object.values(await readResults(d.server, 'gw-f', 'read1')).map((r) => [r.deviceId, r]));
    expect(Object.keys(byId).sort()).toEqual([...ids].sort()); // every member is there
    expect(byId['urn:dev:sim:s1']!.status).toBe(200);
    expect(Number(byId['urn:dev:sim:s1']!.cmds['1']!.data)).toBeGreaterThan(0);
    expect(byId['urn:dev:sim:s6']!.status).toBe(200);
    expect(byId['urn:dev:sim:s2']!.status).toBe(461);
    expect(byId['urn:dev:sim:s3']!.status).toBe(461);
    expect(byId['urn:dev:sim:s4']!.status).toBe(500);
    expect(byId['urn:dev:sim:s5']!.status).toBe(461);
    expect(byId['IMEI:351000000000009']!.status).toBe(461); // a DM device that never connects in time
    expect(byId['urn:dev:sim:nowhere']!.status).toBe(460);
    expect(await readLeaf(d.server, 'gw-f', './GwMO/Fanout/read1/Progress/Failed')).toBe('6');
    // The unreachable devices count as detached in the inventory after the fanout told the gateway so.
    await until(async () => gw.associations.get('urn:dev:sim:s5')?.status === 'detached', 's5 to be detached');
    // The DM device's command was withdrawn: it does not run later unknown to the server.
    expect((await gw.south.queue.pending('IMEI:351000000000009')).length).toBe(0);
  });

  it('respects the concurrency cap, writes to devices, and cancels the members not yet started', async () => {
    d = await startDeployment([{ deviceId: 'gw-c', username: 'gw-c-user', secret: 'gw-c-secret' }]);
    const gw = await addGateway(d, 'gw-c', { kind: 'server', server: d.server }, [], {
      adapters: [{ type: 'sim', generate: { count: 20, prefix: 'l', kind: 'light' }, latencyMs: 150, maxConcurrency: 64 }],
    });
    const sim = gw.adapters.get('sim') as SimAdapter;
    await until(async () => gw.associations.all().length === 20, 'the lights to associate');
    const g = './GwMO/Groups/lights';
    expect((await operate(d.server, 'gw-c', { cmd: 'Sequence', commands: [{ cmd: 'Add', uri: g, format: 'node' }, { cmd: 'Add', uri: `${g}/Filter`, value: 'Protocol=Sim&Mod=sim-light' }] })).status).toBe(200);
    expect(await readLeaf(d.server, 'gw-c', `${g}/Count`)).toBe('20');
    const start = await startJob(d.server, 'gw-c', 'on1', { groupId: 'lights', commands: [{ cmd: 'Replace', uri: './Point/Value', data: 'on' }], policy: { maxConcurrency: 2 } }, 'c-on1');
    expect(start.status).toBe(200);
    await until(async () => Number(await readLeaf(d!.server, 'gw-c', './GwMO/Fanout/on1/Progress/Succeeded')) >= 4, 'a few lights switched');
    const cancel = await operate(d.server, 'gw-c', { cmd: 'Exec', uri: './GwMO/Fanout/on1/Operations/Cancel' });
    expect(cancel.status).toBe(200);
    const done = await completion(d.server, 'gw-c', 'c-on1');
    expect(done.data).toContain('<State>50</State>');
    const rows = Object.values(await readResults(d.server, 'gw-c', 'on1'));
    expect(rows).toHaveLength(20);
    const on = rows.filter((r) => r.status === 200);
    const skipped = rows.filter((r) => r.status === 215);
    expect(on.length + skipped.length).toBe(20);
    expect(skipped.length).toBeGreaterThan(5);
    // Exactly the members reported 200 are on; the cancelled ones were never touched.
    for (const r of rows) expect(sim.inspect(r.deviceId.replace('urn:dev:sim:', ''))!.on).toBe(r.status === 200);
  });

  it('reaches lights with one native multicast, runs per-device legs for the rest, and keeps per-member statuses', async () => {
    d = await startDeployment([{ deviceId: 'gw-m', username: 'gw-m-user', secret: 'gw-m-secret' }]);
    const gw = await addGateway(d, 'gw-m', { kind: 'server', server: d.server }, [], {
      adapters: [{ type: 'sim', generate: { count: 12, prefix: 'm', kind: 'light' }, devices: [{ address: 'temp1', kind: 'sensor' }], multicast: true, latencyMs: 20 }],
    });
    const sim = gw.adapters.get('sim') as SimAdapter;
    await until(async () => gw.associations.all().length === 13, 'the devices to associate');
    sim.behave('m3', { unreachable: true }); // misses the (unacknowledged) multicast
    const before = sim.nativeOps;
    const start = await startJob(d.server, 'gw-m', 'allon', { groupId: '*', commands: [{ cmd: 'Replace', uri: './Point/Value', data: 'on' }] }, 'c-allon');
    expect(start.status).toBe(200);
    await completion(d.server, 'gw-m', 'c-allon');
    const byId = Object.fromEntries(Object.values(await readResults(d.server, 'gw-m', 'allon')).map((r) => [r.deviceId, r]));
    expect(Object.keys(byId)).toHaveLength(13);
    expect(sim.multicasts).toBe(1);
    // One radio operation for the 12 lights; the sensor's leg is refused (its Point/Value is
    // read-only) from the node's metadata, without touching the radio.
    expect(sim.nativeOps - before).toBe(1);
    for (let i = 1; i <= 12; i++) {
      const r = byId[`urn:dev:sim:m${i}`]!;
      expect(r.status).toBe(i === 3 ? 461 : 200);
      expect(sim.inspect(`m${i}`)!.on).toBe(i !== 3);
    }
    expect(byId['urn:dev:sim:temp1']!.status).toBe(405);
    // A server without the Replace right on a light's mount gets no multicast for it (ACL per device).
    const acl = await operate(d.server, 'gw-m', { cmd: 'Replace', uri: `./GwMO/Devices/${gw.associations.get('urn:dev:sim:m1')!.key}?prop=ACL`, value: 'Get=*' });
    expect(acl.status).toBe(200);
    const off = await startJob(d.server, 'gw-m', 'alloff', { groupId: '*', commands: [{ cmd: 'Replace', uri: './Point/Value', data: 'off' }] }, 'c-alloff');
    expect(off.status).toBe(200);
    await completion(d.server, 'gw-m', 'c-alloff');
    const offById = Object.fromEntries(Object.values(await readResults(d.server, 'gw-m', 'alloff')).map((r) => [r.deviceId, r]));
    expect(offById['urn:dev:sim:m1']!.status).toBe(425);
    expect(sim.inspect('m1')!.on).toBe(true);
    expect(sim.inspect('m2')!.on).toBe(false);
    expect(sim.multicasts).toBe(2);
  });

  it('keeps each command\'s results apart for a proxy-mode DM device (Sequence of several Gets)', async () => {
    d = await startDeployment([{ deviceId: 'gw-s', username: 'gw-s-user', secret: 'gw-s-secret' }]);
    const gw = await addGateway(d, 'gw-s', { kind: 'server', server: d.server }, [proxyAssociation('IMEI:351000000000077')]);
    await (await addDevice(d, 'IMEI:351000000000077', { kind: 'gateway', gateway: gw })).connect();
    const cmds = ['./DevInfo/Man', './DevInfo/DevId', './Vendor/Name', './DevInfo/Mod'].map((uri) => ({ cmd: 'Get', uri }));
    expect((await startJob(d.server, 'gw-s', 'ids', { deviceIds: ['IMEI:351000000000077'], commands: cmds }, 'c-ids')).status).toBe(200);
    await completion(d.server, 'gw-s', 'c-ids');
    const [row] = Object.values(await readResults(d.server, 'gw-s', 'ids'));
    // Before the fix every result went to the first Get and the others had none.
    expect(Object.fromEntries(Object.entries(row!.cmds).map(([n, c]) => [n, c.data]))).toEqual({ '1': 'gwmo', '2': 'IMEI:351000000000077', '3': 'name-of-IMEI:351000000000077', '4': 'SimDevice' });
  });

  it('a job interrupted by a gateway restart resumes from LevelDB and completes', async () => {
    d = await startDeployment([{ deviceId: 'gw-r', username: 'gw-r-user', secret: 'gw-r-secret' }]);
    const adapters = [{ type: 'sim', generate: { count: 30, prefix: 'r', kind: 'sensor' }, latencyMs: 100 }];
    let gw = await addGateway(d, 'gw-r', { kind: 'server', server: d.server }, [], { adapters });
    await until(async () => gw.associations.all().length === 30, 'the sensors to associate');
    const start = await startJob(d.server, 'gw-r', 'diag', { groupId: '*', commands: [{ cmd: 'Exec', uri: './Diag/Run' }, { cmd: 'Get', uri: './Diag/Runs' }], policy: { maxConcurrency: 3 } }, 'c-restart');
    expect(start.status).toBe(200);
    await until(async () => gw.fanout.resultsOf('diag').size >= 6, 'some members done');
    await gw.stop();
    d.gateways.splice(d.gateways.indexOf(gw), 1);
    const partial = gw.fanout.resultsOf('diag').size;
    expect(partial).toBeLessThan(30);
    // Same data directory, fresh process state.
    const l = memoryLogger('gw-r2');
    gw = await Gateway.create({ config: gw.config, dataDir: join(d.dir, 'gw-r'), logger: l.logger });
    await gw.start();
    d.gateways.push(gw);
    expect(l.lines.some((x) => /resuming fanout job diag/.test(x))).toBe(true);
    const done = await completion(d.server, 'gw-r', 'c-restart');
    expect(done.data).toContain('<State>30</State>');
    const rows = Object.values(await readResults(d.server, 'gw-r', 'diag'));
    expect(rows).toHaveLength(30);
    expect(rows.every((r) => r.status === 200 && Number(r.cmds['2']?.data) >= 1)).toBe(true);
  });

  it('a child gateway that vanishes mid-fanout is reported 461 for its slot; the rest of the job completes', async () => {
    d = await startDeployment([{ deviceId: 'gw-top', username: 'gw-top-user', secret: 'gw-top-secret' }]);
    const top = await addGateway(d, 'gw-top', { kind: 'server', server: d.server }, [proxyAssociation('gw-gone', { gateway: true }), proxyAssociation('gw-stays', { gateway: true })]);
    const gone = await addGateway(d, 'gw-gone', { kind: 'gateway', gateway: top }, [], {
      adapters: [{ type: 'sim', generate: { count: 10, prefix: 'g', kind: 'sensor' }, latencyMs: 300 }],
    });
    await addGateway(d, 'gw-stays', { kind: 'gateway', gateway: top }, [], { adapters: [{ type: 'sim', generate: { count: 3, prefix: 's', kind: 'sensor' } }] });
    await until(async () => ['gw-gone', 'gw-stays'].every((g) => top.associations.get(g)?.status === 'attached'), 'the children to attach');
    const start = await startJob(d.server, 'gw-top', 'vanish', { groupId: '*', commands: [{ cmd: 'Get', uri: './Point/Value' }], policy: { timeout: 2, maxConcurrency: 1 } }, 'c-vanish');
    expect(start.status).toBe(200);
    // The sub-job is running on gw-gone (10 members × 300 ms, one at a time) when it goes away.
    await until(async () => gone.fanout.job('vanish.g0001')?.state === 20, 'the sub-job to run on gw-gone');
    await gone.stop();
    d.gateways.splice(d.gateways.indexOf(gone), 1);
    const done = await completion(d.server, 'gw-top', 'c-vanish', 30_000);
    expect(done.data).toContain('<State>40</State>');
    const rows = Object.values(await readResults(d.server, 'gw-top', 'vanish'));
    expect(rows.filter((r) => r.deviceId === 'gw-gone').map((r) => r.status)).toEqual([461]);
    const merged = rows.filter((r) => r.deviceId.startsWith('urn:dev:sim:s'));
    expect(merged).toHaveLength(3);
    expect(merged.every((r) => r.status === 200)).toBe(true);
  });

  it('refuses incomplete or changed jobs with clear statuses', async () => {
    d = await startDeployment([{ deviceId: 'gw-v', username: 'gw-v-user', secret: 'gw-v-secret' }]);
    await addGateway(d, 'gw-v', { kind: 'server', server: d.server });
    const noCmd = await operate(d.server, 'gw-v', {
      cmd: 'Sequence',
      commands: [
        { cmd: 'Add', uri: './GwMO/Fanout/j1', format: 'node' },
        { cmd: 'Add', uri: './GwMO/Fanout/j1/Target/GroupID', value: '*' },
        { cmd: 'Exec', uri: './GwMO/Fanout/j1/Operations/Start' },
      ],
    });
    expect(noCmd.statuses.at(-1).status).toBe(412);
    const badCmd = await operate(d.server, 'gw-v', { cmd: 'Add', uri: './GwMO/Fanout/j1/Commands/1/Cmd', value: 'Format' });
    expect(badCmd.status).toBe(400);
    const noGroup = await startJob(d.server, 'gw-v', 'j2', { groupId: 'missing', commands: [{ cmd: 'Get', uri: './DevInfo/Mod' }] }, 'c-j2');
    expect(noGroup.statuses.at(-1).status).toBe(404);
    const dup = await operate(d.server, 'gw-v', { cmd: 'Add', uri: './GwMO/Fanout/j2', format: 'node' });
    expect(dup.status).toBe(418);
  });
});
