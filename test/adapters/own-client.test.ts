/**
 * The OWN client (adapters/own/client.ts) against the simulated gateway (sim.ts), and the simulated
 * gateway against an independent OWN client: `myhome-utils.js` of npm
 * `node-red-contrib-myhome-bticino-v2`, which its authors use with real MyHOME gateways.
 */
import { createRequire } from 'node:module';
import { Socket, createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { OwnCommandPool, OwnSession, type OwnEndpoint } from '../../adapters/own/client.ts';
import { OwnGatewaySim, type OwnSimAuth, type OwnSimConfig } from '../../adapters/own/sim.ts';
import { DmStatusError } from '../../src/errors.ts';

const require = createRequire(import.meta.url);
// eslint-disable-next-line @typescript-eslint/no-require-imports
const mh = require('node-red-contrib-myhome-bticino-v2/myhome-utils.js') as {
  executeCommand: (node: unknown, cmds: string[], gw: unknown, delay: number, nextOnFail: boolean, ok: (c: string[], r: string[], f: string[]) => void, ko: (f: string[], msg: string) => void) => void;
  processInitialConnection: (start: string, packet: string, sock: Socket, node: unknown, gw: unknown, state: Record<string, unknown>, error: (c: string, msg: string) => void) => boolean;
};

const INSTALL: OwnSimConfig = {
  lights: [{ where: '11' }, { where: '12', dimmer: true, groups: [5] }, { where: '21', groups: [5] }],
  shutters: [{ where: '31', travelMs: 200 }],
  zones: [{ where: '2', temperature: 21.5, setpoint: 20 }],
};
const PASSWORDS: Record<OwnSimAuth, string> = { none: '', open: '12345', 'hmac-sha1': 'Sha1-Pass', 'hmac-sha256': 'Sha256-Pass!' };
const WRONG: Record<OwnSimAuth, string> = { none: '', open: '54321', 'hmac-sha1': 'sha1-pass', 'hmac-sha256': 'nope' };
const MODES: OwnSimAuth[] = ['none', 'open', 'hmac-sha1', 'hmac-sha256'];

let sims: OwnGatewaySim[] = [];
const cleanup: (() => void)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0)) c();
  for (const s of sims.splice(0)) await s.close();
});
async function simWith(auth: OwnSimAuth, extra: OwnSimConfig = {}): Promise<OwnGatewaySim> {
  const s = await OwnGatewaySim.start({ ...INSTALL, auth, password: PASSWORDS[auth], ...extra });
  sims.push(s);
  return s;
}
const ep = (sim: OwnGatewaySim, password: string | undefined, timeoutMs = 1000): OwnEndpoint => ({ host: '127.0.0.1', port: sim.port, password, timeoutMs });
const until = async (cond: () => boolean, ms = 3000): Promise<void> => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
};
async function rejection(p: Promise<unknown>): Promise<DmStatusError> {
  try {
    await p;
  } catch (err) {
    return err as DmStatusError;
  }
  throw new Error('expected a rejection');
}

