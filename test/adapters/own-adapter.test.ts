/**
 * The OpenWebNet adapter at the adapter level, against the simulated MyHOME gateway: discovery and
 * presence, the device subtree and its native mapping, event-session state, associate/dissociate
 * (AMode-006), area multicast, settings, link loss with reconnect and backoff (503 meanwhile), the
 * concurrency cap, wrong answers, and a process that exits by itself after stop().
 */
import { spawn } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import type { AdapterDevice, LinkState } from '../../adapters/contract.ts';
import { OwnAdapter, ownAdapterConfigSchema } from '../../adapters/own/adapter.ts';
import { OwnGatewaySim, type OwnSimConfig } from '../../adapters/own/sim.ts';
import { DmStatusError } from '../../src/errors.ts';
import { LOCAL, type PluginNodeView, type TreeContext, type TreePlugin } from '../../src/tree/tree.ts';
import { memoryTree } from '../tree/helpers.ts';

const INSTALL: OwnSimConfig = {
  auth: 'open',
  password: '12345',
  lights: [{ where: '11' }, { where: '12', dimmer: true }, { where: '21' }],
  shutters: [{ where: '31', travelMs: 100 }],
  zones: [{ where: '2', temperature: 18, setpoint: 19 }],
};

let sim: OwnGatewaySim | undefined;
let adapter: OwnAdapter | undefined;
afterEach(async () => {
  await adapter?.stop();
  await sim?.close();
  adapter = undefined;
  sim = undefined;
});

interface Recorder {
  attached: AdapterDevice[];
  detached: string[];
  states: LinkState[];
  events: { attached(d: AdapterDevice): void; detached(a: string): void; link(s: LinkState): void };
}
function recorder(): Recorder {
  const r: Recorder = {
    attached: [],
    detached: [],
    states: [],
    events: { attached: (d) => r.attached.push(d), detached: (a) => r.detached.push(a), link: (s) => r.states.push(s) },
  };
  return r;
}
async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 4000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
async function setup(cfg: Record<string, unknown> = {}, install: OwnSimConfig = INSTALL): Promise<{ a: OwnAdapter; r: Recorder; sim: OwnGatewaySim }> {
  sim = await OwnGatewaySim.start(install);
  adapter = new OwnAdapter(ownAdapterConfigSchema.parse({ type: 'own', gatewayAddr: sim.addr, password: install.password, pollMs: 0, timeoutMs: 500, ...cfg }));
  const r = recorder();
  await adapter.start(r.events);
  return { a: adapter, r, sim };
}
const get = async (p: TreePlugin | undefined, path: string) => (await p!.get(path, LOCAL))?.data;
const write = (data: string) => ({ format: 'chr' as const, type: 'text/plain', data });
/** The DM status an operation ends with (200 when it succeeds); plugin methods may throw synchronously. */
async function status(op: Promise<unknown> | (() => unknown)): Promise<{ status: number | undefined; code: string }> {
  try {
    await (typeof op === 'function' ? op() : op);
  } catch (err) {
    return { status: (err as DmStatusError).status, code: (err as DmStatusError).code };
  }
  return { status: 200, code: '' };
}

