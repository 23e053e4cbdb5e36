/**
 * The inspection hub builds its model from real actors of our machines (gateway, association,
 * server and session, fanout job), places them in the route tree, reports state changes as
 * deltas, keeps memory bounded and never throws into the runtime.
 */
import { createActor, type InspectionEvent } from 'xstate';
import { describe, expect, it } from 'vitest';
import { associationMachine, type AssociationInput } from '../../machines/association.ts';
import { fanoutJobMachine } from '../../machines/fanout.ts';
import { gatewayMachine } from '../../machines/gateway.ts';
import { dmServerMachine } from '../../machines/server-session.ts';
import type { ServerSession } from '../../src/session/server-session.ts';
import { InspectionHub, type ActorView } from '../../src/inspect/hub.ts';

/** Lets queued microtasks (association actors start in one) run. */
const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 0));

function assoc(deviceId: string, extra: Partial<AssociationInput> = {}): AssociationInput {
  return { deviceId, mode: 'proxy', status: 'pending', gateway: false, ...extra };
}

function byName(views: ActorView[], name: string): ActorView {
  const v = views.find((a) => a.name === name);
  if (!v) throw new Error(`no actor named ${name} among ${views.map((a) => a.name).join(', ')}`);
  return v;
}

/** A server-side session stand-in: the session machine only calls these when it ends. */
const fakeSession = { ended: false, endReason: 'completed', timeout() {}, handle: async () => ({}) } as unknown as ServerSession;

