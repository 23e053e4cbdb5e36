/**
 * `./GwMO/Adaptation/<name>` (GwMO-AMode-006): the server reads a network's link state, changes
 * its settings, switches it off and on, runs its operations, and configures associations the
 * gateway establishes and removes on the native network — all with plain DM commands. Secrets are
 * write-only and never logged. Everything survives a restart.
 */
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { SimAdapter } from '../../adapters/sim.ts';
import { Gateway } from '../../src/gateway/gateway.ts';
import { memoryLogger } from '../support/fixtures.ts';
import { readLeaf } from '../support/fanout.ts';
import { addGateway, operate, startDeployment, until, type Deployment } from '../support/gateways.ts';

let d: Deployment | undefined;
afterEach(async () => {
  await d?.close();
  d = undefined;
});

const A = './GwMO/Adaptation/sim';
const PIN = 'pin-8812-secret';

async function setup(): Promise<{ d: Deployment; gw: Gateway; sim: SimAdapter }> {
  d = await startDeployment([{ deviceId: 'gw-a', username: 'gw-a-user', secret: 'gw-a-secret' }]);
  const gw = await addGateway(d, 'gw-a', { kind: 'server', server: d.server }, [], {
    adapters: [
      {
        type: 'sim',
        devices: [
          { address: 'hall', kind: 'light' },
          // A thermostat that is on the network but joins only when the server associates it with its PIN.
          { address: 'boiler', kind: 'thermostat', pin: PIN, pending: true, deviceId: 'urn:dev:sim:boiler' },
        ],
      },
    ],
  });
  await gw.settled();
  return { d, gw, sim: gw.adapters.get('sim') as SimAdapter };
}

