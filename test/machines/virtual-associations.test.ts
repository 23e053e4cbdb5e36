/**
 * Associations as virtual actors (machines/gateway.ts): every association exists as its record; an
 * actor is activated by the first event that needs one, an event that changes nothing costs no
 * actor, idle actors at rest retire to their records at a sweep (and come back with their state),
 * child-gateway actors stay live, and the visualizer draws the records of associations without a
 * live actor in their recorded state.
 */
import { createActor } from 'xstate';
import { describe, expect, it } from 'vitest';
import { gatewayMachine, isNoOpOnRecord, type AssociationDirectory } from '../../machines/gateway.ts';
import { associationMachine, type AssociationInput } from '../../machines/association.ts';
import { InspectionHub } from '../../src/inspect/hub.ts';

const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 0));

/** A directory over plain records, with the changes the actors report written back (as the gateway does). */
function records(initial: AssociationInput[]): { dir: AssociationDirectory; recs: Map<string, AssociationInput>; live: string[]; retired: string[] } {
  const recs = new Map(initial.map((r) => [r.deviceId, { ...r }]));
  const live: string[] = [];
  const retired: string[] = [];
  const dir: AssociationDirectory = {
    get: (id) => {
      const r = recs.get(id);
      return r && { ...r, onChange: (ch) => void Object.assign(recs.get(ch.deviceId)!, ch.status ? { status: ch.status } : {}, ch.mode ? { mode: ch.mode } : {}) };
    },
    liveness: (id, on) => void (on ? live : retired).push(id),
  };
  return { dir, recs, live, retired };
}

const rec = (deviceId: string, status: AssociationInput['status'], extra: Partial<AssociationInput> = {}): AssociationInput => ({ deviceId, mode: 'adaptation', status, gateway: false, maxFailures: 2, ...extra });