describe('OWN client against the simulated gateway', () => {
  for (const auth of MODES) {
    it(`authenticates (${auth}), runs commands and status requests, and receives events`, async () => {
      const sim = await simWith(auth);
      const events: string[] = [];
      const ev = await OwnSession.open(ep(sim, PASSWORDS[auth] || undefined), 'event');
      cleanup.push(() => ev.close());
      ev.listen((f) => events.push(f), () => undefined);
      const cmd = await OwnSession.open(ep(sim, PASSWORDS[auth] || undefined), 'command');
      cleanup.push(() => cmd.close());
      await until(() => sim.sessions().command === 1 && sim.sessions().event === 1);
      expect(await cmd.request('*1*1*11##', 1000)).toEqual([]);
      expect(sim.light('11')?.on).toBe(true);
      expect(await cmd.request('*#1*0##', 1000)).toEqual(['*1*1*11##', '*1*0*12##', '*1*0*21##']);
      expect(await cmd.request('*#4*2*0##', 1000)).toEqual(['*#4*2*0*0215##']);
      await until(() => events.includes('*1*1*11##'));
      expect(sim.authFailures).toBe(0);
    });
  }

  for (const auth of ['open', 'hmac-sha1', 'hmac-sha256'] as const) {
    it(`fails fast and clearly on a wrong password (${auth})`, async () => {
      const sim = await simWith(auth);
      const t0 = Date.now();
      const err = await rejection(OwnSession.open(ep(sim, WRONG[auth], 5000), 'command'));
      expect(Date.now() - t0).toBeLessThan(1000); // a NACK, not a hang until the timeout
      expect(err.code).toBe('OWN_AUTH_FAILED');
      expect(err.status).toBe(500);
      expect(err.message).toMatch(/password refused/);
      expect(err.message).not.toContain(WRONG[auth]);
      expect(sim.authFailures).toBe(1);
      await until(() => sim.sessions().total === 0);
      // No password at all where one is needed.
      expect((await rejection(OwnSession.open(ep(sim, undefined), 'event'))).message).toMatch(/none is configured/);
    });
  }

  it('refuses a non-numeric password for OPEN before sending it', async () => {
    const sim = await simWith('open');
    expect((await rejection(OwnSession.open(ep(sim, 'letters'), 'command'))).message).toMatch(/not numeric/);
  });

  it('ends requests with 461 when the gateway is silent, 500 on garbage, NACK as OwnNackError, 503 when unreachable', async () => {
    const sim = await simWith('none');
    const s = await OwnSession.open(ep(sim, undefined), 'command');
    cleanup.push(() => s.close());
    sim.behave({ silent: true });
    const t0 = Date.now();
    const slow = await rejection(s.request('*#1*11##', 300));
    expect(slow.status).toBe(461);
    expect(slow.code).toBe('OWN_TIMEOUT');
    expect(Date.now() - t0).toBeLessThan(1000);
    sim.behave({});
    const nack = await rejection(s.request('*#1*77##', 1000));
    expect(nack.code).toBe('OWN_NACK');
    sim.behave({ wrongAnswers: 'garbage' });
    expect((await rejection(s.request('*#1*11##', 1000))).code).toBe('OWN_BAD_FRAME');
    expect(s.open).toBe(false);
    // A port nobody listens on.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
    const port = (probe.address() as { port: number }).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const down = await rejection(OwnSession.open({ host: '127.0.0.1', port, timeoutMs: 500 }, 'command'));
    expect(down.status).toBe(503);
  });

  it('keeps command sessions open or opens one per command, and survives the gateway closing idle sessions', async () => {
    const sim = await simWith('hmac-sha256', { commandIdleMs: 150 });
    const keep = new OwnCommandPool(() => ep(sim, PASSWORDS['hmac-sha256']), 'keep', 10_000);
    cleanup.push(() => keep.close());
    for (let i = 0; i < 5; i++) await keep.request(i % 2 ? '*1*1*12##' : '*1*0*12##');
    expect(keep.opened).toBe(1);
    // The gateway drops the idle session: the next request opens a fresh one.
    await until(() => sim.sessions().command === 0);
    expect(await keep.request('*#1*12##')).toEqual(['*1*0*12##']);
    expect(keep.opened).toBe(2);

    const per = new OwnCommandPool(() => ep(sim, PASSWORDS['hmac-sha256']), 'perCommand', 10_000);
    cleanup.push(() => per.close());
    for (let i = 0; i < 3; i++) await per.request('*#1*11##');
    expect(per.opened).toBe(3);
    await until(() => sim.sessions().command <= 1);
  });
});

/** The independent client: runs commands on one command session like its Node-RED nodes do. */
function execute(sim: OwnGatewaySim, pass: string, commands: string[]): Promise<{ ok: boolean; responses: string[]; failed: string[]; msg?: string }> {
  const quiet = { debug() {}, log() {}, warn() {}, error() {} };
  return new Promise((resolve) => {
    mh.executeCommand(
      quiet,
      commands,
      { host: '127.0.0.1', port: sim.port, pass, log_out_cmd: false },
      0,
      true,
      (_c, responses, failed) => resolve({ ok: true, responses, failed }),
      (failed, msg) => resolve({ ok: false, responses: [], failed, msg }),
    );
  });
}