describe('InspectionHub', () => {
  it('builds the route tree of a server, two levels of gateways, associations, sessions and a fanout job', async () => {
    const hub = new InspectionHub();
    const server = createActor(dmServerMachine, { input: {}, inspect: hub.observer }).start();
    server.send({ type: 'session.open', input: { key: 'gw-a|1', session: fakeSession, idleTimeoutMs: 60_000 } });
    const gwA = createActor(gatewayMachine, { input: { gatewayId: 'gw-a', inspect: hub.observerFor({ gateway: 'gw-a' }) }, inspect: hub.observerFor({ gateway: 'gw-a' }) }).start();
    const southA = createActor(dmServerMachine, { input: {}, inspect: hub.observerFor({ gateway: 'gw-a' }) }).start();
    gwA.send({ type: 'association.add', input: assoc('dev-1', { status: 'attached' }) });
    gwA.send({ type: 'association.add', input: assoc('gw-b', { gateway: true }) });
    southA.send({ type: 'session.open', input: { key: 'dev-1|7', session: fakeSession, idleTimeoutMs: 60_000 } });
    const gwB = createActor(gatewayMachine, { input: { gatewayId: 'gw-b', inspect: hub.observerFor({ gateway: 'gw-b' }) }, inspect: hub.observerFor({ gateway: 'gw-b' }) }).start();
    gwB.send({ type: 'association.add', input: assoc('knx-1', { mode: 'adaptation' }) });
    const job = createActor(fanoutJobMachine, { input: { name: 'j1', total: 2, succeeded: 0, failed: 0, abortOnFailRatio: 0 }, inspect: hub.observerFor({ gateway: 'gw-b' }) }).start();
    await tick();

    const snap = hub.snapshot();
    const a = snap.actors;
    const top = byName(a, 'DM server');
    const gatewayA = byName(a, 'gateway gw-a');
    const childAssoc = byName(a, 'child gateway gw-b (proxy)');
    const gatewayB = byName(a, 'gateway gw-b');
    // The top server saw a session of gw-a, so gw-a hangs under it; gw-b hangs under its association at gw-a.
    expect(top.parent).toBeUndefined();
    expect(gatewayA.parent).toBe(top.key);
    expect(childAssoc.parent).toBe(gatewayA.key);
    expect(gatewayB.parent).toBe(childAssoc.key);
    expect(byName(a, 'knx-1 (adaptation)').route).toEqual(['server', 'gw-a', 'gw-b', 'knx-1']);
    expect(byName(a, 'fanout job j1').parent).toBe(gatewayB.key);
    expect(byName(a, 'south server of gw-a').parent).toBe(gatewayA.key);
    // A southbound session belongs to its device's association; a session at the top server to the server.
    expect(byName(a, 'session 7 of dev-1').parent).toBe(byName(a, 'dev-1 (proxy)').key);
    expect(byName(a, 'session 1 of gw-a').parent).toBe(top.key);
    expect(byName(a, 'dev-1 (proxy)')).toMatchObject({ kind: 'association', device: 'dev-1', gateway: 'gw-a', value: 'attached', active: ['association.attached'] });

    // Graphs: one per machine, with nested states, initial states and transitions.
    const g = snap.machines.association!;
    expect(g.root.initial).toEqual(['association.restoring']);
    expect(g.root.states.map((s) => s.key)).toEqual(['restoring', 'pending', 'attached', 'detached']);
    expect(g.transitions).toEqual(expect.arrayContaining([expect.objectContaining({ source: 'association.restoring', label: 'always', guard: 'storedAttached', targets: ['association.attached'] })]));
    expect(snap.machines.dmSession!.transitions.map((t) => t.label)).toEqual(expect.arrayContaining(['after idleTimeout', 'done: handleMessage', 'message']));
    expect(Object.keys(snap.machines).sort()).toEqual(['association', 'dmServer', 'dmSession', 'fanout', 'gateway']);

    // A live change shows in the next delta: the actor's new state and the transition it took.
    const dev1 = byName(a, 'dev-1 (proxy)');
    gwA.send({ type: 'association.event', deviceId: 'dev-1', event: { type: 'session.failed' } });
    job.send({ type: 'leg.done', ok: 1, failed: 0 });
    job.send({ type: 'leg.done', ok: 0, failed: 1 });
    const d = hub.delta(snap.version, snap.events.at(-1)!.seq)!;
    const changed = d.actors.find((x) => x.key === dev1.key)!;
    expect(changed.value).toBe('detached');
    expect(changed.taken.map((i) => g.transitions[i]!)).toEqual([expect.objectContaining({ event: 'session.failed', targets: ['association.detached'] })]);
    expect(d.actors.find((x) => x.name === 'fanout job j1')).toMatchObject({ status: 'done', value: 'completed', context: expect.objectContaining({ succeeded: 1, failed: 1 }) });
    expect(d.events.map((e) => e.type)).toEqual(expect.arrayContaining(['association.event', 'session.failed', 'leg.done']));
    expect(d.actors.every((x) => x.version > snap.version)).toBe(true);
    for (const x of [server, gwA, southA, gwB]) x.stop();
  });

  it('summarises contexts with scalars only and never copies secrets', async () => {
    const hub = new InspectionHub();
    const input = { ...assoc('dev-s'), secret: 'top-secret', serverNonce: 'n0nce', password: 'pw', note: 'x'.repeat(500) } as AssociationInput;
    const gw = createActor(gatewayMachine, { input: { gatewayId: 'gw-s', inspect: hub.observer }, inspect: hub.observer }).start();
    gw.send({ type: 'association.add', input });
    await tick();
    const snap = hub.snapshot();
    const json = JSON.stringify(snap);
    expect(json).not.toContain('top-secret');
    expect(json).not.toContain('n0nce');
    expect(json).not.toContain('"pw"');
    const a = byName(snap.actors, 'dev-s (proxy)');
    expect(a.context).toMatchObject({ deviceId: 'dev-s', mode: 'proxy', gateway: false, failures: 0 });
    expect((a.context.note as string).length).toBeLessThanOrEqual(81);
    expect(Object.values(a.context).every((v) => v === null || ['string', 'number', 'boolean'].includes(typeof v))).toBe(true);
    expect(byName(snap.actors, 'gateway gw-s').context).toMatchObject({ gatewayId: 'gw-s', associations: 'Map(1)' });
    gw.stop();
  });

  it('stays bounded: a ring of recent events and only the newest finished actors', () => {
    const hub = new InspectionHub({ maxEvents: 50, keepFinished: 10 });
    const start = hub.snapshot();
    const live = createActor(fanoutJobMachine, { input: { name: 'live', total: 1_000_000, succeeded: 0, failed: 0, abortOnFailRatio: 0 }, inspect: hub.observer }).start();
    for (let i = 0; i < 500; i++) {
      const job = createActor(fanoutJobMachine, { input: { name: `j${i}`, total: 1, succeeded: 0, failed: 0, abortOnFailRatio: 0 }, inspect: hub.observer }).start();
      job.send({ type: 'leg.done', ok: 1, failed: 0 });
      live.send({ type: 'leg.done', ok: 1, failed: 0 });
    }
    expect(hub.size).toBe(11);
    const snap = hub.snapshot();
    expect(snap.events).toHaveLength(50);
    expect(snap.events.at(-1)!.seq).toBe(hub.lastSeq);
    expect(snap.actors.filter((a) => a.status === 'done').map((a) => a.context.name)).toEqual(Array.from({ length: 10 }, (_, i) => `j${490 + i}`));
    expect(snap.actors.find((a) => a.status === 'active')!.context.done).toBe(500);
    // A client that saw the empty model learns of the forgotten actors as removals.
    const d = hub.delta(start.version, 0)!;
    expect(d.removed).toHaveLength(490);
    live.stop();
  });

  it('takes labels from the runtime, also for actors created later', async () => {
    const hub = new InspectionHub();
    hub.label('job-x', { gateway: 'gw-l' });
    const gw = createActor(gatewayMachine, { input: { gatewayId: 'gw-l' }, inspect: hub.observer }).start();
    const job = createActor(fanoutJobMachine, { id: 'job-x', input: { name: 'x', total: 5, succeeded: 0, failed: 0, abortOnFailRatio: 0 }, inspect: hub.observer }).start();
    const other = createActor(associationMachine, { input: assoc('loose'), inspect: hub.observer }).start();
    hub.label(other, { gateway: 'gw-l', device: 'loose' });
    const snap = hub.snapshot();
    const gwv = byName(snap.actors, 'gateway gw-l');
    expect(byName(snap.actors, 'fanout job x')).toMatchObject({ gateway: 'gw-l', parent: gwv.key });
    // Not in the gateway's registry, but labelled: drawn under the gateway it was labelled with.
    expect(byName(snap.actors, 'loose (proxy)')).toMatchObject({ gateway: 'gw-l', parent: gwv.key, kind: 'association' });
    for (const x of [gw, job, other]) x.stop();
  });

  it('moves an actor under its gateway once the gateway appears (a southbound server starts first)', () => {
    const hub = new InspectionHub();
    const south = createActor(dmServerMachine, { input: {}, inspect: hub.observerFor({ gateway: 'gw-z' }) }).start();
    const before = hub.snapshot();
    expect(before.actors.map((a) => [a.name, a.parent])).toEqual([['south server of gw-z', undefined]]);
    const gw = createActor(gatewayMachine, { input: { gatewayId: 'gw-z' }, inspect: hub.observerFor({ gateway: 'gw-z' }) }).start();
    const d = hub.delta(before.version, hub.lastSeq)!;
    const gwKey = d.actors.find((a) => a.kind === 'gateway')!.key;
    expect(d.actors.find((a) => a.name === 'south server of gw-z')?.parent).toBe(gwKey);
    for (const x of [south, gw]) x.stop();
  });

  it('never throws into the runtime, whatever it is fed', () => {
    const hub = new InspectionHub();
    const bad = [
      null,
      {},
      { type: '@xstate.actor', actorRef: null },
      { type: '@xstate.event', actorRef: {}, event: null },
      { type: '@xstate.snapshot', actorRef: 5, snapshot: undefined },
      { type: '@xstate.microstep', actorRef: {}, _transitions: [1, 2] },
    ] as unknown as InspectionEvent[];
    for (const ev of bad) expect(() => hub.observer(ev)).not.toThrow();
    expect(() => hub.label('nobody', { gateway: 'x' })).not.toThrow();
    expect(hub.snapshot().actors).toEqual([]);
  });
});

