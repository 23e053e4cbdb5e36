/**
 * Runs the simulated MyHOME gateway on its own, for demos and manual tests with the example config
 * (docs/adapters/openwebnet.md):
 *
 *   node bin/run-ts.js adapters/own/sim-main.ts [--port 20000] [--auth none|open|hmac-sha1|hmac-sha256] [--password <pw>]
 *
 * It listens on 127.0.0.1 only, with a small installation (lights 11, 12 (dimmer), 21, a shutter 31,
 * thermo zones 1 and 2) and stops on SIGINT/SIGTERM.
 */
import { parseArgs } from 'node:util';
import { OwnGatewaySim, type OwnSimAuth } from './sim.ts';

const { values } = parseArgs({ options: { port: { type: 'string', default: '20000' }, auth: { type: 'string', default: 'none' }, password: { type: 'string' } } });
const auth = values.auth as OwnSimAuth;
if (!['none', 'open', 'hmac-sha1', 'hmac-sha256'].includes(auth)) throw new Error(`--auth must be none, open, hmac-sha1 or hmac-sha256`);
const sim = await OwnGatewaySim.start(
  {
    auth,
    ...(values.password !== undefined ? { password: values.password } : {}),
    lights: [{ where: '11' }, { where: '12', dimmer: true, groups: [1] }, { where: '21', groups: [1] }],
    shutters: [{ where: '31', travelMs: 5000 }],
    zones: [{ where: '1', temperature: 20.5, setpoint: 21 }, { where: '2', temperature: 18, setpoint: 19 }],
  },
  Number(values.port),
);
process.stdout.write(`simulated MyHOME gateway on ${sim.addr} (auth ${auth})\n`);
const stop = (): void => void sim.close().then(() => process.exit(0));
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
