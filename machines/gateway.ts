/**
 * xstate v5 root machine of a gateway: it owns one association actor per end device or child
 * gateway (spawned by name, reachable through the system as `assoc:<deviceId>`), adds and removes
 * them as associations change, and routes observations (southbound session outcomes) to them.
 */
import { enqueueActions, setup } from 'xstate';
import { associationMachine, type AssociationEvent, type AssociationInput } from './association.ts';

/** Events of the gateway actor. */
export type GatewayEvent =
  | { type: 'association.add'; input: AssociationInput }
  | { type: 'association.remove'; deviceId: string }
  | { type: 'association.event'; deviceId: string; event: AssociationEvent }
  | { type: 'stop' };

/** A gateway as an actor. */
export const gatewayMachine = setup({
  types: { context: {} as { gatewayId: string; associations: string[] }, input: {} as { gatewayId: string }, events: {} as GatewayEvent },
  actors: { association: associationMachine },
}).createMachine({
  id: 'gateway',
  context: ({ input }) => ({ gatewayId: input.gatewayId, associations: [] }),
  initial: 'running',
  states: {
    running: {
      on: {
        'association.add': {
          actions: enqueueActions(({ enqueue, context, event }) => {
            const id = event.input.deviceId;
            if (context.associations.includes(id)) {
              // Already live: update it in place (its system id stays registered until a stop completes,
              // so stopping and respawning in one step is not possible, and its state is worth keeping).
              enqueue.sendTo(id, { type: 'mode.set', mode: event.input.mode });
              return;
            }
            enqueue.spawnChild('association', { id, systemId: `assoc:${id}`, input: event.input });
            enqueue.assign({ associations: [...context.associations, id] });
          }),
        },
        'association.remove': {
          actions: enqueueActions(({ enqueue, context, event }) => {
            if (!context.associations.includes(event.deviceId)) return;
            enqueue.stopChild(event.deviceId);
            enqueue.assign({ associations: context.associations.filter((a) => a !== event.deviceId) });
          }),
        },
        'association.event': {
          actions: enqueueActions(({ enqueue, context, event }) => {
            if (context.associations.includes(event.deviceId)) enqueue.sendTo(event.deviceId, event.event);
          }),
        },
        stop: {
          target: 'stopped',
          actions: enqueueActions(({ enqueue, context }) => {
            for (const id of context.associations) enqueue.stopChild(id);
            enqueue.assign({ associations: [] });
          }),
        },
      },
    },
    stopped: { type: 'final' },
  },
});