describe('OwnAdapter', () => {
  it('discovers lights and shutters by general status, zones from the WHERE list, and maps every leaf to OWN frames', async () => {
    const { a, r, sim } = await setup({ wheres: [{ who: '4', where: '2', name: 'Living room' }] });
    await until(() => r.attached.length === 5, 'five points to attach');
    expect(r.attached.map((d) => d.address).sort()).toEqual(['1/11', '1/12', '1/21', '2/31', '4/2']);
    expect(r.attached.find((d) => d.address === '1/11')).toMatchObject({ deviceId: `urn:dev:own:${sim.mac}:1-11`, man: 'BTicino' });
    expect(r.states).toEqual(['connecting', 'connected']);

    const l = a.device('1/11');
    expect(await l!.children('', LOCAL)).toEqual(['DevInfo', 'DevDetail', 'OWN']);
    expect(await l!.children('OWN', LOCAL)).toEqual(['1', 'Self']);
    expect(await l!.children('OWN/1/11', LOCAL)).toEqual(['Status', 'Command', 'LastKnown', 'On', 'Level']);
    expect(await get(l, 'OWN/1/11/Status')).toBe('*1*0*11##');
    expect(await get(l, 'OWN/1/11/On')).toBe('false');
    await l!.replace!('OWN/1/11/On', write('true'), LOCAL);
    expect(sim.light('11')?.on).toBe(true);
    expect(await get(l, 'OWN/Self/On')).toBe('true'); // the WHERE-independent alias
    expect(await get(l, 'OWN/1/11/Level')).toBe('100');
    await l!.exec!('OWN/1/11/Command', { data: '0' }, LOCAL);
    expect(sim.light('11')?.on).toBe(false);
    expect(await get(l, 'OWN/1/11/Command')).toBe('0');
    expect(sim.received).toContain('*1*0*11##');

    const dim = a.device('1/12');
    await dim!.replace!('OWN/1/12/Level', write('40'), LOCAL);
    expect(sim.light('12')).toMatchObject({ on: true, level: 4 });
    expect(await get(dim, 'OWN/1/12/Level')).toBe('40');
    await dim!.replace!('OWN/1/12/Level', write('0'), LOCAL);
    expect(sim.light('12')?.on).toBe(false);

    const sh = a.device('2/31');
    await sh!.replace!('OWN/2/31/Move', write('up'), LOCAL);
    expect(await get(sh, 'OWN/2/31/Move')).toBe('up');
    await until(() => sim.shutter('31')?.moving === 0, 'the shutter to reach the top');
    expect(await get(sh, 'OWN/2/31/Position')).toBe('100');
    await sh!.replace!('OWN/2/31/Position', write('40'), LOCAL);
    await until(async () => (await get(sh, 'OWN/2/31/Position')) === '40', 'the shutter to reach 40 %');

    const z = a.device('4/2');
    expect(await z!.children('OWN/4/2', LOCAL)).toEqual(['Status', 'Command', 'LastKnown', 'Temperature', 'Setpoint', 'Mode', 'Name']);
    expect(await get(z, 'OWN/4/2/Name')).toBe('Living room');
    expect(await get(z, 'OWN/4/2/Temperature')).toBe('18.0');
    expect(await get(z, 'OWN/4/2/Setpoint')).toBe('19.0');
    expect(await get(z, 'OWN/4/2/Mode')).toBe('auto');
    await z!.replace!('OWN/4/2/Setpoint', write('21.5'), LOCAL);
    expect(sim.zone('2')).toMatchObject({ setpoint: 21.5, mode: '310' });
    await z!.replace!('OWN/4/2/Mode', write('off'), LOCAL);
    expect(await get(z, 'OWN/4/2/Mode')).toBe('off');
    expect(await get(z, 'OWN/4/2/Status')).toBe('*4*303*2##');

    // Bad values are 400, unmapped nodes 404, commands a node does not support 405.
    expect(await status(() => l!.replace!('OWN/1/11/On', write('sometimes'), LOCAL))).toMatchObject({ status: 400 });
    expect(await status(() => dim!.replace!('OWN/1/12/Level', write('150'), LOCAL))).toMatchObject({ status: 400 });
    expect(await status(() => z!.replace!('OWN/4/2/Setpoint', write('hot'), LOCAL))).toMatchObject({ status: 400 });
    expect(await status(() => l!.exec!('OWN/1/11/Command', { data: '1*2' }, LOCAL))).toMatchObject({ status: 400 });
    expect(await l!.get('OWN/1/11/Nope', LOCAL)).toBeUndefined();
    expect(await l!.get('OWN/1/12/On', LOCAL)).toBeUndefined();
    expect(await status(() => l!.exec!('OWN/1/11/On', {}, LOCAL))).toMatchObject({ status: 405 });
    expect(await status(() => l!.replace!('OWN/1/11/Status', write('x'), LOCAL))).toMatchObject({ status: 405 });
    // A command the device refuses (a relay has no dimmer levels) is the native error 500.
    expect(await status(() => l!.replace!('OWN/1/11/Level', write('50'), LOCAL))).toMatchObject({ status: 500, code: 'OWN_NACK' });
  });

  it('a DM Replace or Exec through the tree is its command frame alone, no status request first (TreePlugin.describe)', async () => {
    const { a, r, sim } = await setup({ wheres: [{ who: '4', where: '2', name: 'Living room' }] });
    await until(() => r.attached.length === 5, 'five points to attach');
    /** The frames received since `n`, once the gateway has had nothing new for a moment. */
    const since = async (n: number): Promise<string[]> => {
      let last = -1;
      while (last !== sim.received.length) {
        last = sim.received.length;
        await new Promise((res) => setTimeout(res, 60));
      }
      return sim.received.slice(n);
    };
    await since(0); // the discovery sweep

    // describe answers get's format, type, access and ACL for every node, and undefined where get does.
    const meta = (v: PluginNodeView | undefined) => v && { format: v.format, type: v.type, access: v.access, acl: v.acl };
    let n = sim.received.length;
    for (const [addr, base] of [
      ['1/11', 'OWN/1/11'],
      ['1/12', 'OWN/1/12'],
      ['2/31', 'OWN/2/31'],
      ['4/2', 'OWN/4/2'],
    ] as const) {
      const p = a.device(addr)!;
      const walk = async (path: string): Promise<void> => {
        const [g, dsc] = [await p.get(path, LOCAL), await p.describe!(path, LOCAL)];
        expect(g, `${addr} ${path}`).toBeDefined();
        expect(meta(dsc), `${addr} ${path}`).toEqual(meta(g));
        for (const c of g?.format === 'node' ? await p.children(path, LOCAL) : []) await walk(path === '' ? c : `${path}/${c}`);
      };
      await walk('');
      await walk('OWN/Self');
      for (const missing of [`${base}/Nope`, `${base}/${addr === '4/2' ? 'On' : 'Setpoint'}`, 'OWN/1/99/On', 'OWN/9', 'Nope']) {
        expect(await p.get(missing, LOCAL), `${addr} ${missing}`).toBeUndefined();
        expect(await p.describe!(missing, LOCAL), `${addr} ${missing}`).toBeUndefined();
      }
    }
    // (describe itself sends nothing: every frame since is one of get's status or dimension requests.)
    expect((await since(n)).every((f) => f.startsWith('*#'))).toBe(true);

    const { tree } = await memoryTree();
    const ctx: TreeContext = { serverId: 'srv' };
    for (const [at, addr] of [
      ['./L11', '1/11'],
      ['./L12', '1/12'],
      ['./S31', '2/31'],
      ['./Z2', '4/2'],
    ] as const) {
      await tree.add(at, { format: 'node', acl: 'Get=srv&Replace=srv&Exec=srv' }, LOCAL);
      await tree.mount(at, a.device(addr)!);
    }
    const frames = async (op: () => Promise<unknown>): Promise<string[]> => {
      const n0 = sim.received.length;
      await op();
      return since(n0);
    };
    expect(await frames(() => tree.replace('./L11/OWN/1/11/On', { format: 'bool', data: 'true' }, ctx))).toEqual(['*1*1*11##']);
    expect(sim.light('11')?.on).toBe(true);
    expect(await frames(() => tree.replace('./L11/OWN/Self/On', { format: 'bool', data: 'false' }, ctx))).toEqual(['*1*0*11##']);
    expect(await frames(() => tree.exec('./L11/OWN/1/11/Command', { data: '1' }, ctx))).toEqual(['*1*1*11##']);
    expect(await frames(() => tree.replace('./L12/OWN/1/12/Level', { format: 'int', data: '40' }, ctx))).toEqual(['*1*4*12##']);
    expect(await frames(() => tree.replace('./S31/OWN/2/31/Move', { format: 'chr', data: 'stop' }, ctx))).toEqual(['*2*0*31##']);
    expect(await frames(() => tree.replace('./S31/OWN/2/31/Position', { format: 'int', data: '40' }, ctx))).toEqual(['*#2*31*#11#001*40##']);
    expect(await frames(() => tree.replace('./Z2/OWN/4/2/Setpoint', { format: 'float', data: '21.5' }, ctx))).toEqual(['*#4*#2*#14*0215*3##']);
    expect(await frames(() => tree.replace('./Z2/OWN/4/2/Mode', { format: 'chr', data: 'auto' }, ctx))).toEqual(['*4*311*#2##']);
    expect(sim.zone('2')).toMatchObject({ setpoint: 21.5, mode: '311' });

    // The checks hold on metadata alone, and nothing reaches the gateway: read-only 405, missing 404.
    n = sim.received.length;
    expect((await status(tree.replace('./L11/OWN/1/11/Status', { format: 'chr', data: 'x' }, ctx))).status).toBe(405);
    expect((await status(tree.replace('./Z2/OWN/4/2/Temperature', { format: 'float', data: '20' }, ctx))).status).toBe(405);
    expect((await status(tree.exec('./L11/OWN/1/11/On', {}, ctx))).status).toBe(405);
    expect((await status(tree.replace('./L11/OWN/1/11/Nope', { format: 'chr', data: 'x' }, ctx))).status).toBe(404);
    expect((await status(tree.replace('./L11/OWN/1/11/On', { format: 'bool', data: 'true' }, { serverId: 'other' }))).status).toBe(425);
    expect(await since(n)).toEqual([]);
    // A Get is still its one status request.
    expect(await frames(() => tree.get('./L11/OWN/1/11/On', ctx))).toEqual(['*#1*11##']);

    // Without describe the tree asks get for the node first: a status request, then the command.
    const full = a.device('1/11')!;
    await tree.add('./Old', { format: 'node', acl: 'Get=srv&Replace=srv' }, LOCAL);
    await tree.mount('./Old', { get: full.get, children: full.children, replace: full.replace });
    expect(await frames(() => tree.replace('./Old/OWN/1/11/On', { format: 'bool', data: 'false' }, ctx))).toEqual(['*#1*11##', '*1*0*11##']);
  });

  it('keeps a last-known state from the event session and attaches points heard on the bus', async () => {
    const { a, r, sim } = await setup({ discoverAutomation: false });
    await until(() => r.attached.length === 3, 'the lights to attach');
    const before = a.nativeOps;
    sim.press('21', true);
    await until(async () => (await get(a.device('1/21'), 'OWN/1/21/LastKnown')) === '*1*1*21##', 'the event to arrive');
    expect(a.nativeOps).toBe(before); // LastKnown costs no bus traffic
    // A light that was off the bus comes back and announces itself: attached again without a poll.
    sim.remove('1', '12');
    expect(await status(() => a.device('1/12')!.get('OWN/1/12/On', LOCAL))).toMatchObject({ status: 461, code: 'OWN_NO_ANSWER' });
    expect(r.detached).toEqual(['1/12']);
    sim.restore('1', '12');
    await until(() => r.attached.filter((d) => d.address === '1/12').length === 2, '1/12 to attach again');
    // The shutter was not discovered (discoverAutomation off).
    await a.sweep();
    expect(a.list().map((d) => d.address).sort()).toEqual(['1/11', '1/12', '1/21']);
  });

  it('detaches points that NACK, stay silent or answer for another WHERE, on the presence sweep', async () => {
    const { r, sim } = await setup({ pollMs: 60, wheres: [{ who: 4, where: '2' }] });
    await until(() => r.attached.length === 5, 'five points');
    sim.remove('1', '11', 'nack');
    sim.remove('2', '31', 'empty'); // the gateway ACKs the status request but nobody answers
    await until(() => r.detached.includes('1/11') && r.detached.includes('2/31'), 'the removed points to detach');
    expect(r.detached).not.toContain('1/12');
    sim.remove('4', '2', 'empty');
    await until(() => r.detached.includes('4/2'), 'the silent zone to detach');
    // A gateway that answers about the wrong WHERE: no point gets someone else's state.
    sim.behave({ wrongAnswers: 'where' });
    await until(() => r.detached.includes('1/12') && r.detached.includes('1/21'), 'points with wrong answers to detach');
  });

  it('associates and dissociates points (AMode-006) and validates their parameters', async () => {
    const { a, r, sim } = await setup({ discoverLights: false, discoverAutomation: false });
    expect(a.associationParams.map((p) => [p.name, !!p.required])).toEqual([
      ['WHO', true],
      ['WHERE', true],
      ['Name', false],
    ]);
    expect(r.attached).toEqual([]);
    const dev = await a.associate({ WHO: '2', WHERE: '31', Name: 'Kitchen blind' });
    expect(dev).toMatchObject({ address: '2/31', deviceId: `urn:dev:own:${sim.mac}:2-31`, mod: 'OWN WHO 2 automation point' });
    expect(r.attached.map((d) => d.address)).toEqual(['2/31']);
    expect(await get(a.device('2/31'), 'OWN/2/31/Name')).toBe('Kitchen blind');
    await a.device('2/31')!.replace!('OWN/2/31/Move', write('up'), LOCAL);
    expect(sim.shutter('31')?.moving).toBe(1);

    expect(await status(a.associate({ WHO: '1' }))).toMatchObject({ status: 412 });
    expect(await status(a.associate({ WHO: '7', WHERE: '11' }))).toMatchObject({ status: 400 });
    expect(await status(a.associate({ WHO: '1', WHERE: '0' }))).toMatchObject({ status: 400 }); // general is not a point
    expect(await status(a.associate({ WHO: '4', WHERE: '100' }))).toMatchObject({ status: 400 });
    expect(await status(a.associate({ WHO: '1', WHERE: '77' }))).toMatchObject({ status: 461, code: 'OWN_NO_ANSWER' });
    expect(a.device('1/77')).toBeDefined(); // known (detached), not associated
    expect(r.attached).toHaveLength(1);

    await a.dissociate('2/31');
    expect(r.detached).toEqual(['2/31']);
    expect(a.device('2/31')).toBeUndefined();
    expect(await status(a.dissociate('2/99'))).toMatchObject({ status: 404 });
    // A sweep does not bring a dissociated point back; associating again does.
    await a.sweep();
    expect(a.device('2/31')).toBeUndefined();
    await a.associate({ WHO: '2', WHERE: '31' });
    expect(r.attached.map((d) => d.address)).toEqual(['2/31', '2/31']);
  });

  it('switches all known lights of an area with one area command, the rest device by device', async () => {
    const { a, r, sim } = await setup({ discoverAutomation: false });
    await until(() => r.attached.length === 3, 'the lights');
    const res = await a.multicast({ addresses: ['1/11', '1/12', '1/21'], kind: 'Replace', path: 'OWN/Self/On', data: 'true' });
    expect([...res.entries()].sort()).toEqual([
      ['1/11', { status: 200 }],
      ['1/12', { status: 200 }],
    ]);
    expect(sim.received.filter((f) => f.startsWith('*1*'))).toEqual(['*1*1*1##']);
    expect(a.multicasts).toBe(1);
    expect([sim.light('11')?.on, sim.light('12')?.on, sim.light('21')?.on]).toEqual([true, true, false]);
    // Not all of area 1 in the request: no area command (it would switch 1/12 too).
    expect((await a.multicast({ addresses: ['1/11', '1/21'], kind: 'Replace', path: 'OWN/Self/On', data: 'false' })).size).toBe(0);
    expect((await a.multicast({ addresses: ['1/11', '1/12'], kind: 'Replace', path: 'OWN/Self/On', data: 'maybe' })).size).toBe(0);
    expect((await a.multicast({ addresses: ['1/11', '1/12'], kind: 'Exec', path: 'OWN/Self/Command', data: '1' })).size).toBe(0);
  });

  it('rides out a dropped link: 503 while down, reconnects with growing backoff, works again', async () => {
    const { a, r, sim } = await setup({ discoverAutomation: false, backoff: { initialMs: 40, maxMs: 2000, factor: 2 } });
    await until(() => r.attached.length === 3, 'the lights');
    sim.behave({ refuseConnections: true });
    const from = sim.connectionTimes.length;
    sim.dropConnections();
    await until(() => a.linkState === 'backoff', 'the link to back off');
    expect(await status(() => a.device('1/11')!.get('OWN/1/11/On', LOCAL))).toMatchObject({ status: 503, code: 'OWN_LINK_DOWN' });
    await until(() => sim.connectionTimes.length - from >= 4, 'four reconnection attempts', 5000);
    const t = sim.connectionTimes.slice(from);
    const gaps = t.slice(1).map((x, i) => x - t[i]!);
    // Attempt n waits in [ceiling/2, ceiling] with ceiling = 40·2^(n-1): 20..40, 40..80, 80..160.
    expect(gaps[0]).toBeGreaterThanOrEqual(15);
    expect(gaps[2]).toBeGreaterThanOrEqual(75);
    expect(gaps[2]!).toBeGreaterThan(gaps[0]!);
    expect(a.linkInfo.lastError).toMatch(/OWN|gateway|session/i);
    sim.behave({});
    await until(() => a.linkState === 'connected', 'the link to come back', 5000);
    expect(a.linkInfo.connects).toBe(2);
    expect(r.states.filter((s) => s === 'connected')).toHaveLength(2);
    await a.device('1/11')!.replace!('OWN/1/11/On', write('true'), LOCAL);
    expect(sim.light('11')?.on).toBe(true);
  });

  it('caps native operations in flight at maxConcurrency', async () => {
    const { a, r, sim } = await setup({ discoverAutomation: false, maxConcurrency: 2 });
    await until(() => r.attached.length === 3, 'the lights');
    sim.behave({ latencyMs: 60 });
    let peak = 0;
    const sampler = setInterval(() => (peak = Math.max(peak, sim.sessions().command)), 2);
    const t0 = Date.now();
    const reads = await Promise.all(['11', '12', '21', '11', '12', '21'].map((w) => get(a.device(`1/${w}`), `OWN/1/${w}/On`)));
    const took = Date.now() - t0;
    clearInterval(sampler);
    expect(reads).toEqual(['false', 'false', 'false', 'false', 'false', 'false']);
    expect(peak).toBeLessThanOrEqual(2);
    expect(took).toBeGreaterThanOrEqual(3 * 60 - 10); // six requests, two at a time
  });

  it('exposes GatewayAddr, Password (secret) and PollMs; a wrong password keeps the link backing off with a clear reason', async () => {
    const { a, sim } = await setup({ discoverLights: false, discoverAutomation: false });
    expect(a.settings.find((s) => s.name === 'Password')?.secret).toBe(true);
    expect(a.getSettings()).toEqual({ GatewayAddr: sim.addr, Password: '12345', PollMs: '0' });
    expect(await status(a.configure({ GatewayAddr: 'host:99999' }))).toMatchObject({ status: 400 });
    expect(await status(a.configure({ PollMs: '-1' }))).toMatchObject({ status: 400 });
    expect(await status(a.configure({ Colour: 'red' }))).toMatchObject({ status: 404 });
    await a.configure({ Password: '99999' });
    await until(() => a.linkState === 'backoff', 'the link to refuse the password');
    expect(a.linkInfo.lastError).toMatch(/password refused/);
    expect(a.linkInfo.lastError).not.toContain('99999');
    await a.configure({ Password: '12345', PollMs: '1000' });
    await until(() => a.linkState === 'connected', 'the link with the right password');
    expect(a.getSettings()['PollMs']).toBe('1000');
  });

  it('a process running the simulator and the adapter exits by itself after stop()', async () => {
    const child = spawn(process.execPath, ['bin/run-ts.js', 'adapters/own/smoke.ts'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const t0 = Date.now();
    const code = await new Promise<number | null>((resolve) => {
      const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      child.on('exit', (c) => {
        clearTimeout(killer);
        resolve(c);
      });
    });
    expect(code, err).toBe(0);
    expect(Date.now() - t0).toBeLessThan(8000);
    expect(JSON.parse(out.trim())).toEqual({ state: 'connected', attached: ['1/11', '1/12', '2/31'], on: true });
  });
});
