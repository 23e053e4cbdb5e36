/**
 * Model-based test of the gateway root actor. An abstract model (which associations exist, whether
 * the gateway runs) generates event sequences with xstate/graph; they are replayed on the real
 * gateway machine, and after every step the actor system must hold exactly one live association
 * actor per association the model expects, reachable by its system id and in a valid state.
 * (The real machine cannot be traversed by xstate/graph directly: its children have system ids,
 * and the traversal reuses one actor system.)
 */
import { assign, createActor, setup } from 'xstate';
import { createTestModel } from 'xstate/graph';
import { describe, expect, it } from 'vitest';
import { gatewayMachine, type GatewayEvent } from '../../machines/gateway.ts';

const add = (deviceId: string, status: 'pending' | 'attached' = 'pending'): GatewayEvent => ({
  type: 'association.add',
  input: { deviceId, mode: 'proxy', status, gateway: false, maxFailures: 1 },
});
const events: GatewayEvent[] = [
  add('d1'),
  add('d2', 'attached'),
  { type: 'association.remove', deviceId: 'd1' },
  { type: 'association.event', deviceId: 'd1', event: { type: 'session.ok' } },
  { type: 'association.event', deviceId: 'd2', event: { type: 'session.failed' } },
  { type: 'stop' },
];

/** The abstract model: which of d1, d2 are associated, and whether the gateway runs. */
const gatewayModel = setup({
  types: { context: {} as { d1: boolean; d2: boolean }, events: {} as GatewayEvent },
}).createMachine({
  id: 'gatewayModel',
  context: { d1: false, d2: false },
  initial: 'running',
  states: {
    running: {
      on: {
        'association.add': { actions: assign(({ context, event }) => ({ ...context, [event.input.deviceId]: true })) },
        'association.remove': { actions: assign(({ context, event }) => ({ ...context, [event.deviceId]: false })) },
        'association.event': {},
        stop: { target: 'stopped', actions: assign({ d1: false, d2: false }) },
      },
    },
    stopped: { type: 'final' },
  },
});

describe('gateway actor (model-based)', () => {
  const model = createTestModel(gatewayModel, { events });
  const paths = model.getSimplePaths({ limit: 5000 });

  it('generates many distinct event sequences', () => {
    expect(paths.length).toBeGreaterThanOrEqual(5);
  });

  it('keeps the actor system in step with the associations on every generated path', async () => {
    for (const path of paths) {
      const actor = createActor(gatewayMachine, { input: { gatewayId: 'gw' } });
      actor.start();
      for (const step of path.steps) {
        if (step.event.type.startsWith('xstate.')) continue;
        actor.send(step.event);
        // Association actors start (and retire) right after the gateway's transition.
        await new Promise((r) => setImmediate(r));
        const snap = actor.getSnapshot();
        const listed = [...snap.context.associations.keys()];
        const expected = (['d1', 'd2'] as const).filter((id) => step.state.context[id]);
        expect([...listed].sort(), path.description).toEqual(expected);
        for (const a of snap.context.associations.values()) expect(a.getSnapshot().status).toBe('active');
        for (const a of snap.context.associations.values()) expect(['pending', 'attached', 'detached']).toContain(a.getSnapshot().value);
      }
      actor.stop();
    }
  });
});