describe('adaptation configuration through the DM tree', () => {
  it('shows the network, establishes a PIN-protected association, removes it, and never reveals or logs the PIN', async () => {
    const { d, gw, sim } = await setup();
    expect(await readLeaf(d.server, 'gw-a', `${A}/Protocol`)).toBe('Sim');
    expect(await readLeaf(d.server, 'gw-a', `${A}/State`)).toBe('connected');
    expect(await readLeaf(d.server, 'gw-a', `${A}/Devices`)).toBe('1');
    expect(gw.associations.get('urn:dev:sim:boiler')).toBeUndefined();

    // The server configures the association: the interior node, then its parameters (PIN wrong first).
    const cfg = await operate(d.server, 'gw-a', {
      cmd: 'Sequence',
      commands: [
        { cmd: 'Add', uri: `${A}/Associations/boiler`, format: 'node' },
        { cmd: 'Add', uri: `${A}/Associations/boiler/Address`, value: 'boiler' },
        { cmd: 'Add', uri: `${A}/Associations/boiler/Kind`, value: 'thermostat' },
        { cmd: 'Add', uri: `${A}/Associations/boiler/PIN`, value: 'wrong-pin' },
      ],
    });
    expect(cfg.status).toBe(200);
    // A parameter the adapter does not define is refused with the list of those it does.
    const bad = await operate(d.server, 'gw-a', { cmd: 'Add', uri: `${A}/Associations/boiler/Colour`, value: 'red' });
    expect(bad.status).toBe(405);
    // The PIN is write-only.
    expect((await operate(d.server, 'gw-a', { cmd: 'Get', uri: `${A}/Associations/boiler/PIN` })).status).toBe(405);
    expect(await readLeaf(d.server, 'gw-a', `${A}/Associations/boiler/Address`)).toBe('boiler');

    const wrong = await operate(d.server, 'gw-a', { cmd: 'Exec', uri: `${A}/Associations/boiler/Operations/Establish` });
    expect(wrong.status).toBe(401);
    expect(await readLeaf(d.server, 'gw-a', `${A}/Associations/boiler/State`)).toBe('Failed');
    expect(await readLeaf(d.server, 'gw-a', `${A}/Associations/boiler/Error`)).toMatch(/PIN/);
    expect(sim.inspect('boiler')!.present).toBe(false);

    expect((await operate(d.server, 'gw-a', { cmd: 'Replace', uri: `${A}/Associations/boiler/PIN`, value: PIN })).status).toBe(200);
    const ok = await operate(d.server, 'gw-a', { cmd: 'Exec', uri: `${A}/Associations/boiler/Operations/Establish` });
    expect(ok.status).toBe(200);
    expect(await readLeaf(d.server, 'gw-a', `${A}/Associations/boiler/State`)).toBe('Established');
    expect(await readLeaf(d.server, 'gw-a', `${A}/Associations/boiler/DeviceID`)).toBe('urn:dev:sim:boiler');
    await gw.settled();
    // The device is in the inventory, announced, and the server reaches it by its id.
    await until(async () => gw.associations.get('urn:dev:sim:boiler')?.status === 'attached', 'the boiler to attach');
    await until(async () => (await d.server.route('urn:dev:sim:boiler')) !== undefined, 'the server to learn the route');
    const sp = await operate(d.server, 'urn:dev:sim:boiler', { cmd: 'Replace', uri: './Point/Setpoint', value: '19.5', format: 'float' });
    expect(sp.status).toBe(200);
    expect(sim.inspect('boiler')!.setpoint).toBe(19.5);
    expect(await readLeaf(d.server, 'gw-a', `${A}/Devices`)).toBe('2');

    // Remove: off the network, detached in the inventory, the configuration kept.
    expect((await operate(d.server, 'gw-a', { cmd: 'Exec', uri: `${A}/Associations/boiler/Operations/Remove` })).status).toBe(200);
    expect(sim.inspect('boiler')!.present).toBe(false);
    await until(async () => gw.associations.get('urn:dev:sim:boiler')?.status === 'detached', 'the boiler to detach');
    expect(await readLeaf(d.server, 'gw-a', `${A}/Associations/boiler/State`)).toBe('Removed');
    // Delete: the configuration and the inventory record go.
    expect((await operate(d.server, 'gw-a', { cmd: 'Delete', uri: `${A}/Associations/boiler` })).status).toBe(200);
    expect((await operate(d.server, 'gw-a', { cmd: 'Get', uri: `${A}/Associations/boiler` })).status).toBe(404);
    await until(async () => gw.associations.get('urn:dev:sim:boiler') === undefined, 'the record to go');

    // Not one log line of the server or the gateway carries the PIN (or the wrong one).
    for (const lines of Object.values(d.logs)) expect(lines.filter((l) => l.includes(PIN) || l.includes('wrong-pin'))).toEqual([]);
  });

  it('incomplete associations, bad names and bad values get clear statuses', async () => {
    const { d } = await setup();
    expect((await operate(d.server, 'gw-a', { cmd: 'Add', uri: `${A}/Associations/x1`, format: 'node' })).status).toBe(200);
    expect((await operate(d.server, 'gw-a', { cmd: 'Exec', uri: `${A}/Associations/x1/Operations/Establish` })).status).toBe(412); // no Address
    expect((await operate(d.server, 'gw-a', { cmd: 'Add', uri: `${A}/Associations/x1`, format: 'node' })).status).toBe(418);
    expect((await operate(d.server, 'gw-a', { cmd: 'Add', uri: `${A}/Associations/bad name!`, format: 'node' })).status).toBe(400);
    expect((await operate(d.server, 'gw-a', { cmd: 'Replace', uri: `${A}/LatencyMs`, value: 'soon', format: 'int' })).status).toBe(400);
    expect((await operate(d.server, 'gw-a', { cmd: 'Replace', uri: `${A}/Protocol`, value: 'KNX' })).status).toBe(405);
    expect((await operate(d.server, 'gw-a', { cmd: 'Exec', uri: `${A}/Operations/Nope` })).status).toBe(404);
    expect((await operate(d.server, 'gw-a', { cmd: 'Get', uri: './GwMO/Adaptation/zigbee' })).status).toBe(404);
  });

  it('switching a network off detaches its devices; settings, the switch and associations survive a restart', async () => {
    const { d, gw: first, sim } = await setup();
    let gw = first;
    expect((await operate(d.server, 'gw-a', { cmd: 'Replace', uri: `${A}/LatencyMs`, value: '5', format: 'int' })).status).toBe(200);
    expect(sim.getSettings()['LatencyMs']).toBe('5');
    const est = await operate(d.server, 'gw-a', {
      cmd: 'Sequence',
      commands: [
        { cmd: 'Add', uri: `${A}/Associations/boiler/Address`, value: 'boiler' },
        { cmd: 'Add', uri: `${A}/Associations/boiler/PIN`, value: PIN },
        { cmd: 'Exec', uri: `${A}/Associations/boiler/Operations/Establish` },
      ],
    });
    expect(est.status).toBe(200);
    await gw.settled();
    await until(async () => gw.associations.get('urn:dev:sim:boiler')?.status === 'attached', 'the boiler to attach');

    expect((await operate(d.server, 'gw-a', { cmd: 'Replace', uri: `${A}/Enabled`, value: 'false', format: 'bool' })).status).toBe(200);
    expect(await readLeaf(d.server, 'gw-a', `${A}/State`)).toBe('disabled');
    await until(async () => gw.associations.all().every((r) => r.status === 'detached'), 'every sim device to detach');
    expect((await operate(d.server, 'gw-a', { cmd: 'Exec', uri: `${A}/Operations/Announce` })).status).toBe(503);

    // Restart on the same data: still disabled, LatencyMs still 5.
    await gw.stop();
    d.gateways.splice(d.gateways.indexOf(gw), 1);
    const start = async (): Promise<Gateway> => {
      const g = await Gateway.create({ config: first.config, dataDir: join(d.dir, 'gw-a'), logger: memoryLogger('gw-a2').logger });
      await g.start();
      d.gateways.push(g);
      return g;
    };
    gw = await start();
    expect(await readLeaf(d.server, 'gw-a', `${A}/State`)).toBe('disabled');
    expect((gw.adapters.get('sim') as SimAdapter).getSettings()['LatencyMs']).toBe('5');

    // Switched on again: the network connects and the server-configured association is established again
    // (the new process's simulated boiler starts pending, so only the stored association admits it).
    expect((await operate(d.server, 'gw-a', { cmd: 'Replace', uri: `${A}/Enabled`, value: 'true', format: 'bool' })).status).toBe(200);
    expect(await readLeaf(d.server, 'gw-a', `${A}/State`)).toBe('connected');
    await gw.settled();
    await until(async () => gw.associations.get('urn:dev:sim:boiler')?.status === 'attached' && gw.associations.get('urn:dev:sim:hall')?.status === 'attached', 'both devices to attach');
    expect((gw.adapters.get('sim') as SimAdapter).inspect('boiler')!.present).toBe(true);
    expect(await readLeaf(d.server, 'gw-a', `${A}/Associations/boiler/State`)).toBe('Established');
  });
});
