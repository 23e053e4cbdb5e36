/**
 * Smoke run of the OpenWebNet stack in one process: a simulated MyHOME gateway (HMAC-SHA256) and an
 * OwnAdapter connected to it; discovers the lights, switches one, stops both and prints one JSON
 * line. It must then exit by itself: a handle left open (socket, timer) keeps Node alive, which is
 * what the child-process test of test/adapters/own-adapter.test.ts checks.
 *
 *   node bin/run-ts.js adapters/own/smoke.ts
 */
import { OwnAdapter, ownAdapterConfigSchema } from './adapter.ts';
import { OwnGatewaySim } from './sim.ts';

const sim = await OwnGatewaySim.start({ auth: 'hmac-sha256', password: 'smoke-pass', lights: [{ where: '11' }, { where: '12', dimmer: true }], shutters: [{ where: '31', travelMs: 50 }] });
const adapter = new OwnAdapter(ownAdapterConfigSchema.parse({ type: 'own', gatewayAddr: sim.addr, password: 'smoke-pass', pollMs: 100, timeoutMs: 1000 }));
const attached: string[] = [];
await adapter.start({ attached: (d) => attached.push(d.address), detached: () => undefined });
const deadline = Date.now() + 5000;
while (attached.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
const light = adapter.device('1/11');
await light?.replace?.('OWN/1/11/On', { format: 'bool', type: 'text/plain', data: 'true' }, {});
await adapter.device('2/31')?.replace?.('OWN/2/31/Move', { format: 'chr', type: 'text/plain', data: 'down' }, {});
const result = { state: adapter.linkState, attached: attached.sort(), on: sim.light('11')?.on === true };
await adapter.stop();
await sim.close();
process.stdout.write(`${JSON.stringify(result)}\n`);