describe('InspectionHub mirroring another process (gwmo up --processes)', () => {
  it('hangs the mirrored actors under the parent gateway association, follows deltas, and drops them with the source', async () => {
    // "Parent process": the DM server and gw-a with its child gateway gw-b as an association.
    const local = new InspectionHub();
    const server = createActor(dmServerMachine, { input: {}, inspect: local.observer }).start();
    const gwA = createActor(gatewayMachine, { input: { gatewayId: 'gw-a', inspect: local.observerFor({ gateway: 'gw-a' }) }, inspect: local.observerFor({ gateway: 'gw-a' }) }).start();
    gwA.send({ type: 'association.add', input: assoc('gw-b', { gateway: true, status: 'attached' }) });
    // "Gateway process" of gw-b: its own hub, as the child runs it.
    const remote = new InspectionHub();
    const gwB = createActor(gatewayMachine, { input: { gatewayId: 'gw-b', inspect: remote.observerFor({ gateway: 'gw-b' }) }, inspect: remote.observerFor({ gateway: 'gw-b' }) }).start();
    gwB.send({ type: 'association.add', input: assoc('dev-9', { status: 'attached' }) });
    await tick();

    local.ingest('gw-b', { type: 'snapshot', ...remote.snapshot() });
    let views = local.snapshot().actors;
    const mirroredGw = views.find((a) => a.kind === 'gateway' && a.gateway === 'gw-b')!;
    expect(mirroredGw.key.startsWith('gw-b/')).toBe(true);
    expect(mirroredGw.route).toEqual(['server', 'gw-a', 'gw-b']);
    expect(views.find((a) => a.key === mirroredGw.parent)?.name).toBe('child gateway gw-b (proxy)');
    expect(byName(views, 'dev-9 (proxy)').route).toEqual(['server', 'gw-a', 'gw-b', 'dev-9']);
    const eventsAfterSnapshot = local.eventsAfter(-1).filter((e) => e.actor.startsWith('gw-b/')).length;
    expect(eventsAfterSnapshot).toBeGreaterThan(0);

    // A delta: a new association appears, one is removed; a repeated snapshot adds no events twice.
    const v = remote.currentVersion;
    const seq = remote.lastSeq;
    gwB.send({ type: 'association.add', input: assoc('dev-10', { status: 'attached' }) });
    await tick();
    local.ingest('gw-b', { type: 'delta', ...remote.delta(v, seq)! });
    expect(local.snapshot().actors.some((a) => a.name === 'dev-10 (proxy)' && a.route.join('>') === 'server>gw-a>gw-b>dev-10')).toBe(true);
    const eventsNow = local.eventsAfter(-1).filter((e) => e.actor.startsWith('gw-b/')).length;
    local.ingest('gw-b', { type: 'snapshot', ...remote.snapshot() });
    expect(local.eventsAfter(-1).filter((e) => e.actor.startsWith('gw-b/')).length).toBe(eventsNow);
    // Garbage from a broken process is counted, never thrown.
    local.ingest('gw-b', { type: 'delta' } as never);
    expect(local.errors).toBeGreaterThan(0);

    const fromVersion = local.currentVersion;
    local.dropSource('gw-b');
    views = local.snapshot().actors;
    expect(views.filter((a) => a.key.startsWith('gw-b/'))).toEqual([]);
    expect(local.delta(fromVersion, local.lastSeq)!.removed.some((k) => k.startsWith('gw-b/'))).toBe(true);
    server.stop();
    gwA.stop();
    gwB.stop();
  });
});
