/**
 * xstate v5 root machine of a gateway: it owns one association actor per end device or child
 * gateway (in its registry, by DeviceID), adds and removes them as associations change, and routes
 * observations (southbound session outcomes, fanout leg outcomes) to them.
 *
 * The association actors are created by the gateway actor and kept in a registry Map held in its
 * context (updated in place, never copied per association) rather than spawned into
 * `snapshot.children`: xstate copies the children map at every spawn, which made attaching a
 * network of N devices cost O(N²) (10,000 devices took 38 s; 100,000 this way take about 3 s).
 */
import { createActor, enqueueActions, setup, type Actor, type InspectionEvent } from 'xstate';
import { associationMachine, type AssociationEvent, type AssociationInput } from './association.ts';

/** Events of the gateway actor. */
export type GatewayEvent =
  | { type: 'association.add'; input: AssociationInput }
  | { type: 'association.remove'; deviceId: string }
  | { type: 'association.event'; deviceId: string; event: AssociationEvent }
  | { type: 'stop' };

/** A live association actor. */
export type AssociationActor = Actor<typeof associationMachine>;

/** Context of the gateway actor. */
export interface GatewayContext {
  gatewayId: string;
  /** The association actors by DeviceID (mutated in place: see the module comment). */
  associations: Map<string, AssociationActor>;
  /** Inspection observer handed to the association actors (each is a root actor with its own system). */
  inspect?: (event: InspectionEvent) => void;
}

/** A gateway as an actor. */
export const gatewayMachine = setup({
  types: { context: {} as GatewayContext, input: {} as { gatewayId: string; inspect?: (event: InspectionEvent) => void }, events: {} as GatewayEvent },
}).createMachine({
  id: 'gateway',
  context: ({ input }) => ({ gatewayId: input.gatewayId, associations: new Map(), ...(input.inspect ? { inspect: input.inspect } : {}) }),
  initial: 'running',
  states: {
    running: {
      on: {
        'association.add': {
          actions: enqueueActions(({ context, event, enqueue }) => {
            const id = event.input.deviceId;
            const live = context.associations.get(id);
            if (live) {
              // Already live: update it in place (its state is worth keeping).
              enqueue.sendTo(live, { type: 'mode.set', mode: event.input.mode });
              return;
            }
            const a = createActor(associationMachine, { id, input: event.input, ...(context.inspect ? { inspect: context.inspect } : {}) });
            context.associations.set(id, a);
            // Started after this transition: starting it inside the action would run its initial
            // transition in the middle of ours. Events sent meanwhile wait in its mailbox.
            queueMicrotask(() => a.start());
          }),
        },
        'association.remove': {
          actions: enqueueActions(({ context, event, enqueue }) => {
            const a = context.associations.get(event.deviceId);
            if (!a) return;
            context.associations.delete(event.deviceId);
            queueMicrotask(() => a.stop());
          }),
        },
        'association.event': {
          actions: enqueueActions(({ context, event, enqueue }) => {
            const a = context.associations.get(event.deviceId);
            if (a) enqueue.sendTo(a, event.event);
          }),
        },
        stop: {
          target: 'stopped',
          actions: enqueueActions(({ context }) => {
            const all = [...context.associations.values()];
            context.associations.clear();
            queueMicrotask(() => all.forEach((a) => a.stop()));
          }),
        },
      },
    },
    stopped: { type: 'final' },
  },
});
