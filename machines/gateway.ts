/**
 * xstate v5 root machine of a gateway: it owns the association actors of its end devices and child
 * gateways, and routes observations (southbound session outcomes, fanout leg outcomes) to them.
 *
 * Associations are virtual actors (as in Orleans): every association always exists, as its durable
 * record, but an actor is live only while it has something to do. An event for an association
 * without a live actor activates one from its record (through `directory`), unless the record's
 * state already is what the event would leave it in (`session.ok` to an attached device, `detach`
 * to a detached one): then nothing runs at all, which is what keeps a fanout over 100,000 devices,
 * or a restart with 100,000 records, from paying one actor each. `association.sweep` retires live
 * actors that are at rest (their whole state is in their record) and were not touched since the
 * previous sweep. Child-gateway associations stay live: they are the structure of the tree.
 *
 * The live actors are kept in a registry Map held in the context (updated in place, never copied
 * per association) rather than spawned into `snapshot.children`: xstate copies the children map at
 * every spawn, which made attaching a network of N devices cost O(N²).
 */
import { createActor, enqueueActions, setup, type Actor, type InspectionEvent } from 'xstate';
import { associationMachine, type AssociationEvent, type AssociationInput } from './association.ts';

/** Events of the gateway actor. */
export type GatewayEvent =
  | { type: 'association.add'; input: AssociationInput }
  | { type: 'association.remove'; deviceId: string }
  | { type: 'association.event'; deviceId: string; event: AssociationEvent }
  | { type: 'association.sweep' }
  | { type: 'stop' };

/** A live association actor. */
export type AssociationActor = Actor<typeof associationMachine>;

/** Where the gateway finds an association's durable state (the records; see the module comment). */
export interface AssociationDirectory {
  /** The input an actor of this device would start from, or undefined for an unknown device. */
  get(deviceId: string): AssociationInput | undefined;
  /** Called when a device's actor goes live or retires (the visualizer shows records otherwise). */
  liveness?(deviceId: string, live: boolean): void;
}

/** Context of the gateway actor. */
export interface GatewayContext {
  gatewayId: string;
  /** The live association actors by DeviceID (mutated in place: see the module comment). */
  associations: Map<string, AssociationActor>;
  /** Durable state of every association. Without one, the inputs of `association.add` are kept here. */
  directory: AssociationDirectory;
  /** Live actors that received an event since the last sweep (mutated in place). */
  touched: Set<string>;
  /** Inspection observer handed to the association actors (each is a root actor with its own system). */
  inspect?: (event: InspectionEvent) => void;
}

/** Input of the gateway actor. */
export interface GatewayInput {
  gatewayId: string;
  directory?: AssociationDirectory;
  inspect?: (event: InspectionEvent) => void;
}

/** A directory of its own, for a gateway actor used without records (tests, the visualizer demo). */
class InputDirectory implements AssociationDirectory {
  readonly inputs = new Map<string, AssociationInput>();
  get(deviceId: string): AssociationInput | undefined {
    return this.inputs.get(deviceId);
  }
}

/** Whether `event` would leave an association in its stored state untouched (no actor needed). */
export function isNoOpOnRecord(input: Pick<AssociationInput, 'status' | 'mode'>, event: AssociationEvent): boolean {
  const attached = input.status === 'attached' || input.status === 'sleeping';
  switch (event.type) {
    case 'session.ok':
      return attached; // attached + ok: no transition (a record at rest has no failures to reset)
    case 'detach':
      return input.status === 'detached';
    case 'mode.set':
      return event.mode === input.mode;
    default:
      return false;
  }
}

/** An association actor at rest: nothing but its record is needed to rebuild it. */
function atRest(a: AssociationActor): boolean {
  const s = a.getSnapshot();
  return s.status === 'active' && s.context.failures === 0 && !s.context.gateway;
}

/** A gateway as an actor. */
export const gatewayMachine = setup({
  types: { context: {} as GatewayContext, input: {} as GatewayInput, events: {} as GatewayEvent },
}).createMachine({
  id: 'gateway',
  context: ({ input }) => ({
    gatewayId: input.gatewayId,
    associations: new Map(),
    directory: input.directory ?? new InputDirectory(),
    touched: new Set(),
    ...(input.inspect ? { inspect: input.inspect } : {}),
  }),
  initial: 'running',
  states: {
    running: {
      on: {
        'association.add': {
          // A new or changed association goes live (something just happened to it); an idle one
          // retires at a later sweep.
          actions: enqueueActions(({ context, event, enqueue }) => {
            const id = event.input.deviceId;
            if (context.directory instanceof InputDirectory) context.directory.inputs.set(id, event.input);
            const live = context.associations.get(id);
            if (live) {
              // Already live: update it in place (its state is worth keeping).
              context.touched.add(id);
              enqueue.sendTo(live, { type: 'mode.set', mode: event.input.mode });
              return;
            }
            activate(context, event.input);
          }),
        },
        'association.remove': {
          actions: enqueueActions(({ context, event }) => {
            if (context.directory instanceof InputDirectory) context.directory.inputs.delete(event.deviceId);
            const a = context.associations.get(event.deviceId);
            if (!a) return;
            context.associations.delete(event.deviceId);
            context.touched.delete(event.deviceId);
            queueMicrotask(() => a.stop());
          }),
        },
        'association.event': {
          actions: enqueueActions(({ context, event, enqueue }) => {
            const live = context.associations.get(event.deviceId);
            if (live) {
              context.touched.add(event.deviceId);
              enqueue.sendTo(live, event.event);
              return;
            }
            const input = context.directory.get(event.deviceId);
            if (!input || isNoOpOnRecord(input, event.event)) return;
            const a = activate(context, input);
            // Queued in its mailbox: it handles the event once started (after this transition).
            a.send(event.event);
          }),
        },
        'association.sweep': {
          actions: enqueueActions(({ context }) => {
            const retired: AssociationActor[] = [];
            for (const [id, a] of context.associations) {
              if (context.touched.has(id) || !atRest(a)) continue;
              context.associations.delete(id);
              retired.push(a);
            }
            context.touched.clear();
            if (!retired.length) return;
            queueMicrotask(() => {
              for (const a of retired) {
                a.stop();
                context.directory.liveness?.(a.id, false);
              }
            });
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

/** Creates, registers and (after the current transition) starts the actor of an association. */
function activate(context: GatewayContext, input: AssociationInput): AssociationActor {
  const id = input.deviceId;
  const a = createActor(associationMachine, { id, input, ...(context.inspect ? { inspect: context.inspect } : {}) });
  context.associations.set(id, a);
  context.touched.add(id);
  // Started after this transition: starting it inside the action would run its initial transition
  // in the middle of ours. Events sent meanwhile wait in its mailbox.
  queueMicrotask(() => {
    a.start();
    context.directory.liveness?.(id, true);
  });
  return a;
}
