/**
 * Acceptance for the OpenWebNet adapter through a whole deployment: a DM server manages a gateway
 * whose `adapters:` has an OWN network pointing at the simulated MyHOME gateway (HMAC-SHA256
 * password). With plain DM commands the server reads a light, switches it (the simulator's actuator
 * changes), sets a thermo zone, and sees the light detached in the inventory when it leaves the bus.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { OwnAdapter } from '../../adapters/own/adapter.ts';
import { OwnGatewaySim } from '../../adapters/own/sim.ts';
import { readLeaf } from '../support/fanout.ts';
import { addGateway, operate, startDeployment, until, type Deployment } from '../support/gateways.ts';

let d: Deployment | undefined;
let sim: OwnGatewaySim | undefined;
afterEach(async () => {
  await d?.close();
  await sim?.close();
  d = undefined;
  sim = undefined;
});

describe('OpenWebNet adapter in a gateway', () => {
  it('discovers lights, reads and switches one, writes a setpoint, and reports a light that left the bus as detached', async () => {
    sim = await OwnGatewaySim.start({
      auth: 'hmac-sha256',
      password: 'MyH0me-pass',
      mac: '00036812ab01',
      lights: [{ where: '11' }, { where: '12', dimmer: true }],
      zones: [{ where: '3', temperature: 19.5, setpoint: 20 }],
    });
    d = await startDeployment([{ deviceId: 'gw-own', username: 'gw-own-user', secret: 'gw-own-secret' }]);
    const gw = await addGateway(d, 'gw-own', { kind: 'server', server: d.server }, [], {
      adapters: [{ type: 'own', gatewayAddr: sim.addr, password: 'MyH0me-pass', pollMs: 150, timeoutMs: 1000, wheres: [{ who: 4, where: '3' }] }],
    });
    const own = gw.adapters.get('OpenWebNet') as OwnAdapter;
    expect(own.protocol).toBe('OpenWebNet');
    const light = 'urn:dev:own:00036812ab01:1-11';
    const zone = 'urn:dev:own:00036812ab01:4-3';
    await until(async () => [light, zone, 'urn:dev:own:00036812ab01:1-12'].every((id) => gw.associations.get(id)?.status === 'attached'), 'the OWN points to attach');
    await until(async () => (await d!.server.route(light)) !== undefined, 'the server to learn a route to the light');

    // Identity synthesised by the gateway, protocol subtree per notes §1.8.
    expect((await operate(d.server, light, { cmd: 'Get', uri: './DevInfo/Mod' })).results?.[0]?.data).toBe('OWN WHO 1 lighting point');
    const st = await operate(d.server, light, { cmd: 'Get', uri: './OWN/1/11/Status' });
    expect(st.status, JSON.stringify(st)).toBe(200);
    expect(st.results[0].data).toBe('*1*0*11##');
    expect((await operate(d.server, light, { cmd: 'Get', uri: './OWN/1/11/On' })).results?.[0]?.data).toBe('false');

    // Switch it: the actuator in the simulator is on, and the typed leaf reads it back.
    const framesBefore = sim.received.length;
    const sw = await operate(d.server, light, { cmd: 'Replace', uri: './OWN/1/11/On', value: 'true', format: 'bool' });
    expect(sw.status, JSON.stringify(sw)).toBe(200);
    expect(sim.light('11')?.on).toBe(true);
    // The write is its command frame alone: no status request before it (TreePlugin.describe).
    expect(sim.received.slice(framesBefore).filter((f) => f.includes('*11##'))).toEqual(['*1*1*11##']);
    expect((await operate(d.server, light, { cmd: 'Get', uri: './OWN/1/11/On' })).results?.[0]?.data).toBe('true');
    // The raw Command leaf: Exec with a WHAT.
    expect((await operate(d.server, light, { cmd: 'Exec', uri: './OWN/1/11/Command', value: '0' })).status).toBe(200);
    expect(sim.light('11')?.on).toBe(false);
    // A value OWN cannot carry is a 400, an unmapped node a 404.
    expect((await operate(d.server, light, { cmd: 'Replace', uri: './OWN/1/11/On', value: 'maybe', format: 'bool' })).status).toBe(400);
    expect((await operate(d.server, light, { cmd: 'Get', uri: './OWN/1/11/Setpoint' })).status).toBe(404);

    // Thermoregulation: read the temperature, write a setpoint, the zone is manual at 22.5 °C.
    expect((await operate(d.server, zone, { cmd: 'Get', uri: './OWN/4/3/Temperature' })).results?.[0]?.data).toBe('19.5');
    expect((await operate(d.server, zone, { cmd: 'Replace', uri: './OWN/4/3/Setpoint', value: '22.5', format: 'float' })).status).toBe(200);
    expect(sim.zone('3')).toMatchObject({ setpoint: 22.5, mode: '310' });
    expect((await operate(d.server, zone, { cmd: 'Get', uri: './OWN/4/3/Mode' })).results?.[0]?.data).toBe('manual');

    // The light leaves the bus: the presence sweep detaches it; the inventory says so.
    sim.remove('1', '11');
    await until(async () => gw.associations.get(light)?.status === 'detached', 'the removed light to be detached', 5000);
    const key = gw.associations.get(light)!.key;
    expect(await readLeaf(d.server, 'gw-own', `./GwMO/DeviceInventory/Records/${key}/Status`)).toBe('0');
    expect(gw.associations.get('urn:dev:own:00036812ab01:1-12')?.status).toBe('attached');
    // Reading it now is the GwMO timeout status.
    expect((await operate(d.server, light, { cmd: 'Get', uri: './OWN/1/11/On' })).status).toBe(461);

    // Back on the bus: it announces itself and is attached again.
    sim.restore('1', '11');
    await until(async () => gw.associations.get(light)?.status === 'attached', 'the light to come back', 5000);

    // The adaptation node shows the network and hides the password.
    expect(await readLeaf(d.server, 'gw-own', './GwMO/Adaptation/OpenWebNet/State')).toBe('connected');
    expect(await readLeaf(d.server, 'gw-own', './GwMO/Adaptation/OpenWebNet/GatewayAddr')).toBe(sim.addr);
    expect((await operate(d.server, 'gw-own', { cmd: 'Get', uri: './GwMO/Adaptation/OpenWebNet/Password' })).status).toBe(405);
    expect(d.logs['gw-own']!.join('\n')).not.toContain('MyH0me-pass');
  });
});