describe('virtual association actors', () => {
  it('decides from the record alone when an event changes nothing', () => {
    expect(isNoOpOnRecord(rec('a', 'attached'), { type: 'session.ok' })).toBe(true);
    expect(isNoOpOnRecord(rec('a', 'sleeping'), { type: 'session.ok' })).toBe(true);
    expect(isNoOpOnRecord(rec('a', 'pending'), { type: 'session.ok' })).toBe(false);
    expect(isNoOpOnRecord(rec('a', 'detached'), { type: 'session.ok' })).toBe(false);
    expect(isNoOpOnRecord(rec('a', 'attached'), { type: 'session.failed' })).toBe(false);
    expect(isNoOpOnRecord(rec('a', 'detached'), { type: 'detach' })).toBe(true);
    expect(isNoOpOnRecord(rec('a', 'attached'), { type: 'detach' })).toBe(false);
    expect(isNoOpOnRecord(rec('a', 'attached'), { type: 'mode.set', mode: 'adaptation' })).toBe(true);
    expect(isNoOpOnRecord(rec('a', 'attached'), { type: 'mode.set', mode: 'proxy' })).toBe(false);
  });

  it('activates an actor only for an event that needs one, with the state its record holds', async () => {
    const r = records([rec('d1', 'attached'), rec('d2', 'attached'), rec('d3', 'detached')]);
    const gw = createActor(gatewayMachine, { input: { gatewayId: 'gw', directory: r.dir } }).start();
    // A success from an attached device: nothing to do, no actor.
    gw.send({ type: 'association.event', deviceId: 'd1', event: { type: 'session.ok' } });
    gw.send({ type: 'association.event', deviceId: 'unknown', event: { type: 'session.failed' } });
    await tick();
    expect([...gw.getSnapshot().context.associations.keys()]).toEqual([]);
    // A failure needs the actor (it counts failures): activated in `attached`, then one failure.
    gw.send({ type: 'association.event', deviceId: 'd2', event: { type: 'session.failed' } });
    await tick();
    const a2 = gw.getSnapshot().context.associations.get('d2')!;
    expect(a2.getSnapshot().value).toBe('attached');
    expect(a2.getSnapshot().context.failures).toBe(1);
    expect(r.live).toEqual(['d2']);
    // A detached device coming back: activated in `detached`, attached, and the record says so.
    gw.send({ type: 'association.event', deviceId: 'd3', event: { type: 'session.ok' } });
    await tick();
    expect(gw.getSnapshot().context.associations.get('d3')!.getSnapshot().value).toBe('attached');
    expect(r.recs.get('d3')!.status).toBe('attached');
    gw.stop();
  });

  it('retires idle actors at rest at a sweep, keeps busy, failing and child-gateway ones, and brings them back from their records', async () => {
    const r = records([rec('d1', 'detached'), rec('d2', 'attached'), rec('g1', 'attached', { gateway: true, mode: 'proxy' })]);
    const gw = createActor(gatewayMachine, { input: { gatewayId: 'gw', directory: r.dir } }).start();
    gw.send({ type: 'association.add', input: r.dir.get('g1')! });
    gw.send({ type: 'association.event', deviceId: 'd1', event: { type: 'session.ok' } }); // detached -> attached
    gw.send({ type: 'association.event', deviceId: 'd2', event: { type: 'session.failed' } }); // one failure: not at rest
    await tick();
    const live = (): string[] => [...gw.getSnapshot().context.associations.keys()].sort();
    expect(live()).toEqual(['d1', 'd2', 'g1']);
    // Touched since the last sweep: all stay.
    gw.send({ type: 'association.sweep' });
    await tick();
    expect(live()).toEqual(['d1', 'd2', 'g1']);
    // Idle for a whole sweep period: d1 (at rest) retires; d2 (a failure counted) and g1 (a child gateway) stay.
    gw.send({ type: 'association.sweep' });
    await tick();
    expect(live()).toEqual(['d2', 'g1']);
    expect(r.retired).toEqual(['d1']);
    expect(r.recs.get('d1')!.status).toBe('attached');
    // The next event that needs it activates it again from its record: attached, then detached by a detach.
    gw.send({ type: 'association.event', deviceId: 'd1', event: { type: 'detach' } });
    await tick();
    expect(gw.getSnapshot().context.associations.get('d1')!.getSnapshot().value).toBe('detached');
    expect(r.recs.get('d1')!.status).toBe('detached');
    gw.stop();
  });

  it('shows associations without a live actor as records in the visualizer, and the live actor instead once activated', async () => {
    const hub = new InspectionHub();
    const r = records([rec('d1', 'attached'), rec('d2', 'detached')]);
    const observer = hub.observerFor({ gateway: 'gw' });
    const live = new Set<string>();
    const notify = observer.recordFeed!({
      gatewayId: 'gw',
      machine: associationMachine,
      list: () => [...r.recs.values()].map((x) => ({ deviceId: x.deviceId, mode: x.mode, status: x.status, gateway: x.gateway })),
      get: (id) => {
        const x = r.recs.get(id);
        return x && { deviceId: x.deviceId, mode: x.mode, status: x.status, gateway: x.gateway };
      },
      live: (id) => live.has(id),
    });
    const dir: AssociationDirectory = { get: r.dir.get, liveness: (id, on) => (on ? live.add(id) : live.delete(id), notify(id)) };
    const gw = createActor(gatewayMachine, { input: { gatewayId: 'gw', directory: dir, inspect: observer }, inspect: observer }).start();
    await tick();
    const snap = hub.snapshot();
    const gwView = snap.actors.find((a) => a.machine === 'gateway')!;
    const d1 = snap.actors.find((a) => a.device === 'd1')!;
    expect(d1).toMatchObject({ kind: 'association', machine: 'association', parent: gwView.key, value: 'attached', active: ['association.attached'], context: { record: true } });
    expect(snap.actors.find((a) => a.device === 'd2')).toMatchObject({ value: 'detached', active: ['association.detached'] });
    expect(Object.keys(snap.machines)).toContain('association');
    // d2 comes back: its live actor replaces the record in the next delta.
    gw.send({ type: 'association.event', deviceId: 'd2', event: { type: 'session.ok' } });
    await tick();
    const delta = hub.delta(snap.version, snap.events.at(-1)?.seq ?? 0)!;
    expect(delta.removed).toContain(snap.actors.find((a) => a.device === 'd2')!.key);
    const liveD2 = hub.snapshot().actors.filter((a) => a.device === 'd2');
    expect(liveD2).toHaveLength(1);
    expect(liveD2[0]).toMatchObject({ value: 'attached', context: { deviceId: 'd2' } });
    expect(liveD2[0]!.context.record).toBeUndefined();
    gw.stop();
  });
});
