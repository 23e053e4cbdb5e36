/**
 * Acceptance for KNX (notes §1.8, §2.3, AMode-006): a gateway with a KNX network on a real knxd;
 * the DM server, with plain DM commands only, sees a configured device attach, associates a second
 * one through `./GwMO/Adaptation/KNX/Associations`, reads and writes group objects (the simulated
 * devices see the telegrams), fans one Replace out to both as a single GroupValue_Write, and sees a
 * device that vanishes from the bus detached in the inventory.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { KnxAdapter } from '../../adapters/knx/adapter.ts';
import { listenGroups, startKnxd, type GroupListener, type Knxd } from '../../adapters/knx/knxd.ts';
import { KnxSim } from '../../adapters/knx/sim.ts';
import { completion, readLeaf, readResults, startJob } from '../support/fanout.ts';
import { addGateway, operate, startDeployment, until, type Deployment } from '../support/gateways.ts';

let d: Deployment | undefined;
let knxd: Knxd | undefined;
let sim: KnxSim | undefined;
let listener: GroupListener | undefined;
afterEach(async () => {
  await d?.close();
  await listener?.stop();
  await sim?.stop();
  await knxd?.stop();
  d = undefined;
});

const A = './GwMO/Adaptation/KNX';
const LIGHT = 'urn:dev:knx:1.1.5';
const DIMMER = 'urn:dev:knx:1.1.6';

describe('KNX through the gateway', () => {
  it('the server associates, reads, writes, multicasts and sees a vanished device detached, with plain DM', async () => {
    knxd = await startKnxd();
    sim = new KnxSim({ port: knxd.port });
    const light = await sim.add({
      address: '1.1.5',
      objects: [
        { ga: '1/2/3', dpt: 'DPT1.001', value: 'off' },
        { ga: '1/2/4', dpt: 'DPT9.001', value: '21.5', write: false },
      ],
    });
    const dimmer = await sim.add({
      address: '1.1.6',
      objects: [
        { ga: '1/3/1', dpt: 'DPT5.001', value: '40' },
        { ga: '1/2/3', dpt: 'DPT1.001', value: 'off', read: false },
      ],
    });
    listener = await listenGroups(knxd);

    d = await startDeployment([{ deviceId: 'gw-knx', username: 'gw-knx-user', secret: 'gw-knx-secret' }]);
    const gw = await addGateway(d, 'gw-knx', { kind: 'server', server: d.server }, [], {
      adapters: [
        {
          type: 'knx',
          gateway: `127.0.0.1:${knxd.port}`,
          physAddr: '1.1.250',
          localAddress: '127.0.0.1',
          // Generous against a loaded CI machine (files run in parallel on 2 cores): a 500 ms read
          // timeout let event-loop lag detach devices mid-test.
          readTimeoutMs: 2000,
          probeIntervalMs: 300,
          heartbeatMs: 1000,
          devices: [{ address: '1.1.5', name: 'Hall light', groupObjects: [{ ga: '1/2/3', dpt: 'DPT1.001' }, { ga: '1/2/4', dpt: 'DPT9.001', write: false }] }],
        },
      ],
    });
    const knx = gw.adapters.get('KNX') as KnxAdapter;

    // The configured light answered its probe: associated in adaptation mode, announced, routable.
    await until(async () => gw.associations.get(LIGHT)?.status === 'attached', 'the light to attach');
    await until(async () => (await d!.server.route(LIGHT)) !== undefined, 'the server to learn the light');
    expect(await readLeaf(d.server, 'gw-knx', `${A}/Protocol`)).toBe('KNX');
    expect(await readLeaf(d.server, 'gw-knx', `${A}/State`)).toBe('connected');
    expect(await readLeaf(d.server, 'gw-knx', `${A}/GatewayAddr`)).toBe(`127.0.0.1:${knxd.port}`);
    expect(await readLeaf(d.server, 'gw-knx', `${A}/IndividualAddress`)).toBe('1.1.250');
    const key = gw.associations.get(LIGHT)!.key;
    expect(await readLeaf(d.server, 'gw-knx', `./GwMO/DeviceInventory/Records/${key}/Protocol`)).toBe('KNX');
    expect(await readLeaf(d.server, 'gw-knx', `./GwMO/DeviceInventory/Records/${key}/Address`)).toBe('1.1.5');

    // The server associates the dimmer (AMode-006) with its parameters and Establish.
    const est = await operate(d.server, 'gw-knx', {
      cmd: 'Sequence',
      commands: [
        { cmd: 'Add', uri: `${A}/Associations/dimmer`, format: 'node' },
        { cmd: 'Add', uri: `${A}/Associations/dimmer/IndividualAddress`, value: '1.1.6' },
        { cmd: 'Add', uri: `${A}/Associations/dimmer/GroupObjects`, value: '1/3/1:DPT5.001:rw,1/2/3:DPT1.001:w' },
        { cmd: 'Add', uri: `${A}/Associations/dimmer/Name`, value: 'Desk dimmer' },
        { cmd: 'Exec', uri: `${A}/Associations/dimmer/Operations/Establish` },
      ],
    });
    expect(est.status, JSON.stringify(est)).toBe(200);
    expect(await readLeaf(d.server, 'gw-knx', `${A}/Associations/dimmer/State`)).toBe('Established');
    expect(await readLeaf(d.server, 'gw-knx', `${A}/Associations/dimmer/DeviceID`)).toBe(DIMMER);
    await gw.settled();
    await until(async () => gw.associations.get(DIMMER)?.status === 'attached', 'the dimmer to attach');
    await until(async () => (await d!.server.route(DIMMER)) !== undefined, 'the server to learn the dimmer');
    // A device that is not on the bus cannot be established: 461, the association says why.
    const ghost = await operate(d.server, 'gw-knx', {
      cmd: 'Sequence',
      commands: [
        { cmd: 'Add', uri: `${A}/Associations/ghost/IndividualAddress`, value: '1.1.9' },
        { cmd: 'Add', uri: `${A}/Associations/ghost/GroupObjects`, value: '1/7/9:DPT1.001:r' },
      ],
    });
    expect(ghost.status).toBe(200);
    const g2 = await operate(d.server, 'gw-knx', { cmd: 'Exec', uri: `${A}/Associations/ghost/Operations/Establish` });
    expect(g2.status).toBe(461);
    expect(await readLeaf(d.server, 'gw-knx', `${A}/Associations/ghost/State`)).toBe('Failed');
    expect(await readLeaf(d.server, 'gw-knx', `${A}/Associations/ghost/Error`)).toMatch(/no GroupValue_Response on 1\/7\/9 from 1\.1\.9/);

    // Read: GroupValue_Read answered by the simulated device.
    const temp = await operate(d.server, LIGHT, { cmd: 'Get', uri: './KNX/GroupObjects/1-2-4/Value' });
    expect(temp.status, JSON.stringify(temp)).toBe(200);
    expect(await readLeaf(d.server, LIGHT, './KNX/GroupObjects/1-2-4/Value')).toBe('21.5');
    expect(await readLeaf(d.server, LIGHT, './KNX/GroupObjects/1-2-4/Type')).toBe('DPT9.001');
    expect(await readLeaf(d.server, LIGHT, './DevInfo/DevId')).toBe(LIGHT);
    expect(await readLeaf(d.server, DIMMER, './KNX/Name')).toBe('Desk dimmer');
    expect(await readLeaf(d.server, DIMMER, './KNX/GroupObjects/1-3-1/Value')).toBe('40');

    // Write: GroupValue_Write, seen by the device and by knxtool. Probes (which read 1/3/1) are
    // paused meanwhile, so every telegram from 1.1.250 in between is the Replace's.
    expect((await operate(d.server, 'gw-knx', { cmd: 'Replace', uri: `${A}/ProbeIntervalMs`, value: '0' })).status).toBe(200);
    await new Promise((r) => setTimeout(r, 150));
    const fromGw = (): string[] => listener!.lines.filter((l) => / from 1\.1\.250 /.test(l));
    const busBefore = fromGw().length;
    const sentBefore = { ...knx.sent };
    const w = await operate(d.server, DIMMER, { cmd: 'Replace', uri: './KNX/GroupObjects/1-3-1/Value', value: '75' });
    expect(w.status, JSON.stringify(w)).toBe(200);
    await until(async () => dimmer.value('1/3/1') === '75', 'the dimmer at 75 %');
    await until(async () => listener!.lines.some((l) => /Write from 1\.1\.250 to 1\/3\/1: BF/i.test(l)), 'knxtool to see the write');
    await new Promise((r) => setTimeout(r, 150));
    // The write alone: exactly one GroupValue_Write and no GroupValue_Read before it (TreePlugin.describe).
    expect(fromGw().slice(busBefore)).toEqual([expect.stringMatching(/^Write from 1\.1\.250 to 1\/3\/1: BF$/i)]);
    expect(knx.sent).toEqual({ ...sentBefore, writes: sentBefore.writes + 1 });
    expect((await operate(d.server, 'gw-knx', { cmd: 'Replace', uri: `${A}/ProbeIntervalMs`, value: '300' })).status).toBe(200);
    // Bad values and read-only objects get their DM status.
    expect((await operate(d.server, DIMMER, { cmd: 'Replace', uri: './KNX/GroupObjects/1-3-1/Value', value: '150' })).status).toBe(400);
    expect((await operate(d.server, LIGHT, { cmd: 'Replace', uri: './KNX/GroupObjects/1-2-4/Value', value: '20' })).status).toBe(405);
    expect((await operate(d.server, LIGHT, { cmd: 'Get', uri: './KNX/GroupObjects/7-7-7/Value' })).status).toBe(404);

    // Fanout of one Replace to both devices: one GroupValue_Write on 1/2/3 reaches both.
    await new Promise((r) => setTimeout(r, 100));
    const before = listener.lines.filter((l) => /Write from 1\.1\.250 to 1\/2\/3/.test(l)).length;
    const writes = knx.sent.writes;
    const job = await startJob(d.server, 'gw-knx', 'allon', { deviceIds: [LIGHT, DIMMER], commands: [{ cmd: 'Replace', uri: './KNX/GroupObjects/1-2-3/Value', data: 'on' }] }, 'c-allon');
    expect(job.status, JSON.stringify(job)).toBe(200);
    const done = await completion(d.server, 'gw-knx', 'c-allon');
    expect(done.data).toContain('<State>30</State>');
    const results = Object.values(await readResults(d.server, 'gw-knx', 'allon'));
    expect(results.map((r) => [r.deviceId, r.status]).sort()).toEqual([
      [LIGHT, 200],
      [DIMMER, 200],
    ]);
    await until(async () => light.value('1/2/3') === 'on' && dimmer.value('1/2/3') === 'on', 'both devices switched on');
    expect(knx.sent.multicasts).toBe(1);
    expect(knx.sent.writes - writes).toBe(1);
    await new Promise((r) => setTimeout(r, 200));
    expect(listener.lines.filter((l) => /Write from 1\.1\.250 to 1\/2\/3/.test(l)).length - before).toBe(1);

    // The light leaves the bus: the probe gets no answer, the inventory shows it detached.
    await light.vanish();
    await until(async () => gw.associations.get(LIGHT)?.status === 'detached', 'the light to detach', 10_000);
    expect(await readLeaf(d.server, 'gw-knx', `./GwMO/DeviceInventory/Records/${key}/Status`)).toBe('0');
    expect(gw.associations.get(DIMMER)?.status).toBe('attached');
    // It comes back: attached again.
    await light.connect();
    await until(async () => gw.associations.get(LIGHT)?.status === 'attached', 'the light to attach again', 10_000);
    expect(await readLeaf(d.server, 'gw-knx', `./GwMO/DeviceInventory/Records/${key}/Status`)).toBe('1');

    // Remove: the dimmer is dissociated on the network and detached.
    expect((await operate(d.server, 'gw-knx', { cmd: 'Exec', uri: `${A}/Associations/dimmer/Operations/Remove` })).status).toBe(200);
    await until(async () => gw.associations.get(DIMMER)?.status === 'detached', 'the dimmer to detach');
    expect(knx.device('1.1.6')).toBeUndefined();
  }, 90_000);
});
