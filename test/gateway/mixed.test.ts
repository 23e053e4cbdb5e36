/**
 * Adaptation mode, all at once (issue "Adaptation mode", acceptance 2): one gateway hosts a KNX
 * network (real knxd on loopback with simulated tunnel devices), a ZigBee network (the real
 * herdsman controller on the simulated coordinator), an OpenWebNet gateway (simulated MyHOME) and a
 * BLE radio (noble over simulated bindings), plus a proxy-mode DM device. The server sees every
 * device in one inventory, and one fanout over a mixed group returns one consolidated response
 * with a status and a result per member, in whatever protocol each speaks.
 */
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startKnxd, type Knxd } from '../../adapters/knx/knxd.ts';
import { KnxSim } from '../../adapters/knx/sim.ts';
import { OwnGatewaySim } from '../../adapters/own/sim.ts';
import { completion, readLeaf, readResults, startJob } from '../support/fanout.ts';
import { addDevice, addGateway, operate, proxyAssociation, startDeployment, until, type Deployment } from '../support/gateways.ts';

let d: Deployment | undefined;
let knxd: Knxd | undefined;
let knxSim: KnxSim | undefined;
let own: OwnGatewaySim | undefined;
afterEach(async () => {
  await d?.close();
  await knxSim?.stop();
  await knxd?.stop();
  await own?.close();
  d = undefined;
});

const KNX_ID = 'urn:dev:knx:1.1.5';
const ZB_ID = 'urn:dev:ieee:00124b0001c0ffee';
const OWN_ID = 'urn:dev:own:00036812ab01:1-11';
const BLE_ID = 'urn:dev:mac:a4c138000001';
const DM_ID = 'IMEI:356938035643777';

describe('one gateway, four adaptation networks and a DM device', () => {
  it('inventories every device and answers a fanout over a mixed group with one consolidated response', async () => {
    knxd = await startKnxd();
    knxSim = new KnxSim({ port: knxd.port });
    await knxSim.add({ address: '1.1.5', objects: [{ ga: '1/2/3', dpt: 'DPT1.001', value: 'off' }] });
    own = await OwnGatewaySim.start({ auth: 'hmac-sha256', password: 'MyH0me-pass', mac: '00036812ab01', lights: [{ where: '11' }] });

    d = await startDeployment([{ deviceId: 'gw-mix', username: 'gw-mix-user', secret: 'gw-mix-secret' }]);
    const gw = await addGateway(d, 'gw-mix', { kind: 'server', server: d.server }, [proxyAssociation(DM_ID)], {
      adapters: [
        {
          type: 'knx',
          gateway: `127.0.0.1:${knxd.port}`,
          physAddr: '1.1.250',
          localAddress: '127.0.0.1',
          readTimeoutMs: 800,
          probeIntervalMs: 500,
          devices: [{ address: '1.1.5', name: 'Hall light', groupObjects: [{ ga: '1/2/3', dpt: 'DPT1.001' }] }],
        },
        {
          type: 'zigbee',
          dataDir: join(d.dir, 'zigbee'),
          channel: 15,
          permitJoinSeconds: 30, // the simulated light joins as soon as the network is open
          networkKey: '00112233445566778899aabbccddeeff',
          responseTimeoutMs: 800,
          simulator: { devices: [{ ieee: '0x00124b0001c0ffee', kind: 'light' }] },
        },
        { type: 'own', gatewayAddr: own.addr, password: 'MyH0me-pass', pollMs: 300, timeoutMs: 1000 },
        { type: 'ble', bindings: 'sim', filter: 'service:181a', scanIntervalMs: 150, connectTimeoutMs: 500, opTimeoutMs: 1000, sim: { peripherals: [{ address: 'a4:c1:38:00:00:01', kind: 'sensor' }], advertiseIntervalMs: 20 } },
      ],
    });
    await (await addDevice(d, DM_ID, { kind: 'gateway', gateway: gw })).connect();

    // Every network connects and every device is in the one inventory, with its protocol.
    for (const n of ['KNX', 'ZigBee', 'OpenWebNet', 'BLE']) {
      await until(async () => (await readLeaf(d!.server, 'gw-mix', `./GwMO/Adaptation/${n}/State`)) === 'connected', `${n} to connect`, 15_000);
    }
    await until(
      async () => [KNX_ID, ZB_ID, OWN_ID, BLE_ID, DM_ID].every((id) => gw.associations.get(id)?.status === 'attached'),
      'every device to attach',
      20_000,
    ).catch((err: unknown) => {
      throw new Error(`${String(err)}: ${JSON.stringify(gw.associations.all().map((r) => [r.deviceId, r.status]))}`);
    });
    const protocols = Object.fromEntries(gw.associations.all().map((r) => [r.deviceId, r.protocol]));
    expect(protocols).toMatchObject({ [KNX_ID]: 'KNX', [ZB_ID]: 'ZigBee', [OWN_ID]: 'OpenWebNet', [BLE_ID]: 'BLE', [DM_ID]: 'OMA-DM/1.2' });
    expect(await readLeaf(d.server, 'gw-mix', './GwMO/Config/SupportedModes')).toBe('Transparent/Proxy/Adaptation');

    // A group of one device per kind, and one fanout: identity from every member.
    const members = [KNX_ID, ZB_ID, OWN_ID, BLE_ID, DM_ID];
    const g = './GwMO/Groups/mixed';
    const make = await operate(d.server, 'gw-mix', {
      cmd: 'Sequence',
      commands: [{ cmd: 'Add', uri: g, format: 'node' }, ...members.map((id, i) => ({ cmd: 'Add', uri: `${g}/Members/m${i}/DeviceID`, value: id }))],
    });
    expect(make.status, JSON.stringify(make)).toBe(200);
    expect(await readLeaf(d.server, 'gw-mix', `${g}/Count`)).toBe('5');
    const start = await startJob(d.server, 'gw-mix', 'who', { groupId: 'mixed', commands: [{ cmd: 'Get', uri: './DevInfo/Man' }, { cmd: 'Get', uri: './DevInfo/DevId' }] }, 'c-who');
    expect(start.status).toBe(200);
    const done = await completion(d.server, 'gw-mix', 'c-who', 30_000);
    expect(done.data, done.data).toContain('<State>30</State>'); // Completed: every member succeeded
    const rows = Object.values(await readResults(d.server, 'gw-mix', 'who'));
    expect(rows.map((r) => r.deviceId).sort()).toEqual([...members].sort());
    for (const r of rows) {
      expect(r.status, `${r.deviceId}: ${JSON.stringify(r)}`).toBe(200);
      expect(r.cmds['2']!.data, JSON.stringify(r)).toBe(r.deviceId); // each member answered for itself
      expect(r.cmds['1']!.data).toBeTruthy();
    }
  });
});