/** The independent client's login procedure on an event session; resolves once connected, then collects events. */
function monitor(sim: OwnGatewaySim, pass: string): Promise<{ events: string[]; sock: Socket }> {
  return new Promise((resolve, reject) => {
    const sock = new Socket();
    cleanup.push(() => sock.destroy());
    const state: Record<string, unknown> = {};
    const events: string[] = [];
    const node = { debug() {}, log() {}, warn() {}, error() {} };
    sock.on('data', (data) => {
      for (const packet of data.toString().match(/\*.+?##/g) ?? []) {
        if (state['state'] === 'connected') events.push(packet);
        else if (mh.processInitialConnection('*99*1##', packet, sock, node, { pass }, state, (_c, msg) => reject(new Error(msg)))) resolve({ events, sock });
      }
    });
    sock.on('error', reject);
    sock.connect(sim.port, '127.0.0.1');
  });
}

describe('the simulated gateway, checked with the independent npm OWN client', () => {
  for (const auth of MODES) {
    it(`serves ${auth} logins, commands, status requests and events like a MyHOME gateway`, async () => {
      const sim = await simWith(auth);
      const { events } = await monitor(sim, PASSWORDS[auth]);
      const r = await execute(sim, PASSWORDS[auth], ['*1*1*11##', '*1*7*12##', '*#1*0##', '*#1*#5##', '*#4*2*0##', '*#4*2*14##', '*2*1*31##', '*#2*31##']);
      expect(r.ok, r.msg).toBe(true);
      expect(r.failed).toEqual([]);
      expect(r.responses).toEqual([
        '*1*1*11##',
        '*1*7*12##',
        '*1*0*21##', // general status: every point
        '*1*7*12##',
        '*1*0*21##', // group 5
        '*#4*2*0*0215##',
        '*#4*2*14*0200*3##',
        '*2*1*31##', // moving up
      ]);
      expect(sim.light('11')?.on).toBe(true);
      expect(sim.light('12')).toMatchObject({ on: true, level: 7 });
      await until(() => events.includes('*1*1*11##') && events.includes('*1*7*12##') && events.includes('*2*1*31##'));
      // The shutter reaches the top and the bus says it stopped.
      await until(() => events.includes('*2*0*31##'));
      expect(sim.shutter('31')).toMatchObject({ position: 100, moving: 0 });
    });
  }

  for (const auth of ['open', 'hmac-sha1', 'hmac-sha256'] as const) {
    it(`answers a wrong ${auth} password with NACK, which the client reports`, async () => {
      const sim = await simWith(auth);
      const r = await execute(sim, WRONG[auth], ['*#1*0##']);
      expect(r.ok).toBe(false);
      expect(sim.authFailures).toBe(1);
      expect(sim.light('11')?.on).toBe(false);
    });
  }

  it('NACKs unknown WHEREs, invalid frames and removed devices; applies area and general commands', async () => {
    const sim = await simWith('open');
    const pw = PASSWORDS.open;
    const r = await execute(sim, pw, ['*1*1*77##', '*#1*77##', '*1*1*1##', '*#1*1##', '*1*99*11##', '*#9*11##']);
    expect(r.ok).toBe(true);
    expect(r.failed).toEqual(['*1*1*77##', '*#1*77##', '*1*99*11##', '*#9*11##']);
    expect(r.responses).toEqual(['*1*1*11##', '*1*10*12##']); // area 1 status; the dimmer came on at its last level
    expect([sim.light('11')?.on, sim.light('12')?.on, sim.light('21')?.on]).toEqual([true, true, false]);
    sim.remove('1', '11');
    const gone = await execute(sim, pw, ['*#1*11##', '*#1*0##', '*1*0*0##']);
    expect(gone.failed).toEqual(['*#1*11##']);
    expect(gone.responses).toEqual(['*1*10*12##', '*1*0*21##']);
    expect(sim.light('11')?.on).toBe(true); // off the bus: the general off did not reach it
    expect(sim.light('12')?.on).toBe(false);
  });
});
