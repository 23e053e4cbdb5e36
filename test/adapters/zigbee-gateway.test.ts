/**
 * Acceptance for the ZigBee adapter: a DM server, through plain DM commands to a gateway, opens
 * the ZigBee network for joining (discovery), associates a device by its IEEE address
 * (./GwMO/Adaptation/ZigBee/Associations), reads a temperature, writes a light's attribute,
 * switches it on, and sees the light detached in the inventory when it leaves. The real
 * zigbee-herdsman controller runs the network on the simulated ZiGate coordinator; the effects are
 * checked on the simulated devices, and the frames herdsman sent are decoded by its own codec.
 */
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { ZigbeeAdapter } from '../../adapters/zigbee/adapter.ts';
import { readLeaf } from '../support/fanout.ts';
import { addGateway, operate, startDeployment, until, type Deployment } from '../support/gateways.ts';

let d: Deployment | undefined;
afterEach(async () => {
  await d?.close();
  d = undefined;
});

const A = './GwMO/Adaptation/ZigBee';
const LAMP = '0x00124b0001c0ffee';
const THERMO = '0x00124b0001c0ffef';
const LAMP_ID = 'urn:dev:ieee:00124b0001c0ffee';
const THERMO_ID = 'urn:dev:ieee:00124b0001c0ffef';
const KEY = '00112233445566778899aabbccddeeff';

describe('ZigBee through the gateway with plain DM commands', () => {
  it('discovers and associates devices, reads, writes and executes on them, and sees a leaving device detached', async () => {
    d = await startDeployment([{ deviceId: 'gw-zb', username: 'gw-zb-user', secret: 'gw-zb-secret' }]);
    const gw = await addGateway(d, 'gw-zb', { kind: 'server', server: d.server }, [], {
      adapters: [
        {
          type: 'zigbee',
          dataDir: join(d.dir, 'zigbee'),
          channel: 20,
          networkKey: KEY,
          responseTimeoutMs: 800,
          joinTimeoutMs: 8000,
          simulator: { devices: [{ ieee: LAMP, kind: 'light', autoJoin: false }, { ieee: THERMO, kind: 'temperature', autoJoin: false }] },
        },
      ],
    });
    await gw.settled();
    const zb = gw.adapters.get('ZigBee') as ZigbeeAdapter;
    const sim = zb.sim!;
    expect(await readLeaf(d.server, 'gw-zb', `${A}/Protocol`)).toBe('ZigBee');
    expect(await readLeaf(d.server, 'gw-zb', `${A}/State`)).toBe('connected');
    expect(await readLeaf(d.server, 'gw-zb', `${A}/Channel`)).toBe('20');
    // The network key is write-only.
    expect((await operate(d.server, 'gw-zb', { cmd: 'Get', uri: `${A}/NetworkKey` })).status).toBe(405);

    // Discovery: the thermometer is in pairing mode; the server opens the network for 30 s.
    sim.pair(THERMO);
    expect((await operate(d.server, 'gw-zb', { cmd: 'Exec', uri: `${A}/Operations/PermitJoin`, data: '30' })).status).toBe(200);
    await until(async () => gw.associations.get(THERMO_ID)?.status === 'attached', 'the thermometer to attach');
    expect((await operate(d.server, 'gw-zb', { cmd: 'Exec', uri: `${A}/Operations/PermitJoin`, data: '0' })).status).toBe(200);
    await until(async () => (await d!.server.route(THERMO_ID)) !== undefined, 'the server to learn the route');
    const t = await operate(d.server, THERMO_ID, { cmd: 'Get', uri: './ZigBee/Endpoints/1/Clusters/0402/Attributes/0000' });
    expect(t.status).toBe(200);
    expect(t.results[0].data).toBe('2150');
    expect((await operate(d.server, THERMO_ID, { cmd: 'Get', uri: './DevInfo/Man' })).results[0].data).toBe('gwmo-sim');

    // Association (AMode-006): the server configures the lamp by IEEE address and establishes it;
    // only that device is admitted while the network opens for it.
    sim.pair(LAMP);
    const est = await operate(d.server, 'gw-zb', {
      cmd: 'Sequence',
      commands: [
        { cmd: 'Add', uri: `${A}/Associations/lamp`, format: 'node' },
        { cmd: 'Add', uri: `${A}/Associations/lamp/IEEEAddress`, value: LAMP.slice(2) },
        { cmd: 'Exec', uri: `${A}/Associations/lamp/Operations/Establish` },
      ],
    });
    expect(est.status).toBe(200);
    expect(await readLeaf(d.server, 'gw-zb', `${A}/Associations/lamp/State`)).toBe('Established');
    expect(await readLeaf(d.server, 'gw-zb', `${A}/Associations/lamp/DeviceID`)).toBe(LAMP_ID);
    await until(async () => gw.associations.get(LAMP_ID)?.status === 'attached', 'the lamp to attach');
    await until(async () => (await d!.server.route(LAMP_ID)) !== undefined, 'the server to learn the lamp route');

    // Write an attribute (ZCL Write Attributes) and run a command (genOnOff On); see the native effect.
    const f0 = sim.frames.length;
    const w = await operate(d.server, LAMP_ID, { cmd: 'Replace', uri: './ZigBee/Endpoints/1/Clusters/0008/Attributes/0011', value: '200', format: 'int' });
    expect(w.status).toBe(200);
    // The tree checks the node through the plugin's describe(): one ZCL write on air, no read before it.
    expect(sim.frames.slice(f0).map((f) => f.frame.command.name)).toEqual(['write']);
    expect(sim.device(LAMP)!.attr(1, 0x0008, 0x0011)).toBe(200);
    const write = sim.frames.filter((f) => f.ieee === LAMP && f.frame.command.name === 'write').at(-1)!;
    expect(write.frame.payload).toEqual([{ attrId: 0x0011, dataType: 0x20, attrData: 200 }]);
    const on = await operate(d.server, LAMP_ID, { cmd: 'Exec', uri: './ZigBee/Endpoints/1/Clusters/0006/Commands/01' });
    expect(on.status).toBe(200);
    expect(sim.device(LAMP)!.on).toBe(true);
    const g = await operate(d.server, LAMP_ID, { cmd: 'Get', uri: './ZigBee/Endpoints/1/Clusters/0006/Attributes/0000' });
    expect(g.results[0]).toMatchObject({ data: 'true' });
    // A value the attribute's type cannot carry, and an unmapped node.
    expect((await operate(d.server, LAMP_ID, { cmd: 'Replace', uri: './ZigBee/Endpoints/1/Clusters/0008/Attributes/0011', value: '999', format: 'int' })).status).toBe(400);
    expect((await operate(d.server, LAMP_ID, { cmd: 'Get', uri: './ZigBee/Endpoints/7/ProfileId' })).status).toBe(404);

    // The lamp leaves the network: detached in the inventory.
    sim.leave(LAMP);
    await until(async () => gw.associations.get(LAMP_ID)?.status === 'detached', 'the lamp to detach');
    const key = gw.associations.get(LAMP_ID)!.key;
    const st = await readLeaf(d.server, 'gw-zb', `./GwMO/DeviceInventory/Records/${key}/Status`);
    expect(st).toBeDefined();
    expect(st).not.toBe(await readLeaf(d.server, 'gw-zb', `./GwMO/DeviceInventory/Records/${gw.associations.get(THERMO_ID)!.key}/Status`));

    // The network key never reached a log line.
    for (const lines of Object.values(d.logs)) expect(lines.filter((l) => l.toLowerCase().includes(KEY))).toEqual([]);
  });
});
